"""Lost creates (issue 8, items 1 and 3): a create the provider processed — and billed — whose
answer was dropped, never came, or was cut short, is never sent again.

The simulators' ``processed_drop`` / ``processed_hang`` / ``truncated`` faults process the request
first (``sim.billed`` counts it) and only then lose the answer. Each test asserts how many
generations were billed and how many creates reached the wire.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _sim_fixtures
import pytest

import modelglass as mg
from modelglass.errors import GenerationTimeout, OutcomeUnknown, ProviderError
from modelglass.plan import plan_call
from modelglass.providers.base import Provider, ProviderOutput
from modelglass.providers.fal import FalProvider
from modelglass.providers.openai import OpenAIProvider
from modelglass.providers.replicate import ReplicateProvider
from modelglass.testing import Simulator

MODES = ["sync", "async"]
LOST = ["processed_drop", "processed_hang", "truncated"]
CAT = mg.Catalog.default()
CREATE = {"openai": "generate", "fal": "submit", "replicate": "create"}
OFFER = {"openai": "gpt-image-2@openai", "fal": "flux-dev@fal",
         "replicate": "flux-schnell@replicate"}


sim = _sim_fixtures.sim_fixture(poll_interval=0.01)
_fresh = _sim_fixtures.fresh


def make(provider: str, **kw: Any) -> Provider:
    if provider == "openai":
        return OpenAIProvider(request_timeout_s=kw.pop("request_timeout_s", 300.0))
    cls = FalProvider if provider == "fal" else ReplicateProvider
    kw.setdefault("poll_interval_s", 0.01)
    kw.setdefault("poll_retry_backoff_s", 0.01)
    return cls(**kw)  # type: ignore[abstract]


def call_for(provider: str, **req: Any) -> Any:
    req.setdefault("prompt", "a red bicycle against a brick wall")
    return plan_call(mg.ImageRequest(**req), CAT.offer(OFFER[provider]), provider=make(provider))


def run(p: Provider, call: Any, mode: str, timeout_s: float = 5.0) -> ProviderOutput:
    if mode == "sync":
        return p.generate(call, timeout_s=timeout_s)

    async def go() -> ProviderOutput:
        try:
            return await p.agenerate(call, timeout_s=timeout_s)
        finally:
            await p.aclose()
    return asyncio.run(go())


def creates(sim: Simulator, provider: str) -> int:
    return len(sim.requests(provider, stage=CREATE[provider]))  # type: ignore[arg-type]


# -- OpenAI and fal: the job cannot be found again → OutcomeUnknown, sent once ---------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", LOST)
@pytest.mark.parametrize("provider", ["openai", "fal"])
def test_lost_create_answer_is_possibly_charged_and_never_re_sent(sim: Simulator, provider: str,
                                                                  kind: str, mode: str) -> None:
    sim.fail(provider, kind=kind, delay=3.0)  # type: ignore[arg-type]
    t0 = time.monotonic()
    with pytest.raises(OutcomeUnknown) as ei:
        run(make(provider), call_for(provider), mode, timeout_s=1.0)
    err = ei.value
    assert err.possibly_charged and not err.retryable and err.provider == provider
    assert "may have been billed" in str(err) and "allow_double_payment=True" in str(err)
    assert sim.billed(provider) == 1  # type: ignore[arg-type]
    assert creates(sim, provider) == 1
    assert time.monotonic() - t0 < 2.5


@pytest.mark.parametrize("mode", MODES)
def test_openai_truncated_reply_is_possibly_charged_and_sent_once(sim: Simulator,
                                                                         mode: str) -> None:
    sim.fail("openai", kind="truncated")
    with pytest.raises(OutcomeUnknown):
        run(make("openai"), call_for("openai"), mode)
    assert sim.billed("openai") == 1 and creates(sim, "openai") == 1


# -- Replicate: the prediction is found again by listing, so nothing is lost -----------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", LOST)
def test_replicate_finds_the_prediction_of_a_lost_create_and_finishes_it(sim: Simulator,
                                                                         kind: str,
                                                                         mode: str) -> None:
    sim.fail("replicate", kind=kind, delay=3.0)
    p = make("replicate", request_timeout_s=0.5)
    out = run(p, call_for("replicate", seed=11), mode, timeout_s=5.0)
    assert out.images and out.request_id
    assert sim.billed("replicate") == 1 and creates(sim, "replicate") == 1
    assert sim.requests("replicate", stage="list")
    polled = {r.path.rsplit("/", 1)[-1] for r in sim.requests("replicate", stage="poll")}
    assert polled <= {out.request_id}


@pytest.mark.parametrize("mode", MODES)
def test_replicate_never_adopts_a_prediction_another_call_owns(sim: Simulator, mode: str) -> None:
    p = make("replicate")
    call = call_for("replicate", seed=12 if mode == "sync" else 14)
    first = run(p, call, "sync")  # same input, already owned by this provider
    sim.reset()
    sim.fail("replicate", kind="drop")  # dropped BEFORE processing: nothing new was created
    with pytest.raises(OutcomeUnknown) as ei:
        run(p, call, mode)
    assert sim.billed("replicate") == 0 and creates(sim, "replicate") == 1
    assert first.request_id not in str(ei.value)


@pytest.mark.parametrize("mode", MODES)
def test_replicate_lost_create_found_after_the_deadline_is_cancelled(sim: Simulator,
                                                                    mode: str) -> None:
    sim.service_time("replicate", 5.0)
    try:
        sim.fail("replicate", kind="processed_hang", delay=5.0)
        with pytest.raises(OutcomeUnknown) as ei:
            run(make("replicate", cancel_timeout_s=1.0), call_for("replicate", seed=13), mode,
                timeout_s=0.6)
        err = ei.value
        assert err.request_id and "it was cancelled" in str(err)
        cancels = sim.requests("replicate", stage="cancel")
        assert [c.path.split("/")[-2] for c in cancels] == [err.request_id]
        assert creates(sim, "replicate") == 1
    finally:
        sim.service_time("replicate", 0.0)


# -- later stages: the job has an id, so it is resumed by id, never re-created ---------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", LOST)
@pytest.mark.parametrize(("provider", "stage"), [("fal", "status"), ("fal", "result"),
                                                 ("replicate", "poll")])
def test_lost_answers_after_the_create_resume_by_id(sim: Simulator, provider: str, stage: str,
                                                    kind: str, mode: str) -> None:
    sim.fail(provider, kind=kind, at=stage, times=2, delay=0.3)  # type: ignore[arg-type]
    p = make(provider, request_timeout_s=0.2)
    out = run(p, call_for(provider), mode, timeout_s=5.0)
    assert out.images
    assert sim.billed(provider) == 1 and creates(sim, provider) == 1  # type: ignore[arg-type]


# -- the official clients never retry a create on their own ---------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["openai", "fal", "replicate"])
def test_no_client_level_retry_of_a_create(sim: Simulator, provider: str, mode: str) -> None:
    sim.fail(provider, kind="truncated", times=5)  # type: ignore[arg-type]
    try:
        run(make(provider), call_for(provider), mode)
    except ProviderError:
        pass
    assert creates(sim, provider) == 1


# -- the deadline: a huge Retry-After on a poll ends the job now, and the cancel fits inside it ----

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("provider", "stage"), [("fal", "status"), ("replicate", "poll")])
def test_huge_retry_after_on_a_poll_stops_at_once(sim: Simulator, provider: str, stage: str,
                                                  mode: str) -> None:
    sim.service_time(provider, 2.0)  # type: ignore[arg-type]
    try:
        sim.fail(provider, status=429, retry_after=3600, at=stage)  # type: ignore[arg-type]
        t0 = time.monotonic()
        with pytest.raises(GenerationTimeout, match="cancelled"):
            run(make(provider), call_for(provider), mode, timeout_s=10.0)
        assert time.monotonic() - t0 < 2.0  # not the 10 s timeout, not the hour
        assert len(sim.requests(provider, stage="cancel")) == 1  # type: ignore[arg-type]
    finally:
        sim.service_time(provider, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["fal", "replicate"])
def test_a_hanging_cancel_stays_inside_the_deadline_and_is_not_called_confirmed(
        sim: Simulator, provider: str, mode: str) -> None:
    sim.service_time(provider, 10.0)  # type: ignore[arg-type]
    try:
        sim.fail(provider, kind="hang", at="cancel", delay=10.0)  # type: ignore[arg-type]
        t0 = time.monotonic()
        with pytest.raises(OutcomeUnknown) as ei:
            run(make(provider, cancel_timeout_s=5.0), call_for(provider), mode, timeout_s=1.5)
        assert time.monotonic() - t0 < 1.5 + 0.3
        assert "did not confirm the cancel" in str(ei.value)
        assert "it was cancelled" not in str(ei.value)
    finally:
        sim.service_time(provider, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", MODES)
def test_replicate_lookup_survives_a_prediction_state_the_client_does_not_know(
        sim: Simulator, mode: str) -> None:
    sim.fail("replicate", kind="unknown_status")  # leaves an "aborted" prediction in the list
    with pytest.raises(ProviderError):
        run(make("replicate"), call_for("replicate", seed=31), mode)
    sim.fail("replicate", kind="processed_drop")
    out = run(make("replicate"), call_for("replicate", seed=32 if mode == "sync" else 33), mode)
    assert out.images and creates(sim, "replicate") == 2


# -- the client: the budget keeps a possibly-charged attempt; no fallback unless allowed ------------

@pytest.mark.parametrize("allow", [False, True])
def test_client_keeps_the_estimate_and_falls_back_only_when_double_payment_is_allowed(
        sim: Simulator, allow: bool) -> None:
    budget = mg.Budget(5.0)
    with mg.Client(observed=False, budget=budget, available=["fal"],
                   providers={"fal": FalProvider(poll_interval_s=0.01)},
                   allow_double_payment=allow) as client:
        sim.fail("fal", kind="processed_drop")
        if not allow:
            with pytest.raises(OutcomeUnknown) as info:
                client.generate("a red bicycle", provider="fal")
            assert info.value.possibly_charged
            assert sim.billed("fal") == 1 and creates(sim, "fal") == 1
            assert budget.spent > 0  # the estimate of the lost create stays spent
        else:
            result = client.generate("a red bicycle", provider="fal")
            assert sim.billed("fal") == 2 and result.images
            assert result.cost_usd == pytest.approx(budget.spent)
            assert any(a.possibly_charged for a in result.attempts)
