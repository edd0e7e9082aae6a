"""AsyncClient.generate: the async twin of the call path, against the simulators.

Same behaviour as ``test_client.py`` (the decisions are shared in ``_BaseClient``); here the
awaiting side: each provider, retries, fallback, refusals, the budget, chunks, partial results,
the deadline, and many jobs at once on one client.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _sim_fixtures
import pytest
from test_client import PROMPT, make_client, submits

import modelglass as mg
from modelglass.errors import OutcomeUnknown
from modelglass.providers.fal import FalProvider
from modelglass.result import FateKind
from modelglass.testing import Simulator, is_simulated

sim = _sim_fixtures.sim  # one simulator per module, reset before each test
_fresh = _sim_fixtures.fresh


def run(coro_fn: Any, **client_kw: Any) -> Any:
    """Run ``coro_fn(client)`` on a fresh AsyncClient in a fresh event loop, closing it after."""
    async def main() -> Any:
        async with make_client(mg.AsyncClient, **client_kw) as client:
            return await coro_fn(client)
    return asyncio.run(main())


@pytest.mark.parametrize(("provider", "quality"), [
    ("fal", "draft"), ("replicate", "draft"), ("openai", "thumbnail")])
def test_async_generate_returns_verified_images_from_each_hosted_provider(
        sim: Simulator, provider: str, quality: str) -> None:
    r = run(lambda c: c.generate(PROMPT, quality=quality, provider=provider, seed=5))
    assert r.provider == provider and len(r.images) == 1
    assert is_simulated(r.images[0].data) and r.simulated
    assert [a.ok for a in r.attempts] == [True]
    assert len(submits(sim, provider)) == 1


def test_async_and_sync_give_the_same_bytes_for_the_same_seed(sim: Simulator) -> None:
    a = run(lambda c: c.generate(PROMPT, quality="draft", provider="fal", seed=11))
    with make_client() as client:
        b = client.generate(PROMPT, quality="draft", provider="fal", seed=11)
    assert a.images[0].sha256 == b.images[0].sha256


def test_async_429_is_retried_after_the_retry_after_delay(sim: Simulator) -> None:
    sim.fail("replicate", status=429, times=2, retry_after=0.25)
    t0 = time.monotonic()
    r = run(lambda c: c.generate(PROMPT, quality="draft", provider="replicate"))
    assert time.monotonic() - t0 >= 0.5
    assert len(submits(sim, "replicate")) == 3
    assert [a.error_type for a in r.attempts] == ["RateLimited", "RateLimited", None]


def test_async_5xx_is_retried(sim: Simulator) -> None:
    sim.fail("openai", status=502, times=1)
    r = run(lambda c: c.generate(PROMPT, quality="thumbnail", provider="openai"))
    assert len(submits(sim, "openai")) == 2
    assert [a.ok for a in r.attempts] == [False, True]


def test_async_exhausted_retries_fall_back_to_the_next_offer(sim: Simulator) -> None:
    sim.fail("fal", status=503, times=10)
    r = run(lambda c: c.generate(PROMPT, quality="draft"), available=["fal", "replicate"],
            max_retries=1)
    assert [(a.offer_id, a.ok) for a in r.attempts] == [
        ("flux-schnell@fal", False), ("flux-schnell@fal", False), ("flux-schnell@replicate", True)]
    assert r.provider == "replicate"


def test_async_content_rejected_does_not_fall_back(sim: Simulator) -> None:
    sim.fail("fal", kind="content")
    with pytest.raises(mg.ContentRejected):
        run(lambda c: c.generate(PROMPT, quality="draft"), available=["fal", "replicate"])
    assert sim.requests("replicate") == []


def test_async_all_attempts_failed_carries_every_attempt(sim: Simulator) -> None:
    sim.fail("fal", status=500, times=10)
    sim.fail("replicate", status=503, times=10)
    with pytest.raises(mg.AllAttemptsFailed) as info:
        run(lambda c: c.generate(PROMPT, quality="draft"), available=["fal", "replicate"],
            max_retries=0)
    assert [a.offer_id for a in info.value.attempts] == ["flux-schnell@fal",
                                                         "flux-schnell@replicate"]


def test_async_deadline_bounds_a_hung_provider(sim: Simulator) -> None:
    sim.fail("replicate", kind="hang", delay=3)  # the create may have run: outcome unknown
    t0 = time.monotonic()
    with pytest.raises(OutcomeUnknown):
        run(lambda c: c.generate(PROMPT, quality="draft", provider="replicate"), deadline_s=0.5)
    assert time.monotonic() - t0 < 2.0


def test_async_budget_exceeded_before_any_request(sim: Simulator) -> None:
    with pytest.raises(mg.BudgetExceeded):
        run(lambda c: c.generate(PROMPT, quality="draft", provider="fal"), budget=mg.Budget(0.0001))
    assert sim.requests() == []


def test_twenty_concurrent_jobs_on_one_client_share_the_budget(sim: Simulator) -> None:
    sim.service_time("fal", 0.05)
    budget = mg.Budget(1.0)

    async def many(c: mg.AsyncClient) -> list[mg.ImageResult]:
        return await asyncio.gather(*(c.generate(f"{PROMPT} #{i}", quality="draft",
                                                 provider="fal", seed=i) for i in range(20)))

    t0 = time.monotonic()
    results = run(many, budget=budget)
    elapsed = time.monotonic() - t0
    assert len(results) == 20
    assert len({r.images[0].sha256 for r in results}) == 20
    assert [r.images[0].seed for r in results] == list(range(20))
    assert len(submits(sim, "fal")) == 20
    assert budget.spent == pytest.approx(20 * 0.003) and budget.reserved == 0
    assert elapsed < 20 * 0.05 + 2  # they overlapped


def test_async_n_is_split_into_calls(sim: Simulator) -> None:
    r = run(lambda c: c.generate(PROMPT, quality="draft", provider="replicate", n=5, seed=20))
    sent = [s.json["input"] for s in submits(sim, "replicate")]
    assert [(p["num_outputs"], p["seed"]) for p in sent] == [(4, 20), (1, 24)]
    assert [i.seed for i in r.images] == [20, 21, 22, 23, 24]  # the plan's seed + i


class _AsyncFailFromCall(FalProvider):
    def __init__(self, sim: Simulator, fail_from: int) -> None:
        super().__init__(poll_interval_s=0.01, poll_retry_backoff_s=0.01)
        self.sim, self.fail_from, self.calls = sim, fail_from, 0

    def job(self, call: Any, **kw: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_from:
            self.sim.fail("fal", status=500, times=10)
        return super().job(call, **kw)


def test_async_failing_later_chunk_returns_the_partial_result(sim: Simulator) -> None:
    provider = _AsyncFailFromCall(sim, fail_from=2)
    r = run(lambda c: c.generate(PROMPT, quality="draft", provider="fal", n=8),
            providers={"fal": provider}, max_retries=0)
    assert len(r.images) == 4
    assert next(f for f in r.fates if f.control == "n").kind is FateKind.approximated
    assert r.extra["partial"]["delivered"] == 4


def test_one_async_client_serves_two_event_loops(sim: Simulator) -> None:
    client = make_client(mg.AsyncClient)

    async def one() -> Any:
        return await client.generate(PROMPT, quality="draft", provider="fal")

    async def one_and_close() -> Any:
        try:
            return await one()
        finally:
            await client.aclose()

    assert asyncio.run(one()).images
    assert asyncio.run(one_and_close()).images
