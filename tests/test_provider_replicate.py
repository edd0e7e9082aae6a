"""Replicate provider: the real ``replicate`` client against the loopback Replicate simulator.

Every test runs the sync and the async twin. "A create is never repeated once the server answered
with an id" and "the client did not retry on its own" are asserted on the recorded wire.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import _sim_fixtures
import pytest

import modelglass as mg
from modelglass.errors import (
    ContentRejected,
    GenerationTimeout,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from modelglass.plan import Planned, plan_call
from modelglass.providers.base import ProviderOutput
from modelglass.providers.replicate import ReplicateProvider
from modelglass.testing import Simulator

MODES = ["sync", "async"]
CAT = mg.Catalog.default()
SIM_TOKEN = "sim-replicate-token"


sim = _sim_fixtures.sim_fixture(poll_interval=0.01)
_fresh = _sim_fixtures.fresh


def provider(**kw: Any) -> ReplicateProvider:
    kw.setdefault("poll_interval_s", 0.01)
    kw.setdefault("poll_retry_backoff_s", 0.01)
    return ReplicateProvider(**kw)


def call_for(key: str = "flux-schnell@replicate", **req: Any) -> Any:
    req.setdefault("prompt", "a red bicycle against a brick wall")
    return plan_call(mg.ImageRequest(**req), CAT.offer(key), provider=ReplicateProvider())


def run(p: ReplicateProvider, call: Any, mode: str, timeout_s: float = 5.0) -> ProviderOutput:
    if mode == "sync":
        return p.generate(call, timeout_s=timeout_s)

    async def go() -> ProviderOutput:
        try:
            return await p.agenerate(call, timeout_s=timeout_s)
        finally:
            await p.aclose()
    return asyncio.run(go())


def creates(sim: Simulator) -> list[Any]:
    return sim.requests("replicate", stage="create")


# -- success ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_official_model_prediction_succeeds_with_plain_urls(sim: Simulator, mode: str) -> None:
    call = call_for(seed=5, n=2)
    out = run(provider(), call, mode)
    assert [i.url is not None and i.url.startswith("http://127.0.0.1:") for i in out.images] == [True, True]
    assert all(i.mime == "image/png" for i in out.images)
    (create,) = creates(sim)
    assert create.path == "/v1/models/black-forest-labs/flux-schnell/predictions"
    assert create.json == {"input": call.payload}
    assert create.header("authorization") == f"Bearer {SIM_TOKEN}"
    assert create.header("prefer") is None  # no sync wait: create answers at once, we poll
    polls = sim.requests("replicate", stage="poll")
    assert polls and all(p.path == f"/v1/predictions/{out.request_id}" for p in polls)
    assert not sim.requests("replicate", stage="version")


@pytest.mark.parametrize("mode", MODES)
def test_single_string_output_is_normalised_to_a_list(sim: Simulator, mode: str) -> None:
    out = run(provider(), call_for("flux-1.1-pro@replicate", seed=1), mode)
    assert len(out.images) == 1 and out.images[0].url and out.images[0].seed == 1


@pytest.mark.parametrize("mode", MODES)
def test_sdxl_is_created_by_version_without_a_version_lookup(sim: Simulator, mode: str) -> None:
    call = call_for("sdxl@replicate", size="1024x768", negative_prompt="blurry", steps=20)
    out = run(provider(), call, mode)
    assert out.images
    (create,) = creates(sim)
    assert create.path == "/v1/predictions"
    assert create.json["version"] == CAT.offer("sdxl@replicate").endpoint.split(":")[1]
    inp = create.json["input"]
    assert (inp["width"], inp["height"]) == (1024, 768)
    assert inp["negative_prompt"] == "blurry" and inp["num_inference_steps"] == 20
    assert "output_format" not in inp and "aspect_ratio" not in inp
    assert not sim.requests("replicate", stage="version")


@pytest.mark.parametrize("mode", MODES)
def test_slow_prediction_completes(sim: Simulator, mode: str) -> None:
    sim.fail("replicate", kind="slow", times=4)
    out = run(provider(), call_for(), mode)
    assert out.images and len(creates(sim)) == 1
    assert len(sim.requests("replicate", stage="poll")) >= 6


# -- a create is never repeated --------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", [{"status": 500, "times": 2}, {"status": 503, "times": 1},
                                   {"kind": "drop", "times": 1},
                                   {"kind": "gateway_html", "status": 502, "times": 1},
                                   {"status": 429, "retry_after": 0.2, "times": 1}])
def test_poll_errors_after_create_retry_the_poll_not_the_create(sim: Simulator, mode: str,
                                                                fault: dict[str, Any]) -> None:
    sim.fail("replicate", at="poll", **fault)
    out = run(provider(), call_for(), mode)
    assert out.images
    assert len(creates(sim)) == 1
    faulty = [r for r in sim.requests("replicate", stage="poll") if r.fault]
    assert len(faulty) == fault["times"]  # the client's RetryTransport did not retry on its own
    assert all(r.path == f"/v1/predictions/{out.request_id}"
               for r in sim.requests("replicate", stage="poll"))


# -- faults that end the call ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_429_on_create_is_rate_limited_with_retry_after(sim: Simulator, mode: str) -> None:
    sim.fail("replicate", status=429, retry_after=2, times=2)
    with pytest.raises(RateLimited) as ei:
        run(provider(), call_for(), mode)
    assert ei.value.retry_after == 2.0 and ei.value.retryable
    assert len(creates(sim)) == 1


def test_retry_after_from_the_problem_body_when_no_header() -> None:
    from modelglass.providers._errors import http_error

    err = http_error("replicate", 429, headers={}, body={"detail": "throttled", "retry_after": 7},
                     key_env="REPLICATE_API_TOKEN", what="create")
    assert isinstance(err, RateLimited) and err.retry_after == 7.0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", [{"status": 500}, {"kind": "gateway_html", "status": 502}])
def test_server_errors_on_create_are_retryable(sim: Simulator, mode: str,
                                               fault: dict[str, Any]) -> None:
    sim.fail("replicate", **fault)
    with pytest.raises(ProviderError) as ei:
        run(provider(), call_for(), mode)
    assert ei.value.retryable and len(creates(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_dropped_create_is_looked_up_and_never_re_sent(sim: Simulator, mode: str) -> None:
    # Changed on purpose (issue 8, item 1): a create whose answer was lost may have run, so it is
    # looked up in the recent predictions; when it is not there, it is possibly charged.
    sim.fail("replicate", kind="drop")
    with pytest.raises(OutcomeUnknown) as ei:
        run(provider(), call_for(), mode)
    assert not ei.value.retryable and len(creates(sim)) == 1
    assert sim.requests("replicate", stage="list")


@pytest.mark.parametrize("mode", MODES)
def test_nsfw_failure_is_content_rejected(sim: Simulator, mode: str) -> None:
    sim.fail("replicate", kind="content")
    with pytest.raises(ContentRejected, match="safety checker"):
        run(provider(), call_for(), mode)


@pytest.mark.parametrize("mode", MODES)
def test_failed_prediction_is_a_provider_error(sim: Simulator, mode: str) -> None:
    sim.fail("replicate", kind="failed")
    with pytest.raises(ProviderError, match="simulated model error") as ei:
        run(provider(), call_for(), mode)
    assert not ei.value.retryable and not isinstance(ei.value, ContentRejected)


@pytest.mark.parametrize("mode", MODES)
def test_canceled_prediction_is_a_provider_error(sim: Simulator, mode: str) -> None:
    sim.fail("replicate", kind="canceled")
    with pytest.raises(ProviderError, match="canceled"):
        run(provider(), call_for(), mode)


@pytest.mark.parametrize("mode", MODES)
def test_unknown_status_aborted_is_a_provider_error(sim: Simulator, mode: str) -> None:
    sim.fail("replicate", kind="unknown_status")
    with pytest.raises(ProviderError, match="'aborted'") as ei:
        run(provider(), call_for(), mode)
    assert not ei.value.retryable


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["malformed", "wrong_shape"])
def test_unreadable_create_reply_is_never_re_sent(sim: Simulator, mode: str, kind: str) -> None:
    # The server may already hold the prediction: a second create could bill it twice. Since
    # issue 8 it is looked up: "malformed" (the real answer, cut) made one, which is found and
    # finished; "wrong_shape" (a made-up body) made none, which is OutcomeUnknown.
    sim.fail("replicate", kind=kind, at="create")
    if kind == "malformed":
        assert run(provider(), call_for(seed=21 if mode == "sync" else 22), mode).images
    else:
        with pytest.raises(OutcomeUnknown, match="cannot use") as ei:
            run(provider(), call_for(), mode)
        assert not ei.value.retryable
    assert len(creates(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["malformed", "wrong_shape"])
def test_unreadable_poll_reply_is_a_provider_error(sim: Simulator, mode: str, kind: str) -> None:
    sim.fail("replicate", kind=kind, at="poll")
    with pytest.raises(ProviderError, match="cannot use"):
        run(provider(), call_for(), mode)
    assert len(creates(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("at", ["create", "poll"])
def test_hang_ends_in_generation_timeout_within_the_deadline(sim: Simulator, mode: str,
                                                             at: str) -> None:
    sim.fail("replicate", kind="hang", at=at, delay=20)
    t0 = time.monotonic()
    # A create without an answer may have run (issue 8): possibly charged, never re-sent.
    with pytest.raises(OutcomeUnknown if at == "create" else GenerationTimeout):
        run(provider(), call_for(), mode, timeout_s=0.5)
    assert time.monotonic() - t0 < 3.0
    assert len(creates(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_deadline_cancels_a_running_prediction(sim: Simulator, mode: str) -> None:
    sim.service_time("replicate", 5.0)
    try:
        with pytest.raises(GenerationTimeout, match="cancelled"):
            run(provider(), call_for(), mode, timeout_s=0.4)
    finally:
        sim.service_time("replicate", 0.0)
    assert len(sim.requests("replicate", stage="cancel")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_401_names_the_token_variable_and_hides_the_token(sim: Simulator, mode: str) -> None:
    sim.fail("replicate", status=401)
    with pytest.raises(ProviderError) as ei:
        run(provider(), call_for(), mode)
    assert "REPLICATE_API_TOKEN" in str(ei.value) and SIM_TOKEN not in str(ei.value)
    assert not ei.value.retryable


def test_availability_and_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    a = ReplicateProvider().availability()
    assert not a.ok and "REPLICATE_API_TOKEN" in a.reason
    p = ReplicateProvider(api_token="r8_secret_token_value")
    assert p.availability().ok and "r8_secret" not in repr(p)


# -- payload shapes --------------------------------------------------------------------------------

def planned(**kw: Any) -> Planned:
    base: dict[str, Any] = {"prompt": "p", "width": 1024, "height": 1024, "n": 1}
    base.update(kw)
    return Planned(**base)


def test_flux_aspect_table_maps_sizes_to_ratios() -> None:
    view = CAT.offer("flux-dev@replicate")
    for ratio, size in (view.geometry.aspect_ratios or {}).items():
        w, h = (int(x) for x in size.split("x"))
        payload, fates = ReplicateProvider().build_payload(planned(width=w, height=h), view)
        assert payload["aspect_ratio"] == ratio and "width" not in payload
        assert fates["size"].kind is mg.FateKind.mapped


def test_flux_pro_custom_size_goes_as_custom_width_height() -> None:
    view = CAT.offer("flux-1.1-pro@replicate")
    payload, _ = ReplicateProvider().build_payload(planned(width=1024, height=640), view)
    assert (payload["aspect_ratio"], payload["width"], payload["height"]) == ("custom", 1024, 640)


def test_fixed_defaults_and_int_safety_tolerance() -> None:
    payload, _ = ReplicateProvider().build_payload(planned(options={"safety_tolerance": "4"}),
                                                   CAT.offer("flux-schnell@replicate"))
    assert payload["go_fast"] is False
    payload, _ = ReplicateProvider().build_payload(planned(options={"safety_tolerance": "4"}),
                                                   CAT.offer("flux-1.1-pro@replicate"))
    assert payload["safety_tolerance"] == 4


def test_output_format_uses_the_offer_spelling() -> None:
    payload, _ = ReplicateProvider().build_payload(planned(output_format="jpeg"),
                                                   CAT.offer("flux-schnell@replicate"))
    assert payload["output_format"] == "jpg"


def sdxl_with_samplers() -> Any:
    """The shipped SDXL offer as if the catalog listed cog-sdxl's schedulers."""
    import dataclasses

    view = CAT.offer("sdxl@replicate")
    offer = view.offer.model_copy(update={"wire": {**view.offer.wire, "sampler": "scheduler"}})
    controls = view.controls.model_copy(update={"samplers": ["euler", "dpmpp_2m_karras", "unipc"]})
    return dataclasses.replace(view, offer=offer, controls=controls)


@pytest.mark.parametrize("mode", MODES)
def test_sdxl_sampler_is_sent_as_the_cog_scheduler_where_the_wire_map_names_it(
        sim: Simulator, mode: str) -> None:
    view = sdxl_with_samplers()
    call = plan_call(mg.ImageRequest(prompt="p", sampler="dpmpp_2m_karras", seed=1), view,
                     provider=ReplicateProvider())
    assert call.payload["scheduler"] == "KarrasDPM"
    assert call.fate("sampler").kind is mg.FateKind.honored
    assert run(provider(), call, mode).images
    assert creates(sim)[0].json["input"]["scheduler"] == "KarrasDPM"


def test_a_sampler_without_a_provider_spelling_is_dropped_and_never_sent() -> None:
    call = plan_call(mg.ImageRequest(prompt="p", sampler="unipc"), sdxl_with_samplers(),
                     provider=ReplicateProvider())
    assert call.fate("sampler").kind is mg.FateKind.dropped and "scheduler" not in call.payload
    # The shipped offer names cog-sdxl's scheduler field, so a sampler it knows goes on the wire.
    payload, _ = ReplicateProvider().build_payload(planned(sampler="euler"),
                                                   CAT.offer("sdxl@replicate"))
    assert payload["scheduler"] == "K_EULER"
