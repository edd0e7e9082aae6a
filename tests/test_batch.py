"""Batches: order, concurrency, per-provider limits, fairness, budget, journal reruns, cache."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelglass as mg
from modelglass.budget import Budget
from modelglass.errors import BudgetExceeded, ProviderError
from modelglass.jobs import JobEvent
from modelglass.jobs._batch import (
    Batch,
    Job,
    ProviderLimit,
    Scheduler,
    job_ids,
    load_limits,
    run_async,
)
from modelglass.jobs._sync import run_sync
from modelglass.request import ImageRequest
from modelglass.result import GeneratedImage, ImageResult
from modelglass.testing import simulate


# -- a client that needs no network: route says the provider, generate sleeps -------------------
class FakeClient:
    """Duck-types what a batch uses of a client: ``route``, ``generate`` (given the job's
    budget lease as ``budget=``), ``budget``."""

    def __init__(self, *, cost: float = 0.01, actual: float | None = None,
                 service_s: float = 0.01, fail: set[str] | None = None) -> None:
        self.budget: Any = None
        self.cost, self.actual, self.service_s = cost, actual, service_s
        self.fail = fail or set()
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_total = 0
        self.started: list[str] = []

    def route(self, request: ImageRequest) -> Any:
        provider = request.provider or "fal"
        offer = SimpleNamespace(provider=provider)
        call = SimpleNamespace(estimate=SimpleNamespace(max_usd=self.cost))
        first = SimpleNamespace(offer=offer, key=f"m@{provider}", cost_usd=self.cost, call=call)
        return SimpleNamespace(choice=first, ranked=[first])  # a RoutingDecision's two reads

    def _enter(self, request: ImageRequest) -> str:
        provider = request.provider or "fal"
        with self.lock:
            self.started.append(request.prompt)
            self.running[provider] = self.running.get(provider, 0) + 1
            self.peak[provider] = max(self.peak.get(provider, 0), self.running[provider])
            self.peak_total = max(self.peak_total, sum(self.running.values()))
        return provider

    def _leave(self, provider: str) -> None:
        with self.lock:
            self.running[provider] -= 1

    def _result(self, request: ImageRequest, budget: Any) -> ImageResult:
        reservation = budget.reserve(self.cost) if budget is not None else None
        if request.prompt in self.fail:
            if reservation is not None:
                budget.release(reservation)
            raise ProviderError(f"boom on {request.prompt}", provider="fal")
        actual = self.cost if self.actual is None else self.actual
        if reservation is not None:
            budget.settle(reservation, actual)
        img = GeneratedImage(data=request.prompt.encode(), mime="image/png", width=1, height=1,
                             seed=request.seed)
        return ImageResult(images=[img], model="m", provider=request.provider or "fal",
                           cost_usd=actual, cost_is_estimate=False, latency_s=0.0, fates=[])

    def generate(self, request: ImageRequest, *, budget: Any = None, **kw: Any) -> ImageResult:
        provider = self._enter(request)
        try:
            time.sleep(self.service_s * (1 + (hash(request.prompt) % 3)))
            return self._result(request, budget)
        finally:
            self._leave(provider)


class AsyncFakeClient(FakeClient):
    async def generate(self, request: ImageRequest, *, budget: Any = None,  # type: ignore[override]
                       **kw: Any) -> ImageResult:
        provider = self._enter(request)
        try:
            await asyncio.sleep(float(request.extra.get("sleep", self.service_s))
                                if hasattr(request, "extra") and isinstance(
                                    getattr(request, "extra", None), dict) else self.service_s)
            return self._result(request, budget)
        finally:
            self._leave(provider)


def _reqs(n: int, provider: str | None = None) -> list[dict[str, Any]]:
    return [{"id": f"j{i}", "prompt": f"job {i}", "quality": "draft",
             **({"provider": provider} if provider else {})} for i in range(n)]


# -- ids -------------------------------------------------------------------------------------------
def test_job_ids_are_stable_and_repeats_are_numbered():
    reqs = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}, {"id": "mine", "prompt": "c"}]
    first = [i for i, _ in job_ids(reqs)]
    assert first == [i for i, _ in job_ids(reqs)]
    assert first[2] == first[0] + "#2" and first[3] == "mine"


def test_duplicate_ids_are_refused():
    with pytest.raises(mg.InvalidRequest, match="used twice"):
        job_ids([{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}])


def test_a_bad_request_names_its_position():
    with pytest.raises(mg.InvalidRequest, match="request 1"):
        job_ids([{"prompt": "a"}, {"prompt": "b", "n": "lots"}])


# -- scheduling ------------------------------------------------------------------------------------
def test_results_come_back_in_input_order_sync():
    client = FakeClient()
    report = run_sync(Batch(client, _reqs(12), concurrency=4, limits={}))
    assert [o.id for o in report] == [f"j{i}" for i in range(12)]
    assert all(o.status == "done" for o in report)
    assert [o.result.images[0].data for o in report] == [f"job {i}".encode() for i in range(12)]


def test_global_concurrency_is_never_exceeded():
    client = FakeClient(service_s=0.005)
    reqs = _reqs(10, "fal") + [{**r, "id": "r" + r["id"], "provider": "replicate"}
                               for r in _reqs(10)]
    run_sync(Batch(client, reqs, concurrency=3, limits={}))
    assert client.peak_total == 3


def test_per_provider_in_flight_limit_holds():
    client = FakeClient(service_s=0.005)
    reqs = _reqs(12, "fal") + [{**r, "id": "r" + r["id"], "provider": "replicate"}
                               for r in _reqs(12)]
    run_sync(Batch(client, reqs, concurrency=8, limits={"fal": ProviderLimit(in_flight=2)}))
    assert client.peak["fal"] == 2
    assert client.peak["replicate"] > 2


def _jobs(spec: str) -> list[Job]:
    return [Job(f"{p}{i}", i, ImageRequest(prompt="x"), provider=p, estimate=0.01)
            for i, p in enumerate(spec)]


def test_providers_take_turns_so_one_queue_does_not_starve_the_others():
    sched = Scheduler(_jobs("a" * 6 + "b" * 2 + "c" * 2), concurrency=1)
    order = []
    for _ in range(10):
        job, _ = sched.next()
        assert job is not None
        order.append(job.provider)
        sched.finished(job)
    assert order[:6] == ["a", "b", "c", "a", "b", "c"]


def test_per_minute_limit_delays_the_next_start():
    now = [1000.0]
    sched = Scheduler(_jobs("aaaa"), concurrency=10,
                      limits={"a": ProviderLimit(per_minute=3)}, clock=lambda: now[0])
    started = [sched.next()[0] for _ in range(3)]
    assert all(j is not None for j in started)
    job, wait_s = sched.next()
    assert job is None and wait_s == pytest.approx(60.0)
    now[0] += 60.0
    assert sched.next()[0] is not None


def test_limits_load_from_a_yaml_file(tmp_path):
    path = tmp_path / "limits.yaml"
    path.write_text("fal: {in_flight: 4, per_minute: 120}\nreplicate: {in_flight: 2}\n")
    assert load_limits(path) == {"fal": ProviderLimit(4, 120), "replicate": ProviderLimit(2)}
    path.write_text("fal: {in_flite: 4}\n")
    with pytest.raises(mg.InvalidRequest, match="in_flight"):
        load_limits(path)


# -- budget ----------------------------------------------------------------------------------------
def test_budget_stops_submitting_and_reports_what_was_left_undone():
    client = FakeClient(cost=0.01)
    budget = Budget(0.055)
    report = run_sync(Batch(client, _reqs(10), concurrency=3, budget=budget, limits={}))
    counts = report.counts()
    assert counts == {"done": 5, "undone": 5}
    assert len(client.started) == 5                      # nothing more was sent
    assert budget.spent == pytest.approx(0.05) and budget.reserved == 0
    assert report.undone == [f"j{i}" for i in range(5, 10)]
    assert all(isinstance(o.error, BudgetExceeded) for o in report if o.status == "undone")


def test_a_job_that_settles_below_its_estimate_frees_room_for_more():
    client = FakeClient(cost=0.01, actual=0.004)
    budget = Budget(0.03)
    report = run_sync(Batch(client, _reqs(10), concurrency=1, budget=budget, limits={}))
    # holds of 0.01 settled at 0.004: after six jobs 0.024 is spent and a seventh hold would
    # pass the limit (holding the estimates alone would have stopped at three)
    assert report.counts() == {"done": 6, "undone": 4}
    assert budget.spent == pytest.approx(0.024)


@settings(max_examples=60, deadline=None)
@given(estimates=st.lists(st.floats(0.001, 0.5), min_size=1, max_size=25),
       fractions=st.lists(st.floats(0.0, 1.0), min_size=25, max_size=25),
       order=st.randoms(use_true_random=False), limit=st.floats(0.0, 3.0),
       concurrency=st.integers(1, 6))
def test_spend_never_passes_the_limit_whatever_the_order(estimates, fractions, order, limit,
                                                         concurrency):
    """The scheduler's holds and the jobs' settlements, in any completion order: spent plus
    reserved never passes the limit, and a job is left undone only when it could not fit."""
    budget = Budget(limit)
    jobs = [Job(f"j{i}", i, ImageRequest(prompt="x"), provider="ab"[i % 2], estimate=e)
            for i, e in enumerate(estimates)]
    sched = Scheduler(jobs, concurrency=concurrency, budget=budget)
    running: list[Job] = []
    done = 0
    while True:
        job, _ = sched.next()
        while job is not None:
            running.append(job)
            job, _ = sched.next()
        assert budget.spent + budget.reserved <= limit + 1e-9
        if not running:
            break
        job = running.pop(order.randrange(len(running)))
        assert job.hold is not None
        budget.settle(job.hold, job.estimate * fractions[job.index])  # actual <= estimate
        sched.finished(job)
        done += 1
    assert budget.spent <= limit + 1e-9
    assert done + len(sched.undone) == len(jobs)
    if sched.undone:
        first = min(sched.undone, key=lambda j: j.index)
        assert first.estimate > limit - budget.spent - 1e-12 or sched.stopped is not None


# -- async -----------------------------------------------------------------------------------------
async def test_agenerate_many_yields_as_completed():
    client = AsyncFakeClient(service_s=0.01)
    seen = [o.id async for o in run_async(Batch(client, _reqs(8), concurrency=8, limits={}))]
    assert sorted(seen) == [f"j{i}" for i in range(8)]


async def test_a_freed_slot_starts_its_next_job_before_the_outcome_is_reported():
    # One slot: when job k's outcome reaches the caller, job k + 1 has already begun its call,
    # so the provider is not left idle while the caller handles an outcome (issue 16 item 8).
    client = AsyncFakeClient(service_s=0.005)
    begun = [len(client.started)
             async for _ in run_async(Batch(client, _reqs(4), concurrency=1, limits={}))]
    assert begun == [2, 3, 4, 4]
    assert client.peak_total == 1  # still one call at a time


async def test_the_async_stream_keeps_no_outcome_the_caller_dropped():
    # A long stream holds the jobs in flight, not every image it has handed over: the batch
    # keeps no outcome once it is yielded (it used to keep all of them until the stream ended).
    import gc
    import weakref

    client = AsyncFakeClient(service_s=0.001)
    refs: list[weakref.ref[Any]] = []
    async for outcome in run_async(Batch(client, _reqs(30), concurrency=3, limits={})):
        assert outcome.status == "done"
        refs.append(weakref.ref(outcome))
        del outcome
        if len(refs) == 20:
            gc.collect()
            # still streaming: all gone but the last (the stream's own frame still names it)
            assert [r() for r in refs[:19]] == [None] * 19
    assert len(refs) == 30


async def test_closing_the_iterator_early_cancels_jobs_in_flight():
    client = AsyncFakeClient(service_s=5.0)
    client2 = AsyncFakeClient(service_s=0.0)
    gen = run_async(Batch(client, _reqs(4), concurrency=4, limits={}))
    t0 = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(gen.__anext__(), 0.2)
    assert time.monotonic() - t0 < 2 and sum(client.running.values()) == 0
    assert [o.status async for o in run_async(Batch(client2, _reqs(2), limits={}))] == \
        ["done", "done"]


# -- simulators ------------------------------------------------------------------------------------
def _sim_reqs(n: int, provider: str = "fal", **extra: Any) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", "prompt": f"simulated job {i}", "quality": "draft",
             "model": "flux-schnell", "provider": provider, "seed": 100 + i, **extra}
            for i in range(n)]


def test_a_journal_rerun_skips_done_jobs_and_sends_nothing(tmp_path):
    with simulate() as sim:
        client = mg.Client(available=["fal"], max_retries=3, retry_backoff_s=0.01)
        first = client.generate_many(_sim_reqs(6), concurrency=3, budget=1.0,
                                     journal=tmp_path / "run.db", limits={})
        assert first.counts() == {"done": 6}
        sent = len(sim.requests("fal", stage="submit"))
        assert sent == 6
        files = [f for o in first for f in o.files]
        again = client.generate_many(_sim_reqs(6), concurrency=3, budget=1.0,
                                     journal=tmp_path / "run.db", limits={})
        assert again.counts() == {"skipped": 6}
        assert len(sim.requests("fal", stage="submit")) == sent
        assert [f for o in again for f in o.files] == files
        assert again.spent_usd == pytest.approx(first.spent_usd)
        # a file changed on disk: the paid job is named, not paid for again
        files[0].write_bytes(b"not the image")
        third = client.generate_many(_sim_reqs(6), concurrency=3, journal=tmp_path / "run.db",
                                     limits={})
        assert third[0].status == "failed" and "files changed" in str(third[0].error)
        assert len(sim.requests("fal", stage="submit")) == sent


async def test_an_async_journal_rerun_streams_the_done_jobs_and_sends_nothing(tmp_path):
    # The stream hands over the jobs the journal already has before any new one, then keeps
    # none of them (half of the jobs done first: the rerun streams 3 skipped, then 3 done).
    with simulate() as sim:
        async with mg.AsyncClient(available=["fal"]) as client:
            first = [o async for o in client.agenerate_many(
                _sim_reqs(3), concurrency=3, journal=tmp_path / "run.db", limits={})]
            assert sorted(o.status for o in first) == ["done"] * 3
            again = [o async for o in client.agenerate_many(
                _sim_reqs(6), concurrency=3, journal=tmp_path / "run.db", limits={})]
        assert [o.status for o in again[:3]] == ["skipped"] * 3
        assert sorted(o.id for o in again[:3]) == ["s0", "s1", "s2"]
        assert sorted((o.id, o.status) for o in again[3:]) == [
            ("s3", "done"), ("s4", "done"), ("s5", "done")]
        assert len(sim.requests("fal", stage="submit")) == 6  # each job paid for once


def test_429_storm_during_a_batch_ends_with_every_job_done_once(tmp_path):
    with simulate() as sim:
        sim.fail("fal", status=429, times=12, retry_after=0.01)
        client = mg.Client(available=["fal"], max_retries=6, retry_backoff_s=0.01)
        report = client.generate_many(_sim_reqs(10), concurrency=5, budget=1.0,
                                      journal=tmp_path / "run.db", limits={})
        assert report.counts() == {"done": 10}
        accepted = [r.json["prompt"] for r in sim.requests("fal", stage="submit")
                    if r.fault is None]
        assert sorted(accepted) == sorted(f"simulated job {i}" for i in range(10))
        assert sim.billed("fal") == 10


def test_5xx_burst_during_a_batch_never_pays_twice(tmp_path):
    with simulate() as sim:
        sim.fail("replicate", status=503, times=8)
        client = mg.Client(available=["replicate"], max_retries=5, retry_backoff_s=0.01)
        reqs = _sim_reqs(8, provider="replicate", model="flux-schnell")
        report = client.generate_many(reqs, concurrency=4, budget=1.0,
                                      journal=tmp_path / "run.db", limits={})
        assert report.counts() == {"done": 8}
        assert sim.billed("replicate") == 8
        for o in report:
            assert o.file_sha256 and all(len(s) == 64 for s in o.file_sha256)


def test_the_result_cache_serves_a_repeat_for_free(tmp_path):
    with simulate() as sim:
        client = mg.Client(available=["fal"])
        reqs = _sim_reqs(3)
        first = client.generate_many(reqs, cache=tmp_path / "cache", out=tmp_path / "a",
                                     limits={})
        assert first.counts() == {"done": 3}
        again = client.generate_many(reqs, cache=tmp_path / "cache", out=tmp_path / "b",
                                     limits={}, budget=0.0)
        assert again.counts() == {"cached": 3}
        assert len(sim.requests("fal", stage="submit")) == 3
        for a, b in zip(first, again, strict=True):
            assert b.cost_usd == 0.0 and b.result.extra["cached"] is True
            assert b.result.images[0].sha256 == a.result.images[0].sha256
        # a stored image that no longer matches its sha256 is a miss, not a wrong image
        for stored in (tmp_path / "cache").rglob("0.img"):
            stored.write_bytes(b"corrupted")
        third = client.generate_many(reqs[:1], cache=tmp_path / "cache", limits={})
        assert third[0].status == "done" and len(sim.requests("fal", stage="submit")) == 4
        # no fixed seed: never cached
        unseeded = [{k: v for k, v in r.items() if k != "seed"} for r in reqs[:1]]
        client.generate_many(unseeded, cache=tmp_path / "cache", limits={})
        client.generate_many(unseeded, cache=tmp_path / "cache", limits={})
        assert len(sim.requests("fal", stage="submit")) == 6


def test_a_job_sent_before_a_crash_without_an_id_is_named_not_resent(tmp_path):
    import json as _json

    from modelglass.jobs._journal import Journal
    from modelglass.jobs._schedule import request_json

    reqs = [{"id": "o1", "prompt": "a kite over dunes", "quality": "thumbnail",
             "model": "gpt-image-2", "provider": "openai", "seed": 3}]
    (job_id, request), = job_ids(reqs)
    with Journal(tmp_path / "run.db") as j:   # what a run killed mid-call leaves behind
        j.begin([(job_id, _json.loads(request_json(request)))])
        j.started(job_id, offer_key="gpt-image-2@openai", provider="openai", estimate=0.02)
        j.record(JobEvent(job_id, "submitted", offer_key="gpt-image-2@openai",
                          provider="openai"))   # the engine's word that the call is going out
    with simulate() as sim:
        client = mg.Client(available=["openai"])
        report = client.generate_many(reqs, budget=1.0, journal=tmp_path / "run.db", limits={})
        assert report[0].status == "possibly_charged"
        assert "may have been charged" in str(report[0].error)
        assert sim.requests("openai", stage="generate") == []
        assert report.spent_usd == pytest.approx(0.02)     # counted at its upper bound
        again = client.generate_many(reqs, budget=1.0, journal=tmp_path / "run.db", limits={},
                                     allow_double_payment=True)
        assert again[0].status == "done"
        assert len(sim.requests("openai", stage="generate")) == 1
        assert again.spent_usd == pytest.approx(0.02 + again[0].cost_usd)


async def test_async_batch_rides_out_a_429_storm_with_a_journal(tmp_path):
    from modelglass.jobs._journal import Journal

    with simulate() as sim:
        sim.fail("fal", status=429, times=10, retry_after=0.01)
        async with mg.AsyncClient(available=["fal"], max_retries=6,
                                  retry_backoff_s=0.01) as client:
            seen = [o async for o in client.agenerate_many(
                _sim_reqs(8), concurrency=4, budget=1.0, journal=tmp_path / "run.db",
                limits={})]
        assert sorted(o.id for o in seen) == [f"s{i}" for i in range(8)]
        assert all(o.status == "done" for o in seen)
        assert sim.billed("fal") == 8
        with Journal(tmp_path / "run.db") as j:
            records = j.jobs()
        assert all(r.state == "done" and r.calls and r.calls[0].request_id for r in records)


def test_the_lease_hands_the_admission_hold_to_the_engine():
    from modelglass.budget import Lease

    budget = Budget(1.0)
    hold = budget.reserve(0.3)
    lease = Lease(budget, hold)
    r = lease.reserve(0.2)                 # fits the hold: the hold itself, nothing more held
    assert r is hold and budget.reserved == pytest.approx(0.3)
    lease.settle(r, 0.15)
    assert budget.spent == pytest.approx(0.15) and budget.reserved == 0
    lease.close()                          # nothing left to give back
    assert budget.reserved == 0

    hold = budget.reserve(0.1)
    lease = Lease(budget, hold)
    r = lease.reserve(0.4)                 # a pricier fallback: the hold is swapped for more
    assert budget.reserved == pytest.approx(0.4)
    lease.release(r)
    with pytest.raises(BudgetExceeded):
        Lease(budget, budget.reserve(0.1)).reserve(0.9)   # 0.85 left: refused, nothing held
    assert budget.reserved == 0

    lease = Lease(budget, budget.reserve(0.2))
    lease.close()                          # the engine never reserved: the hold goes back
    assert budget.reserved == 0


async def test_cancelling_a_batch_cancels_provider_jobs_and_the_journal_says_what_to_redo(
        tmp_path):
    from modelglass.jobs._journal import Journal

    with simulate(service_time={"fal": 5.0}) as sim:
        async with mg.AsyncClient(available=["fal"]) as client:
            reqs = _sim_reqs(3)
            outcomes = client.agenerate_many(reqs, concurrency=2, journal=tmp_path / "run.db",
                                             limits={})
            consumer = asyncio.ensure_future(outcomes.__anext__())
            for _ in range(300):
                if len(sim.requests("fal", stage="submit")) == 2:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the ids reach the journal
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
            await outcomes.aclose()
        assert len(sim.requests("fal", stage="cancel")) == 2
        with Journal(tmp_path / "run.db") as j:
            states = {r.id: (r.state, r.possibly_charged) for r in j.jobs()}
        assert states == {"s0": ("failed", True), "s1": ("failed", True),
                          "s2": ("pending", False)}
        sim.service_time("fal", 0.0)
        again = mg.Client(available=["fal"]).generate_many(reqs, journal=tmp_path / "run.db",
                                                            limits={})
        assert [o.status for o in again] == ["possibly_charged", "possibly_charged", "done"]
        assert len(sim.requests("fal", stage="submit")) == 3


def test_a_plain_call_killed_before_it_was_sent_runs_again(tmp_path):
    """OpenAI has no resumable jobs: the engine says "submitted" before it sends. A job that
    got no further than "started" (and "pending" on its offer) sent nothing: it runs again."""
    import json as _json

    from modelglass.jobs._journal import Journal
    from modelglass.jobs._schedule import request_json

    reqs = [{"id": "o2", "prompt": "a kite over a lake", "quality": "thumbnail",
             "model": "gpt-image-2", "provider": "openai", "seed": 4}]
    (job_id, request), = job_ids(reqs)
    with Journal(tmp_path / "run.db") as j:
        j.begin([(job_id, _json.loads(request_json(request)))])
        j.started(job_id, offer_key="gpt-image-2@openai", provider="openai", estimate=0.02)
        j.record(JobEvent(job_id, "pending", offer_key="gpt-image-2@openai", provider="openai"))
    with simulate() as sim:
        report = mg.Client(available=["openai"]).generate_many(
            reqs, budget=1.0, journal=tmp_path / "run.db", limits={})
        assert report[0].status == "done"
        assert len(sim.requests("openai", stage="generate")) == 1
        assert report.spent_usd == pytest.approx(report[0].cost_usd)   # nothing carried


def test_a_long_queue_for_a_limited_provider_does_not_hold_back_the_others():
    """Jobs are routed just ahead of the scheduler; when every queued job waits for its
    provider's limit, more are routed, so the replicate jobs at the end of the file start
    long before the fal queue drains."""
    client = FakeClient(service_s=0.002)
    reqs = _reqs(200, "fal") + [{"id": f"r{i}", "prompt": f"rep {i}", "provider": "replicate"}
                                for i in range(3)]
    report = run_sync(Batch(client, reqs, concurrency=4,
                            limits={"fal": ProviderLimit(in_flight=1)}))
    assert report.counts() == {"done": 203}
    first = client.started[:12]
    assert {"rep 0", "rep 1", "rep 2"} <= set(first), first
    assert client.peak["fal"] == 1


@pytest.mark.parametrize("runner", ["sync", "async"])
def test_each_job_is_routed_and_planned_once(runner):
    """The batch routes a job to schedule it; its engine runs on that same decision (the
    offer the scheduler counted it against), not a second routing and planning."""
    routed: list[str] = []

    def counting(client: Any) -> Any:
        route = client.route

        def route_once(request: Any, *a: Any, **kw: Any) -> Any:
            routed.append(request.prompt)
            return route(request, *a, **kw)
        client.route = route_once
        return client

    reqs = [{"id": f"j{i}", "prompt": f"job {i}", "quality": "draft", "provider": "fal"}
            for i in range(5)]
    budget = Budget(1.0)
    with simulate() as sim:
        if runner == "sync":
            with counting(mg.Client(available=["fal"])) as client:
                report = list(client.generate_many(reqs, concurrency=2, budget=budget,
                                                   limits={}))
        else:
            async def go() -> list[Any]:
                async with counting(mg.AsyncClient(available=["fal"])) as client:
                    return [o async for o in client.agenerate_many(
                        reqs, concurrency=2, budget=budget, limits={})]
            report = asyncio.run(go())
        assert len(sim.requests("fal", stage="submit")) == 5
    assert sorted(o.status for o in report) == ["done"] * 5
    assert sorted(routed) == sorted(r["prompt"] for r in reqs)   # once each
    assert budget.reserved == 0 and budget.spent == pytest.approx(
        sum(o.cost_usd for o in report))
