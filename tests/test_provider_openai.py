"""OpenAI provider: the real ``openai`` client against the loopback OpenAI Images simulator.

Every wire test runs the sync and the async twin. The simulator records every request that
reached the socket, which is how "refused before any call" and "the client's own retries are
off" (exactly one request per provider call) are asserted.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import io
import math
import socket
import time
from typing import Any

import _sim_fixtures
import pytest
from PIL import Image

import modelglass as mg
from modelglass.errors import (
    ContentRejected,
    EmptyResult,
    GenerationTimeout,
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from modelglass.plan import ProviderCall, plan_call
from modelglass.providers.base import ProviderOutput
from modelglass.providers.openai import TOKEN_PRICES, OpenAIProvider, cost_from_usage
from modelglass.testing import Simulator, is_simulated, render_image

#: "async" runs on the lean transport (providers/_http11.py, the default), "async-httpcore" on
#: the client's own (lean_http=False): every wire test holds on both.
MODES = ["sync", "async", "async-httpcore"]
CAT = mg.Catalog.default()
SIM_KEY = "sim-openai-key"
RETIRED = ["dall-e-2", "dall-e-3", "gpt-image-1"]


sim = _sim_fixtures.sim
_fresh = _sim_fixtures.fresh


#: The day before gpt-image-1.5 and gpt-image-1-mini shut down (2026-12-01): still served.
BEFORE_SHUTDOWN = dt.date(2026, 11, 30)


def call_for(key: str = "gpt-image-2@openai", today: dt.date | None = None,
             **req: Any) -> ProviderCall:
    req.setdefault("prompt", "a red bicycle against a brick wall")
    return plan_call(mg.ImageRequest(**req), CAT.offer(key), provider=OpenAIProvider(),
                     today=today)


def run(p: OpenAIProvider, call: ProviderCall, mode: str, timeout_s: float = 5.0) -> ProviderOutput:
    if mode == "sync":
        try:
            return p.generate(call, timeout_s=timeout_s)
        finally:
            p.close()
    if mode == "async-httpcore":
        p.lean_http = False

    async def go() -> ProviderOutput:
        try:
            return await p.agenerate(call, timeout_s=timeout_s)
        finally:
            await p.aclose()
    return asyncio.run(go())


def wire(sim: Simulator) -> list[Any]:
    return sim.requests("openai")


def retired_call(model: str) -> ProviderCall:
    """A call whose offer is retired: plan_call refuses one, so graft the offer onto a plan."""
    good = call_for()
    return dataclasses.replace(good, offer=CAT.offer(f"{model}@openai"),
                               payload={**good.payload, "model": model})


# -- success ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_gpt_image_2_sends_every_field_and_decodes_base64_images(sim: Simulator,
                                                                 mode: str) -> None:
    call = call_for(size="1536x1024", n=2, quality="draft",
                    provider_options={"openai": {"background": "transparent",
                                                 "output_format": "webp"}})
    out = run(OpenAIProvider(), call, mode)

    (req,) = wire(sim)
    assert req.method == "POST" and req.path == "/v1/images/generations"
    assert req.json == {"model": "gpt-image-2", "prompt": "a red bicycle against a brick wall",
                        "size": "1536x1024", "quality": "low", "n": 2, "output_format": "webp",
                        "background": "transparent"}
    assert req.json == call.payload
    assert req.header("authorization") == f"Bearer {SIM_KEY}"
    assert req.header("x-stainless-async", "").startswith("async" if mode.startswith("async") else "false")

    assert len(out.images) == 2
    for img in out.images:
        assert img.url is None and img.data is not None and is_simulated(img.data)
        assert (img.mime, img.width, img.height) == ("image/webp", 1536, 1024)
        with Image.open(io.BytesIO(img.data)) as pil:
            assert (pil.format, pil.size) == ("WEBP", (1536, 1024))
    assert out.images[0].data != out.images[1].data
    assert out.request_id and out.request_id.startswith("req_")
    assert out.timings["total_s"] > 0


@pytest.mark.parametrize("mode", MODES)
def test_quality_axis_picks_the_tier_and_an_option_overrides_it(sim: Simulator,
                                                                mode: str) -> None:
    run(OpenAIProvider(), call_for(quality="print"), mode)
    run(OpenAIProvider(), call_for(quality="print",
                                   provider_options={"openai": {"quality": "low"}}), mode)
    assert [r.json["quality"] for r in wire(sim)] == ["high", "low"]
    assert all("response_format" not in r.json and "seed" not in r.json for r in wire(sim))


@pytest.mark.parametrize("mode", MODES)
def test_usage_becomes_the_actual_cost(sim: Simulator, mode: str) -> None:
    prompt = "a lighthouse at dusk, oil painting"
    out = run(OpenAIProvider(), call_for(prompt=prompt, size="1024x1024", quality="hero"), mode)
    usage = out.extra["usage"]
    # The simulator's usage is deterministic (see modelglass.testing._openai).
    text_tokens = math.ceil(len(prompt) / 4)
    assert usage["output_tokens"] == 1056 and usage["input_tokens"] == text_tokens
    text_in, _, image_out = TOKEN_PRICES["gpt-image-2"]
    assert out.cost_usd == pytest.approx((1056 * image_out + text_tokens * text_in) / 1e6)
    assert out.cost_usd == cost_from_usage("gpt-image-2", usage)


@pytest.mark.parametrize("mode", MODES)
def test_no_usage_or_unknown_token_prices_leave_the_cost_to_the_estimate(sim: Simulator,
                                                                        mode: str) -> None:
    out = run(OpenAIProvider(), call_for("gpt-image-1.5@openai", BEFORE_SHUTDOWN), mode)
    assert out.extra["usage"] and out.cost_usd is None  # no checked token prices for 1.5
    b64 = base64.b64encode(render_image("x", 0, 1024, 1024, "png")).decode()
    sim.fail("openai", status=200, body={"created": 1, "data": [{"b64_json": b64}]})
    out = run(OpenAIProvider(), call_for(), mode)
    assert out.cost_usd is None and len(out.images) == 1


@pytest.mark.parametrize("mode", MODES)
def test_base_url_argument_overrides_the_environment(sim: Simulator, mode: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    out = run(OpenAIProvider(base_url=sim.openai_base_url), call_for(), mode)
    assert out.images and len(wire(sim)) == 1


# -- retired models ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", RETIRED)
def test_planning_a_retired_model_is_refused_naming_the_replacement(sim: Simulator,
                                                                    model: str) -> None:
    with pytest.raises(InvalidRequest, match="retired") as ei:
        call_for(f"{model}@openai")
    assert "'gpt-image-2'" in str(ei.value) and "nothing was sent" in str(ei.value)
    assert ei.value.field == "model"
    assert wire(sim) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", RETIRED)
def test_a_retired_model_is_refused_before_any_request(sim: Simulator, mode: str,
                                                       model: str) -> None:
    with pytest.raises(InvalidRequest, match=f"{model}.*retired.*gpt-image-2"):
        run(OpenAIProvider(), retired_call(model), mode)
    assert wire(sim) == []


@pytest.mark.parametrize("mode", MODES)
def test_server_side_model_not_found_names_the_catalog_replacement(sim: Simulator,
                                                                   mode: str) -> None:
    sim.fail("openai", status=404, body={"error": {
        "message": "The model `gpt-image-1.5` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": None, "code": "model_not_found"}})
    with pytest.raises(ProviderError, match="model_not_found.*Use 'gpt-image-2'") as ei:
        run(OpenAIProvider(), call_for("gpt-image-1.5@openai", BEFORE_SHUTDOWN), mode)
    assert ei.value.status == 404 and not ei.value.retryable


# -- refusals and errors -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_moderation_blocked_is_content_rejected(sim: Simulator, mode: str) -> None:
    sim.fail("openai", kind="content")
    with pytest.raises(ContentRejected, match="output stage") as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert ei.value.code == "moderation_blocked"
    assert len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_content_policy_violation_is_content_rejected(sim: Simulator, mode: str) -> None:
    sim.fail("openai", kind="content", body={"error": {
        "code": "content_policy_violation", "param": None, "type": "invalid_request_error",
        "message": "Your request was rejected as a result of our safety system."}})
    with pytest.raises(ContentRejected) as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert ei.value.code == "content_policy_violation"
    assert len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_429_with_retry_after_is_rate_limited_and_not_retried_by_the_client(
        sim: Simulator, mode: str) -> None:
    sim.fail("openai", status=429, retry_after=2, times=3)
    t0 = time.monotonic()
    with pytest.raises(RateLimited) as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert ei.value.retry_after == 2.0 and ei.value.retryable and ei.value.status == 429
    assert time.monotonic() - t0 < 1.5  # the client did not sleep the Retry-After itself
    assert len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_insufficient_quota_429_is_not_retryable(sim: Simulator, mode: str) -> None:
    sim.fail("openai", status=429, body={"error": {
        "message": "You exceeded your current quota.", "type": "insufficient_quota",
        "param": None, "code": "insufficient_quota"}})
    with pytest.raises(ProviderError, match="quota") as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert not ei.value.retryable and not isinstance(ei.value, RateLimited)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_a_retryable_provider_error_sent_once(sim: Simulator, mode: str,
                                                     status: int) -> None:
    sim.fail("openai", status=status, times=3)
    with pytest.raises(ProviderError) as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert ei.value.retryable and ei.value.status == status
    assert not isinstance(ei.value, (RateLimited, GenerationTimeout))
    assert len(wire(sim)) == 1
    assert wire(sim)[0].header("x-stainless-retry-count") == "0"


@pytest.mark.parametrize("mode", MODES)
def test_x_should_retry_false_makes_a_5xx_final(sim: Simulator, mode: str) -> None:
    sim.fail("openai", status=500, headers={"x-should-retry": "false"})
    with pytest.raises(ProviderError) as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert not ei.value.retryable


@pytest.mark.parametrize("mode", MODES)
def test_gateway_html_is_summarised_and_retryable(sim: Simulator, mode: str) -> None:
    sim.fail("openai", kind="gateway_html", status=502, times=3)
    with pytest.raises(ProviderError) as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert ei.value.retryable and ei.value.status == 502
    assert "gateway page" in str(ei.value) and "<html" not in str(ei.value)
    assert len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_200_html_page_is_a_non_retryable_wrong_reply(sim: Simulator, mode: str) -> None:
    sim.fail("openai", kind="gateway_html", status=200)
    with pytest.raises(ProviderError, match="not JSON") as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert not ei.value.retryable


@pytest.mark.parametrize("mode", MODES)
def test_a_json_reply_labelled_as_text_is_read_as_the_client_reads_it(sim: Simulator,
                                                                      mode: str) -> None:
    # openai parses a 200 body as JSON whatever its Content-Type says; so does the raw read.
    b64 = base64.b64encode(render_image("x", 1, 64, 64, "png")).decode()
    sim.fail("openai", kind="wrong_shape", headers={"Content-Type": "text/plain"},
             body={"created": 1, "size": "64x64", "data": [{"b64_json": b64}]})
    out = run(OpenAIProvider(), call_for(), mode)
    assert len(out.images) == 1 and (out.images[0].width, out.images[0].height) == (64, 64)


@pytest.mark.parametrize("mode", MODES)
def test_the_reply_record_keeps_usage_and_request_id_but_no_image_data(sim: Simulator,
                                                                       mode: str) -> None:
    b64 = base64.b64encode(render_image("x", 1, 64, 64, "png")).decode()
    usage = {"input_tokens": 10, "output_tokens": 272, "total_tokens": 282,
             "input_tokens_details": {"text_tokens": 10, "image_tokens": 0,
                                      "cached_tokens": None}}
    sim.fail("openai", kind="wrong_shape", headers={"x-request-id": "req_abc"},
             body={"created": 1, "background": None, "data": [{"b64_json": b64}],
                   "usage": usage})
    out = run(OpenAIProvider(), call_for(), mode)
    assert out.request_id == "req_abc"
    # no copy of the image's base64, and no nulls (at any depth)
    assert out.raw == {"created": 1, "usage": {**usage, "input_tokens_details": {
        "text_tokens": 10, "image_tokens": 0}}}
    assert out.extra["usage"] == out.raw["usage"]
    assert out.cost_usd is not None and out.cost_usd > 0


@pytest.mark.parametrize("mode", MODES)
def test_malformed_json_is_a_non_retryable_provider_error(sim: Simulator, mode: str) -> None:
    sim.fail("openai", kind="malformed")
    with pytest.raises(ProviderError, match="malformed JSON") as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert not ei.value.retryable and len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_json_reply_that_is_not_text_is_malformed_json_and_possibly_charged(sim: Simulator,
                                                                              mode: str) -> None:
    # labelled JSON, but bytes no Unicode encoding reads: the generation ran, its answer is lost
    sim.fail("openai", kind="wrong_shape", body=b'{"data": [{"b64_json": "\xff\xfe\xfd"}]}')
    with pytest.raises(OutcomeUnknown, match="malformed JSON") as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert ei.value.possibly_charged and not ei.value.retryable and len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("body,match", [({"data": [{"foo": 1}]}, "neither b64_json nor url"),
                                        ({"created": 1}, "no 'data' list"),
                                        ({"created": 1, "data": [{"b64_json": "@@not base64@@"}]},
                                         "invalid base64")])
def test_wrong_shaped_json_is_a_non_retryable_provider_error(sim: Simulator, mode: str,
                                                             body: Any, match: str) -> None:
    sim.fail("openai", kind="wrong_shape", body=body)
    with pytest.raises(ProviderError, match=match) as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert not ei.value.retryable and not isinstance(ei.value, EmptyResult)


@pytest.mark.parametrize("mode", MODES)
def test_empty_data_is_empty_result(sim: Simulator, mode: str) -> None:
    sim.fail("openai", kind="wrong_shape", body={"created": 1, "data": []})
    with pytest.raises(EmptyResult):
        run(OpenAIProvider(), call_for(), mode)


@pytest.mark.parametrize("mode", MODES)
def test_dropped_connection_after_sending_is_outcome_unknown_and_sent_once(sim: Simulator,
                                                                           mode: str) -> None:
    # Changed on purpose (issue 8, item 1): a POST that reached the server may have been run and
    # billed, so a dropped answer is no longer "retryable" but possibly charged.
    sim.fail("openai", kind="drop", times=3)
    with pytest.raises(OutcomeUnknown, match="may have been billed") as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert not ei.value.retryable and ei.value.possibly_charged
    assert len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_refused_connection_is_retryable_because_nothing_was_sent(mode: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    with pytest.raises(ProviderError, match="could not reach openai") as ei:
        run(OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1"), call_for(), mode)
    assert ei.value.retryable and not isinstance(ei.value, OutcomeUnknown)


@pytest.mark.parametrize("mode", MODES)
def test_hang_ends_within_the_deadline_as_possibly_charged(sim: Simulator, mode: str) -> None:
    sim.fail("openai", kind="hang", delay=20)
    t0 = time.monotonic()
    with pytest.raises(OutcomeUnknown, match="no answer before the timeout"):
        run(OpenAIProvider(), call_for(), mode, timeout_s=0.5)
    assert 0.4 < time.monotonic() - t0 < 2.0
    assert len(wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_401_names_the_key_variable_and_never_shows_the_key(sim: Simulator, mode: str) -> None:
    sim.fail("openai", status=401)
    with pytest.raises(ProviderError) as ei:
        run(OpenAIProvider(), call_for(), mode)
    assert "OPENAI_API_KEY" in str(ei.value) and not ei.value.retryable
    assert SIM_KEY not in str(ei.value) and SIM_KEY not in repr(ei.value.body)


# -- payload, availability, keys (no I/O) ---------------------------------------------------------

def test_provider_options_are_checked() -> None:
    with pytest.raises(InvalidRequest, match="response_format"):
        call_for(provider_options={"openai": {"response_format": "url"}})
    with pytest.raises(InvalidRequest, match="allowed"):
        call_for(provider_options={"openai": {"style": "vivid"}})
    with pytest.raises(InvalidRequest, match="model"):
        call_for(provider_options={"openai": {"model": "dall-e-3"}})


def test_controls_openai_lacks_are_dropped_and_not_sent() -> None:
    call = call_for(negative_prompt="blurry", cfg=7.0, steps=30, seed=3)
    assert not {"negative_prompt", "guidance_scale", "steps", "seed"} & set(call.payload)
    for control in ("negative_prompt", "cfg", "steps", "seed"):
        fate = call.fate(control)
        assert fate is not None and fate.kind is mg.FateKind.dropped, control


def test_availability_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    a = OpenAIProvider().availability()
    assert not a.ok and "OPENAI_API_KEY" in a.reason
    with pytest.raises(mg.ProviderUnavailable, match="OPENAI_API_KEY"):
        OpenAIProvider().generate(call_for(), timeout_s=1)
    p = OpenAIProvider(api_key="sk-secret-value-123456")
    assert p.availability().ok and "sk-secret" not in repr(p)


def test_cost_from_usage_is_none_without_output_tokens_or_prices() -> None:
    assert cost_from_usage("gpt-image-2", None) is None
    assert cost_from_usage("gpt-image-2", {"input_tokens": 5}) is None
    assert cost_from_usage("gpt-image-1.5", {"output_tokens": 100}) is None
    assert cost_from_usage("gpt-image-2-2026-04-21", {"output_tokens": 1_000_000}) == 30.0


def test_opt_in_aiohttp_transport_generates_and_maps_errors(sim: Simulator) -> None:
    out = run(OpenAIProvider(aiohttp=True), call_for(), "async")
    assert len(out.images) == 1 and out.images[0].data
    assert len(wire(sim)) == 1
    sim.fail("openai", status=429, retry_after=2)
    with pytest.raises(RateLimited) as ei:
        run(OpenAIProvider(aiohttp=True), call_for(), "async")
    assert ei.value.retry_after == 2


def test_aiohttp_is_off_by_default() -> None:
    assert OpenAIProvider().aiohttp is False


def _async_transport(p: OpenAIProvider) -> Any:
    async def go() -> Any:
        try:
            return p.awire().client._client._transport
        finally:
            await p.aclose()
    return asyncio.run(go())


def test_the_async_client_runs_on_the_lean_transport_unless_told_or_proxied(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(_async_transport(OpenAIProvider())).__name__ == "LeanTransport"
    assert type(_async_transport(OpenAIProvider(lean_http=False))).__name__ != "LeanTransport"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert type(_async_transport(OpenAIProvider())).__name__ != "LeanTransport"


# -- issue 8, item 4: a poisoned usage never becomes a cost ------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tokens", ["-4160", "NaN", "Infinity", "\"lots\""])
def test_negative_or_nan_usage_is_a_typed_error_never_a_cost(sim: Simulator, mode: str,
                                                            tokens: str) -> None:
    b64 = base64.b64encode(render_image("x", 1, 64, 64, "png")).decode()
    body = ('{"created": 1, "output_format": "png", "size": "1024x1024", "data": [{"b64_json": "'
            + b64 + '"}], "usage": {"input_tokens": 10, "output_tokens": ' + tokens
            + ', "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}}')
    sim.fail("openai", kind="wrong_shape", body=body)
    with pytest.raises(ProviderError, match="usage.output_tokens") as ei:
        run(OpenAIProvider(), call_for(), mode)
    # the generation ran (and was billed): possibly charged, so the budget keeps its estimate
    assert isinstance(ei.value, OutcomeUnknown) and ei.value.possibly_charged


def test_cost_from_good_usage_is_finite_and_positive() -> None:
    from modelglass.providers.openai import check_usage

    assert check_usage({"input_tokens": 10, "output_tokens": 4160}) is None
    assert check_usage({"output_tokens": -1}) == "usage.output_tokens is -1, not a token count"
    assert "nan" in (check_usage({"input_tokens_details": {"text_tokens": math.nan}}) or "")
