"""Money through the job engine (issue 8, engine side): never pay twice, count everything paid,
return or name every paid image, and keep the deadline over every step.

The simulators' ``processed_*`` faults process (and bill) a create, then lose the answer;
``sim.billed(provider)`` counts what the provider would have charged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import _sim_fixtures
import pytest
from test_client import PROMPT, make_client, submits

import modelglass as mg
from modelglass.errors import DownloadFailed, OutcomeUnknown
from modelglass.providers.base import Provider, ProviderOutput, RawImage
from modelglass.providers.fal import FalProvider
from modelglass.testing import Simulator, render_image

sim = _sim_fixtures.sim  # one simulator per module, reset before each test
_fresh = _sim_fixtures.fresh


# -- never pay twice --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["processed_drop", "truncated"])
def test_a_create_whose_answer_was_lost_is_never_sent_again(sim: Simulator, kind: str) -> None:
    sim.fail("fal", kind=kind)
    budget = mg.Budget(1.0)
    with make_client(budget=budget, available=["fal", "replicate"]) as client, \
            pytest.raises(OutcomeUnknown) as info:
        client.generate(PROMPT, quality="draft", provider="fal")
    assert len(submits(sim, "fal")) == 1 and sim.billed("fal") == 1
    # The provider may have billed it: the budget keeps the estimate, nothing stays reserved.
    assert budget.spent == pytest.approx(0.003) and budget.reserved == 0
    [attempt] = info.value.attempts  # type: ignore[attr-defined]
    assert attempt.possibly_charged and attempt.cost_usd == pytest.approx(0.003)
    assert info.value.charged_usd == pytest.approx(0.003)  # type: ignore[attr-defined]


def test_an_unknown_outcome_does_not_fall_back_by_default(sim: Simulator) -> None:
    sim.fail("fal", kind="processed_drop")
    with make_client(available=["fal", "replicate"]) as client, pytest.raises(OutcomeUnknown):
        client.generate(PROMPT, quality="draft")
    assert sim.requests("replicate") == []


@pytest.mark.parametrize("where", ["call", "client"])
def test_allow_double_payment_falls_back_and_counts_both_jobs(sim: Simulator, where: str) -> None:
    sim.fail("fal", kind="processed_drop")
    budget = mg.Budget(1.0)
    per_call = {"allow_double_payment": True} if where == "call" else {}
    per_client = {"allow_double_payment": True} if where == "client" else {}
    with make_client(available=["fal", "replicate"], budget=budget, **per_client) as client:
        r = client.generate(PROMPT, quality="draft", **per_call)
    assert r.provider == "replicate"
    assert sim.billed("fal") == 1 and len(submits(sim, "fal")) == 1
    assert [(a.offer_id, a.possibly_charged) for a in r.attempts] == [
        ("flux-schnell@fal", True), ("flux-schnell@replicate", False)]
    # result.cost_usd is what the budget was charged for this call: both jobs.
    assert budget.spent == pytest.approx(0.006) and budget.reserved == 0
    assert r.cost_usd == pytest.approx(budget.spent)
    assert sum(a.cost_usd or 0 for a in r.attempts) == pytest.approx(r.cost_usd)


def test_openai_posts_that_time_out_are_counted_as_spent(sim: Simulator) -> None:
    sim.fail("openai", kind="processed_hang", delay=3)
    budget = mg.Budget(1.0)
    with make_client(budget=budget, timeout_s=0.5) as client, pytest.raises(OutcomeUnknown):
        client.generate(PROMPT, quality="thumbnail", provider="openai")
    assert len(submits(sim, "openai")) == 1
    assert budget.spent > 0 and budget.reserved == 0


# -- every paid image returned or named ---------------------------------------------------------------

def test_one_bad_url_in_a_chunk_keeps_the_chunks_other_images(sim: Simulator) -> None:
    sim.fail("fal", kind="expired", times=1)
    budget = mg.Budget(1.0)
    with make_client(budget=budget) as client:
        r = client.generate(PROMPT, quality="draft", provider="fal", n=3, seed=5)
    assert len(r.images) == 2 and r.partial
    [missing] = r.missing
    assert (missing.chunk, missing.count, missing.paid) == (0, 1, True)
    assert missing.error_type == "DownloadFailed" and "expired" in missing.reason
    # The whole call was paid for, and the result says so.
    assert budget.spent == pytest.approx(3 * 0.003) and r.cost_usd == pytest.approx(budget.spent)
    [attempt] = r.attempts
    assert attempt.error_type == "DownloadFailed" and len(attempt.urls) == 3
    assert attempt.request_id
    assert r.extra["partial"]["delivered"] == 2


class _LoseTheAnswerOfCall(FalProvider):
    """The real fal provider; its ``lose``-th call is processed (and billed), the answer lost."""

    def __init__(self, sim: Simulator, lose: int) -> None:
        super().__init__(poll_interval_s=0.01, poll_retry_backoff_s=0.01)
        self.sim, self.lose, self.calls = sim, lose, 0

    def job(self, call: Any, **kw: Any) -> Any:
        self.calls += 1
        if self.calls == self.lose:
            self.sim.fail("fal", kind="processed_drop")
        return super().job(call, **kw)


def test_only_the_call_that_was_lost_counts_as_paid_not_the_calls_never_sent(
        sim: Simulator) -> None:
    # n=12 on flux-schnell@fal is three calls of 4: the first delivers, the second is billed
    # but its answer lost (never re-sent), the third is never sent and cannot have been paid.
    provider = _LoseTheAnswerOfCall(sim, lose=2)
    budget = mg.Budget(1.0)
    with make_client(providers={"fal": provider}, budget=budget) as client:
        r = client.generate(PROMPT, quality="draft", provider="fal", n=12, seed=5)
    assert len(r.images) == 4 and r.partial
    assert len(submits(sim, "fal")) == 2 and sim.billed("fal") == 2
    assert [(m.chunk, m.count, m.paid, m.error_type) for m in r.missing] == [
        (1, 4, True, "OutcomeUnknown"), (2, 4, False, "OutcomeUnknown")]
    assert budget.spent == pytest.approx(8 * 0.003) and budget.reserved == 0


def test_a_download_failure_in_strict_mode_names_the_paid_image_and_keeps_the_rest(
        sim: Simulator) -> None:
    sim.fail("fal", kind="expired", times=1)
    with make_client() as client, pytest.raises(DownloadFailed) as info:
        client.generate(PROMPT, quality="draft", provider="fal", n=2, strict=True)
    err = info.value
    assert err.request_id and err.url and err.cost_usd == pytest.approx(2 * 0.003)
    assert len(err.fetched) == 1 and len(err.partial.images) == 1  # type: ignore[attr-defined]
    assert "expired" in str(err) and (err.url or "") not in str(err)  # URLs may be signed


# -- the deadline covers every step ----------------------------------------------------------------

def test_the_deadline_covers_downloads(sim: Simulator) -> None:
    sim.fail("fal", kind="hang", at="download", delay=10)
    budget = mg.Budget(1.0)
    with make_client(budget=budget, deadline_s=1.5) as client:
        t0 = time.monotonic()
        with pytest.raises(mg.ProviderError) as info:
            client.generate(PROMPT, quality="draft", provider="fal")
        elapsed = time.monotonic() - t0
    assert elapsed < 2.5
    assert isinstance(info.value, (DownloadFailed, mg.GenerationTimeout))
    assert budget.spent == pytest.approx(0.003)  # the job ran: it is paid for


# -- numbers entering the budget ----------------------------------------------------------------------

class _OddCost(Provider):
    """A provider whose reply states a cost that is not a price."""

    name = "fal"

    def __init__(self, cost: float) -> None:
        self.inner, self.cost = FalProvider(), cost

    def availability(self) -> Any:
        return self.inner.availability()

    def build_payload(self, planned: Any, offer: Any) -> Any:
        return self.inner.build_payload(planned, offer)

    def job(self, call: Any, **kw: Any) -> Generator[Any, Any, ProviderOutput]:
        data = render_image(call.planned.prompt, 1, 1024, 1024, "png")
        return ProviderOutput(images=[RawImage(data=data, mime="image/png")], cost_usd=self.cost)
        yield  # a job with no I/O: no step at all

    def wire(self) -> Any:
        raise AssertionError("no step runs")

    awire = wire


@pytest.mark.parametrize("cost", [math.nan, -1.0, math.inf])
def test_a_stated_cost_that_is_not_a_price_counts_the_estimate(cost: float) -> None:
    budget = mg.Budget(1.0)
    client = make_client(providers={"fal": _OddCost(cost)}, available=["fal"], budget=budget)
    r = client.generate(PROMPT, quality="draft", provider="fal")
    assert math.isfinite(budget.spent) and budget.spent == pytest.approx(0.003)
    assert r.cost_usd == pytest.approx(0.003) and r.cost_is_estimate


# -- the same through AsyncClient -----------------------------------------------------------------

def _arun(coro_fn: Any, **client_kw: Any) -> Any:
    import asyncio

    async def main() -> Any:
        async with make_client(mg.AsyncClient, **client_kw) as client:
            return await coro_fn(client)
    return asyncio.run(main())


def test_async_lost_create_is_not_re_sent_and_double_payment_is_opt_in(sim: Simulator) -> None:
    sim.fail("fal", kind="processed_drop")
    budget = mg.Budget(1.0)
    with pytest.raises(OutcomeUnknown):
        _arun(lambda c: c.generate(PROMPT, quality="draft"), budget=budget,
              available=["fal", "replicate"])
    assert sim.requests("replicate") == [] and len(submits(sim, "fal")) == 1
    assert budget.spent == pytest.approx(0.003) and budget.reserved == 0
    sim.fail("fal", kind="processed_drop")
    r = _arun(lambda c: c.generate(PROMPT, quality="draft", allow_double_payment=True),
              budget=budget, available=["fal", "replicate"])
    assert r.provider == "replicate" and r.cost_usd == pytest.approx(0.006)
    assert budget.spent == pytest.approx(0.003 + 0.006) and budget.reserved == 0


def test_async_one_bad_url_keeps_the_other_downloads(sim: Simulator) -> None:
    sim.fail("fal", kind="expired", times=1)
    r = _arun(lambda c: c.generate(PROMPT, quality="draft", provider="fal", n=4, seed=9))
    assert len(r.images) == 3 and r.partial and r.missing[0].count == 1
    assert len({i.sha256 for i in r.images}) == 3
