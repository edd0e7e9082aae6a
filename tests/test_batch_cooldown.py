"""A cooldown burst in a batch: jobs whose every offer is cooling down wait for the cooldown
to end (progress says so) and then run; none fails for it."""

from __future__ import annotations

import asyncio
import time

import modelglass as mg
from modelglass.jobs import JobEvent
from modelglass.routing import Policy
from modelglass.testing import simulate

COOL = Policy({"health": {"failures": 3, "window_s": 60, "cooldown_s": 1.0}})


def _reqs(n: int) -> list[dict[str, object]]:
    return [{"id": f"c{i}", "prompt": f"a paper crane number {i}", "quality": "draft",
             "model": "flux-schnell", "provider": "fal", "seed": i} for i in range(n)]


def _client(cls: type = mg.Client) -> object:
    return cls(available=["fal"], max_retries=4, retry_backoff_s=0.01, policy=COOL)


def test_a_burst_of_429s_cools_the_provider_and_the_batch_waits_it_out(tmp_path):
    events: list[JobEvent] = []
    with simulate() as sim:
        sim.fail("fal", status=429, times=6, retry_after=0.01)   # 3 in a row cool fal
        t0 = time.monotonic()
        report = _client().generate_many(_reqs(16), concurrency=4, budget=1.0,
                                         journal=tmp_path / "run.db", limits={},
                                         on_event=events.append)
        elapsed = time.monotonic() - t0
        assert report.counts() == {"done": 16}, report.summary()
        assert sim.billed("fal") == 16
    waits = [e for e in events if e.state == "waiting" and "cooldown" in (e.message or "")]
    assert waits, "no job waited for the cooldown"
    assert all("cooling down" in (e.message or "") and e.wait_s for e in waits)
    assert elapsed >= 0.5  # the cooldown (1 s from the third failure) was waited out


def test_the_async_batch_waits_for_the_cooldown_too(tmp_path):
    async def main() -> list[str]:
        async with _client(mg.AsyncClient) as client:  # type: ignore[attr-defined]
            return [o.status async for o in client.agenerate_many(
                _reqs(10), concurrency=4, limits={}, journal=tmp_path / "run.db")]

    with simulate() as sim:
        sim.fail("fal", status=429, times=6, retry_after=0.01)
        statuses = asyncio.run(main())
        assert statuses == ["done"] * 10 and sim.billed("fal") == 10


def test_a_job_gives_up_waiting_at_its_deadline(tmp_path):
    """Cooling longer than the client's deadline: the job fails, saying why, having sent
    nothing more."""
    long_cool = Policy({"health": {"failures": 3, "window_s": 60, "cooldown_s": 600}})
    with simulate() as sim:
        sim.fail("fal", status=500, times=100)
        client = mg.Client(available=["fal"], max_retries=0, retry_backoff_s=0.01,
                           policy=long_cool, deadline_s=1.5)
        report = client.generate_many(_reqs(6), concurrency=1, limits={})
        later = [o for o in report if o.error is not None
                 and "cooling down" in str(o.error)]
        assert later and all(o.status == "failed" for o in later)
        assert len(sim.requests("fal", stage="submit")) == 3  # the three that cooled it


def test_the_progress_line_says_how_many_jobs_wait_for_a_cooldown(tmp_path):
    from modelglass._cli_batch import _Progress
    from modelglass.jobs._batch import Batch

    with simulate():
        batch = Batch(_client(), _reqs(2), limits={})
        batch.parking.park(batch.prepare(route=False)[0], 30.0)
        progress = _Progress(2, None, enabled=True)
        progress.batch = batch
        with progress:
            progress.event(JobEvent("c0", "waiting", wait_s=30.0,
                                    message="waiting for a cooldown: provider 'fal' is cooling"))
            line = progress.progress.tasks[0].fields["line"]
        batch.close()
    assert "1 waiting for a cooldown" in line
