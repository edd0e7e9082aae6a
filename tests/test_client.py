"""Client.generate: the whole call path against the simulators, through the real official clients.

Route → plan → budget → provider call (retries) → fallback → download and verify → result.
The simulators record every request that reached the wire, which is how "retried N times",
"never re-submitted" and "nothing was sent" are asserted.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import _catalogs
import _sim_fixtures
import pytest

import modelglass as mg
from modelglass.errors import OutcomeUnknown
from modelglass.providers.base import Provider, ProviderOutput, RawImage
from modelglass.providers.fal import FalProvider
from modelglass.providers.openai import OpenAIProvider
from modelglass.providers.replicate import ReplicateProvider
from modelglass.result import FateKind
from modelglass.testing import Simulator, is_simulated, render_image

PROMPT = "a red bicycle against a brick wall"


sim = _sim_fixtures.sim  # one simulator per module, reset before each test
_fresh = _sim_fixtures.fresh


def fast_providers() -> dict[str, Provider]:
    """The real providers with test-speed polling (the wire protocol is unchanged)."""
    return {"fal": FalProvider(poll_interval_s=0.01, poll_retry_backoff_s=0.01),
            "replicate": ReplicateProvider(poll_interval_s=0.01, poll_retry_backoff_s=0.01),
            "openai": OpenAIProvider()}


def make_client(cls: Any = mg.Client, **kw: Any) -> Any:
    kw.setdefault("providers", fast_providers())
    kw.setdefault("retry_backoff_s", 0.01)
    kw.setdefault("deadline_s", 20)
    return cls(**kw)


def submits(sim: Simulator, provider: str) -> list[Any]:
    stage = {"fal": "submit", "replicate": "create", "openai": "generate"}[provider]
    return sim.requests(provider, stage=stage)  # type: ignore[arg-type]


# -- success ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("provider", "quality", "model"), [
    ("fal", "draft", "flux-schnell"),
    ("replicate", "draft", "flux-schnell"),
    ("openai", "thumbnail", "gpt-image-1-mini"),
])
def test_generate_returns_verified_simulated_images_from_each_hosted_provider(
        sim: Simulator, provider: str, quality: str, model: str) -> None:
    # a catalog where the pinned model stays active whatever the date: this checks the round trip
    with make_client(catalog=_catalogs.active_forever(model)) as client:
        # pinned: this checks each provider's round trip, not which model the catalog ranks first
        r = client.generate(PROMPT, quality=quality, provider=provider, model=model, seed=7)
    assert (r.model, r.provider) == (model, provider)
    assert len(r.images) == 1
    img = r.images[0]
    assert img.data.startswith(b"\x89PNG") and img.mime == "image/png"
    assert (img.width, img.height) == (1024, 1024)
    assert is_simulated(img.data) and img.simulated and r.simulated
    assert len(img.sha256) == 64
    assert [a.ok for a in r.attempts] == [True]
    assert r.attempts[0].offer_id == f"{model}@{provider}"
    assert r.cost_usd is not None and r.cost_usd > 0
    assert {"route_s", "call_s", "download_s", "total_s"} <= set(r.timings)
    assert r.latency_s == pytest.approx(r.timings["total_s"])
    assert len(submits(sim, provider)) == 1
    assert img.metadata["model"] == model and img.metadata["simulated"] is True
    assert img.metadata["request"]["prompt"] == PROMPT


def test_seeded_images_carry_their_seed_and_the_fates_of_the_plan(sim: Simulator) -> None:
    with make_client() as client:
        r = client.generate(PROMPT, quality="draft", provider="fal", seed=42, cfg=3.0)
    assert r.images[0].seed == 42
    assert submits(sim, "fal")[0].json["seed"] == 42
    assert {f.control: f.kind for f in r.fates}["seed"] is FateKind.honored
    assert r.fates == r.plan.fates  # nothing changed between plan and bytes here
    assert "cfg" in {f.control for f in r.fates}


def test_a_provider_stated_cost_is_not_flagged_as_an_estimate(sim: Simulator) -> None:
    with make_client() as client:
        r = client.generate(PROMPT, quality="thumbnail", model="gpt-image-2", provider="openai")
    assert r.cost_is_estimate is False
    assert r.cost_usd is not None and r.cost_usd > 0


def test_an_estimated_cost_is_flagged(sim: Simulator) -> None:
    with make_client() as client:
        r = client.generate(PROMPT, quality="draft", provider="fal")
    assert r.cost_is_estimate is True
    assert r.cost_usd == pytest.approx(r.plan.estimate.usd)


def test_generate_accepts_an_image_request(sim: Simulator) -> None:
    req = mg.ImageRequest(prompt=PROMPT, quality="draft", provider="replicate", seed=3)
    with make_client() as client:
        r = client.generate(req)
    assert r.provider == "replicate" and r.images[0].seed == 3


# -- retries --------------------------------------------------------------------------------------

def test_429_is_retried_after_the_retry_after_delay(sim: Simulator) -> None:
    sim.fail("fal", status=429, times=2, retry_after=0.3)
    with make_client(max_retries=3) as client:
        t0 = time.monotonic()
        r = client.generate(PROMPT, quality="draft", provider="fal")
        elapsed = time.monotonic() - t0
    assert len(submits(sim, "fal")) == 3
    assert elapsed >= 0.6
    assert [a.error_type for a in r.attempts] == ["RateLimited", "RateLimited", None]
    assert [a.number for a in r.attempts] == [1, 2, 3]
    assert r.attempts[0].status == 429 and r.attempts[0].retryable is True
    assert r.timings["retry_wait_s"] >= 0.6


def test_retry_after_is_capped(sim: Simulator) -> None:
    sim.fail("replicate", status=429, times=1, retry_after=30)
    with make_client(retry_after_cap_s=0.2) as client:
        t0 = time.monotonic()
        client.generate(PROMPT, quality="draft", provider="replicate")
    assert 0.2 <= time.monotonic() - t0 < 5
    assert len(submits(sim, "replicate")) == 2


def test_5xx_is_retried_with_backoff(sim: Simulator) -> None:
    sim.fail("replicate", status=503, times=2)
    with make_client() as client:
        r = client.generate(PROMPT, quality="draft", provider="replicate")
    assert len(submits(sim, "replicate")) == 3
    assert [a.ok for a in r.attempts] == [False, False, True]
    assert r.attempts[0].status == 503


def test_openai_5xx_is_retried_by_modelglass_not_the_client(sim: Simulator) -> None:
    sim.fail("openai", status=500, times=1)
    with make_client() as client:
        r = client.generate(PROMPT, quality="thumbnail", provider="openai")
    assert len(submits(sim, "openai")) == 2
    assert [a.ok for a in r.attempts] == [False, True]


def test_a_wait_past_the_deadline_ends_the_retries(sim: Simulator) -> None:
    sim.fail("fal", status=429, times=5, retry_after=10)
    with make_client(deadline_s=1.0, retry_after_cap_s=10) as client:
        t0 = time.monotonic()
        with pytest.raises(mg.ModelglassError) as info:
            client.generate(PROMPT, quality="draft", provider="fal")
    assert time.monotonic() - t0 < 1.0  # it did not sleep 10 s into the deadline
    assert len(submits(sim, "fal")) == 1
    assert len(info.value.attempts) == 1  # type: ignore[attr-defined]


# -- fallback -------------------------------------------------------------------------------------

def test_exhausted_retries_fall_back_to_the_next_ranked_offer(sim: Simulator) -> None:
    sim.fail("fal", status=500, times=10)
    with make_client(available=["fal", "replicate"], max_retries=1) as client:
        r = client.generate(PROMPT, quality="draft")
    assert [a.offer_id for a in r.attempts] == ["flux-schnell@fal", "flux-schnell@fal",
                                                "flux-schnell@replicate"]
    assert [a.ok for a in r.attempts] == [False, False, True]
    assert r.provider == "replicate"
    # The fallback passed the same hard constraints: it is ranked, not rejected.
    ranked = [c.key for c in r.decision.ranked]
    assert ranked[:2] == ["flux-schnell@fal", "flux-schnell@replicate"]
    assert "flux-schnell@replicate" not in {x.offer_key for x in r.decision.rejected}
    assert len(submits(sim, "fal")) == 2


def test_a_job_whose_first_offer_delivers_never_ranks_the_rest(sim: Simulator) -> None:
    """Cold routing proves the choice before ranking every offer; the engine reads its fallback
    order lazily, so a first try that delivers leaves the rest unranked (and unplanned), while
    a fallback, when needed, still follows the full ranking (the test above)."""
    from modelglass.routing import clear_cache

    with make_client(available=["fal", "replicate"]) as client:
        clear_cache(client.catalog)
        r = client.generate(PROMPT, quality="draft", seed=3)
        assert r.decision is not None and r.decision.choice is not None
        assert r.decision.choice.key == r.plan.offer.key
        assert "_rows" not in vars(r.decision)  # the full ranking was never read
        assert r.decision.ranked[0].key == r.decision.choice.key  # same order


def test_a_non_retryable_failure_falls_back_at_once(sim: Simulator) -> None:
    sim.fail("fal", status=403)  # no access to this model: another try would not help
    with make_client(available=["fal", "replicate"]) as client:
        r = client.generate(PROMPT, quality="draft")
    assert [(a.offer_id, a.ok) for a in r.attempts] == [("flux-schnell@fal", False),
                                                        ("flux-schnell@replicate", True)]
    assert r.attempts[0].retryable is False and r.attempts[0].status == 403
    assert len(submits(sim, "fal")) == 1


def test_content_rejected_never_retries_nor_falls_back(sim: Simulator) -> None:
    sim.fail("fal", kind="content")
    with make_client(available=["fal", "replicate"]) as client, pytest.raises(mg.ContentRejected) as info:
        client.generate(PROMPT, quality="draft")
    assert sim.requests("replicate") == []
    assert len(submits(sim, "fal")) == 1
    assert [a.error_type for a in info.value.attempts] == ["ContentRejected"]  # type: ignore[attr-defined]


def test_all_attempts_failed_carries_every_attempt(sim: Simulator) -> None:
    sim.fail("fal", status=500, times=10)
    sim.fail("replicate", status=502, times=10)
    with make_client(available=["fal", "replicate"], max_retries=1) as client, pytest.raises(mg.AllAttemptsFailed) as info:
        client.generate(PROMPT, quality="draft")
    attempts = info.value.attempts
    assert [(a.offer_id, a.number) for a in attempts] == [
        ("flux-schnell@fal", 1), ("flux-schnell@fal", 2),
        ("flux-schnell@replicate", 1), ("flux-schnell@replicate", 2)]
    assert all(not a.ok and a.error for a in attempts)
    assert info.value.retryable is True  # only retryable 5xx happened
    assert isinstance(info.value.__cause__, mg.ProviderError)
    assert info.value.__cause__.status == 502  # the last offer's error
    text = str(info.value)
    assert "flux-schnell@fal try 2" in text and "flux-schnell@replicate try 2" in text
    assert "check the providers' status" in text


def test_offers_that_failed_the_same_way_raise_that_error_with_every_attempt(
        sim: Simulator) -> None:
    # Both offers answered 500: the job ends with that ProviderError itself (issue 10:
    # AllAttemptsFailed only when the attempts failed in different ways).
    sim.fail("fal", status=500, times=10)
    sim.fail("replicate", status=500, times=10)
    with make_client(available=["fal", "replicate"], max_retries=1) as client, pytest.raises(mg.ProviderError) as info:
        client.generate(PROMPT, quality="draft")
    assert type(info.value) is mg.ProviderError and info.value.status == 500
    attempts = info.value.attempts  # type: ignore[attr-defined]
    assert [a.offer_id for a in attempts] == ["flux-schnell@fal"] * 2 + ["flux-schnell@replicate"] * 2
    assert isinstance(info.value.__cause__, mg.ProviderError)  # the try before it
    assert "flux-schnell@fal try 2" in str(info.value)


def test_an_expired_download_falls_back_and_the_paid_job_is_charged(sim: Simulator) -> None:
    sim.fail("fal", kind="expired")
    budget = mg.Budget(1.0)
    with make_client(available=["fal", "replicate"], budget=budget) as client:
        r = client.generate(PROMPT, quality="draft")
    assert [(a.offer_id, a.error_type) for a in r.attempts] == [
        ("flux-schnell@fal", "DownloadFailed"), ("flux-schnell@replicate", None)]
    assert "expired" in (r.attempts[0].error or "")
    assert r.attempts[0].urls and r.attempts[0].request_id  # the paid image is named
    assert len(submits(sim, "fal")) == 1  # the job that ran is not submitted again
    # Both jobs ran, so both are charged; nothing is left reserved, and the result says so.
    assert budget.spent == pytest.approx(0.006)
    assert budget.reserved == 0
    assert r.cost_usd == pytest.approx(budget.spent)
    assert [a.cost_usd for a in r.attempts] == [pytest.approx(0.003), pytest.approx(0.003)]


# -- deadline and timeouts ------------------------------------------------------------------------

def test_the_job_deadline_bounds_a_hung_provider(sim: Simulator) -> None:
    # The POST went out and no answer came: it may have been billed (OutcomeUnknown), so the
    # budget keeps its estimate and nothing is sent again.
    sim.fail("openai", kind="hang", delay=3)
    budget = mg.Budget(1.0)
    with make_client(deadline_s=0.5, budget=budget) as client:
        t0 = time.monotonic()
        with pytest.raises(OutcomeUnknown) as info:
            client.generate(PROMPT, quality="thumbnail", provider="openai")
    assert time.monotonic() - t0 < 2.0
    attempts = info.value.attempts  # type: ignore[attr-defined]
    assert [(a.error_type, a.possibly_charged) for a in attempts] == [("OutcomeUnknown", True)]
    assert len(submits(sim, "openai")) == 1
    assert budget.reserved == 0 and budget.spent == pytest.approx(attempts[0].cost_usd)
    assert budget.spent > 0


def test_a_call_timeout_falls_back_without_resubmitting_the_job(sim: Simulator) -> None:
    # A submit that hung may have run: falling back (maybe paying twice) takes the caller's word.
    sim.fail("fal", kind="hang", delay=3)
    with make_client(available=["fal", "replicate"], timeout_s=0.4, deadline_s=10,
                     allow_double_payment=True) as client:
        r = client.generate(PROMPT, quality="draft")
    assert r.provider == "replicate"
    assert [a.error_type for a in r.attempts] == ["OutcomeUnknown", None]
    assert r.attempts[0].possibly_charged is True
    assert len(submits(sim, "fal")) == 1  # a timeout is never retried on the same offer


# -- budget ---------------------------------------------------------------------------------------

def test_the_budget_is_reserved_then_settled(sim: Simulator) -> None:
    budget = mg.Budget(1.0)
    with make_client(budget=budget) as client:
        r = client.generate(PROMPT, quality="draft", provider="fal")
    assert budget.spent == pytest.approx(r.cost_usd)
    assert budget.reserved == 0


def test_budget_exceeded_is_raised_before_any_request(sim: Simulator) -> None:
    budget = mg.Budget(0.001)
    with make_client(budget=budget) as client, pytest.raises(mg.BudgetExceeded, match="flux-schnell@fal"):
        client.generate(PROMPT, quality="draft", provider="fal")
    assert sim.requests() == []
    assert budget.spent == 0 and budget.reserved == 0


def test_an_unknown_price_cannot_be_spent_from_a_budget(sim: Simulator) -> None:
    client = make_client(budget=mg.Budget(10))
    offer = client.route(PROMPT, quality="hero", model="flux-2-dev", provider="fal").choice
    assert offer is not None and offer.call.estimate.usd is None
    with client, pytest.raises(mg.BudgetExceeded, match="unknown"):
        client.generate(PROMPT, quality="hero", model="flux-2-dev", provider="fal")
    assert sim.requests() == []


def test_one_budget_is_shared_across_clients(sim: Simulator) -> None:
    budget = mg.Budget(0.0065)
    with make_client(budget=budget) as a, make_client(budget=budget) as b:
        a.generate(PROMPT, quality="draft", provider="fal")
        b.generate(PROMPT, quality="draft", provider="replicate")
        with pytest.raises(mg.BudgetExceeded):
            a.generate(PROMPT, quality="draft", provider="fal")
    assert budget.spent == pytest.approx(0.006)
    assert len(submits(sim, "fal")) == 1


def test_a_failed_job_releases_its_reservation(sim: Simulator) -> None:
    budget = mg.Budget(1.0)
    sim.fail("fal", status=500, times=10)
    with make_client(budget=budget, max_retries=0) as client, pytest.raises(mg.ProviderError):
        client.generate(PROMPT, quality="draft", provider="fal")
    assert budget.spent == 0 and budget.reserved == 0


def test_max_cost_is_checked_again_at_call_time() -> None:
    from modelglass.jobs._outcome import reserve

    client = make_client(available=["fal"])
    call = client.route(PROMPT, quality="draft", max_cost_usd=0.01).choice.call
    request = call.request.model_copy(update={"max_cost_usd": 0.001})
    with pytest.raises(mg.BudgetExceeded, match="max_cost_usd"):
        reserve(client.budget, request, call)


# -- n and chunks ---------------------------------------------------------------------------------

def test_n_beyond_the_per_call_limit_is_split_into_calls_with_continuing_seeds(sim: Simulator) -> None:
    with make_client() as client:
        r = client.generate(PROMPT, quality="draft", provider="fal", n=6, seed=100)
    sent = [s.json for s in submits(sim, "fal")]
    assert [(p["num_images"], p["seed"]) for p in sent] == [(4, 100), (2, 104)]
    assert len(r.images) == 6
    assert [i.index for i in r.images] == list(range(6))
    assert r.images[4].seed == 104
    assert len({i.sha256 for i in r.images}) == 6
    assert r.cost_usd == pytest.approx(6 * 0.003)
    assert [a.ok for a in r.attempts] == [True, True]


class _FailFromCall(FalProvider):
    """The real fal provider; from its ``fail_from``-th call on, the simulator answers 500."""

    def __init__(self, sim: Simulator, fail_from: int) -> None:
        super().__init__(poll_interval_s=0.01, poll_retry_backoff_s=0.01)
        self.sim, self.fail_from, self.calls = sim, fail_from, 0

    def job(self, call: Any, **kw: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_from:
            self.sim.fail("fal", status=500, times=10)
        return super().job(call, **kw)


def test_a_failing_later_chunk_returns_the_images_already_paid_for(sim: Simulator) -> None:
    budget = mg.Budget(1.0)
    provider = _FailFromCall(sim, fail_from=2)
    with make_client(providers={"fal": provider}, max_retries=1, budget=budget) as client:
        r = client.generate(PROMPT, quality="draft", provider="fal", n=6, seed=1)
    assert len(r.images) == 4
    n_fate = next(f for f in r.fates if f.control == "n")
    assert n_fate.kind is FateKind.approximated
    assert n_fate.requested == 6 and n_fate.applied == 4
    assert "call 2 of 2" in n_fate.reason
    assert r.extra["partial"] == {"requested": 6, "delivered": 4, "error_type": "ProviderError",
                                  "error": r.extra["partial"]["error"]}
    assert [a.ok for a in r.attempts] == [True, False, False]
    assert r.cost_usd == pytest.approx(4 * 0.003)
    assert budget.spent == pytest.approx(4 * 0.003) and budget.reserved == 0


def test_strict_mode_raises_on_a_failing_later_chunk_with_the_partial_images(sim: Simulator) -> None:
    provider = _FailFromCall(sim, fail_from=2)
    with make_client(providers={"fal": provider}, max_retries=0) as client, pytest.raises(mg.ProviderError) as info:
        client.generate(PROMPT, quality="draft", provider="fal", n=6, strict=True)
    partial = info.value.partial  # type: ignore[attr-defined]
    assert len(partial.images) == 4


# -- what the bytes say ---------------------------------------------------------------------------

class _WrongSize(Provider):
    """An in-process provider that answers a smaller image than planned, stating its cost."""

    name = "fal"

    def __init__(self) -> None:
        self.inner = FalProvider()

    def availability(self) -> Any:
        return self.inner.availability()

    def build_payload(self, planned: Any, offer: Any) -> Any:
        return self.inner.build_payload(planned, offer)

    def job(self, call: Any, **kw: Any) -> Generator[Any, Any, ProviderOutput]:
        data = render_image(call.planned.prompt, 1, 512, 512, "png")
        return ProviderOutput(images=[RawImage(data=data, mime="image/png")], cost_usd=0.001)
        yield  # a job with no I/O: no step at all

    def wire(self) -> Any:
        raise AssertionError("no step runs")

    awire = wire


def test_a_size_that_differs_from_the_plan_becomes_an_approximated_fate() -> None:
    client = make_client(providers={"fal": _WrongSize()}, available=["fal"])
    r = client.generate(PROMPT, quality="draft", provider="fal", size="1024x1024")
    size = next(f for f in r.fates if f.control == "size")
    assert size.kind is FateKind.approximated and size.applied == "512x512"
    assert (r.images[0].width, r.images[0].height) == (512, 512)
    assert r.cost_usd == 0.001 and r.cost_is_estimate is False
    assert r.images[0].metadata["fates"][-1]["kind"] == "approximated"


def test_no_eligible_model_is_raised_before_any_request(sim: Simulator) -> None:
    with make_client() as client, pytest.raises(mg.NoEligibleModel):
        client.generate(PROMPT, quality="draft", provider="openai")
    assert sim.requests() == []


def test_an_invalid_request_is_raised_before_any_request(sim: Simulator) -> None:
    with make_client() as client, pytest.raises(mg.InvalidRequest):
        client.generate(PROMPT, quality="draft", n=0)
    assert sim.requests() == []


def test_saved_parameters_say_what_was_sent_not_only_what_was_asked(tmp_path: Any) -> None:
    from PIL import Image

    r = make_client().generate("a fox", quality="hero", model="sdxl", provider="replicate", seed=3,
                               negative_prompt="blurry", sampler="euler")
    meta = r.images[0].metadata
    assert meta["planned"]["steps"] == 50 and meta["planned"]["guidance"] == 7.5  # offer defaults
    text = Image.open(r.images[0].save(tmp_path / "fox.png")).text["parameters"]
    assert "Negative prompt: blurry" in text
    assert "Steps: 50" in text and "Sampler: euler" in text and "CFG scale: 7.5" in text
    # gpt-image takes no steps or sampler: nothing is claimed for them
    r = make_client(catalog=_catalogs.active_forever("gpt-image-1-mini")).generate(
        "a fox", quality="thumbnail", model="gpt-image-1-mini", provider="openai", sampler="euler")
    assert "sampler" not in r.images[0].metadata["planned"]
