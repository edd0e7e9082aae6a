"""fal provider: the real ``fal_client`` against the loopback fal simulator (queue API, TLS).

Every test runs the sync and the async twin. Faults are scripted per test; the simulator records
every request that reached the wire, which is how "resumed by id, never re-submitted" and "the
client did not retry on its own" are asserted.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import _sim_fixtures
import pytest

import modelglass as mg
from modelglass.errors import (
    ContentRejected,
    EmptyResult,
    GenerationTimeout,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)
from modelglass.plan import Planned, plan_call
from modelglass.providers.base import ProviderOutput
from modelglass.providers.fal import FalProvider
from modelglass.testing import Simulator

MODES = ["sync", "async"]
CAT = mg.Catalog.default()
SIM_KEY = "sim-fal-key"


sim = _sim_fixtures.sim
_fresh = _sim_fixtures.fresh


def provider(**kw: Any) -> FalProvider:
    kw.setdefault("poll_interval_s", 0.01)
    kw.setdefault("poll_retry_backoff_s", 0.01)
    return FalProvider(**kw)


def call_for(key: str = "flux-dev@fal", **req: Any) -> Any:
    req.setdefault("prompt", "a red bicycle against a brick wall")
    return plan_call(mg.ImageRequest(**req), CAT.offer(key), provider=FalProvider())


def run(p: FalProvider, call: Any, mode: str, timeout_s: float = 5.0) -> ProviderOutput:
    if mode == "sync":
        return p.generate(call, timeout_s=timeout_s)

    async def go() -> ProviderOutput:
        try:
            return await p.agenerate(call, timeout_s=timeout_s)
        finally:
            await p.aclose()
    return asyncio.run(go())


def ids_on_wire(sim: Simulator) -> set[str]:
    """Request ids named in every status / result / cancel path."""
    return {r.path.split("/requests/")[1].split("/")[0]
            for r in sim.requests("fal") if "/requests/" in r.path}


# -- success ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_queue_success_returns_urls_sizes_and_the_request_id(sim: Simulator, mode: str) -> None:
    call = call_for(seed=7, size="1024x768")
    out = run(provider(), call, mode)
    assert len(out.images) == 1
    img = out.images[0]
    assert img.url and img.url.startswith("https://127.0.0.1:") and img.data is None
    assert (img.width, img.height, img.mime, img.seed) == (1024, 768, "image/png", 7)
    submits = sim.requests("fal", stage="submit")
    assert len(submits) == 1
    assert submits[0].json == call.payload
    assert submits[0].header("authorization") == f"Key {SIM_KEY}"
    assert ids_on_wire(sim) == {out.request_id}
    assert out.timings["total_s"] > 0 and out.cost_usd is None


@pytest.mark.parametrize("mode", MODES)
def test_slow_queue_completes(sim: Simulator, mode: str) -> None:
    sim.fail("fal", kind="slow", times=4)
    out = run(provider(), call_for(), mode)
    assert out.images
    assert len(sim.requests("fal", stage="status")) >= 6  # 4 slow + queued/progress/completed
    assert len(sim.requests("fal", stage="submit")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_n_images_in_one_call(sim: Simulator, mode: str) -> None:
    out = run(provider(), call_for(n=3, seed=1), mode)
    assert len(out.images) == 3
    assert sim.requests("fal", stage="submit")[0].json["num_images"] == 3


# -- resume by request id --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", [{"status": 500, "times": 2}, {"status": 503, "times": 1},
                                   {"kind": "drop", "times": 2},
                                   {"kind": "gateway_html", "status": 502, "times": 1}])
def test_failed_status_poll_resumes_by_the_same_request_id(sim: Simulator, mode: str,
                                                           fault: dict[str, Any]) -> None:
    sim.fail("fal", at="status", **fault)
    out = run(provider(), call_for(), mode)
    assert out.images
    assert len(sim.requests("fal", stage="submit")) == 1
    assert ids_on_wire(sim) == {out.request_id}
    assert sum(1 for r in sim.requests("fal", stage="status") if r.fault) == fault["times"]


@pytest.mark.parametrize("mode", MODES)
def test_failed_result_fetch_resumes_without_resubmit(sim: Simulator, mode: str) -> None:
    sim.fail("fal", status=503, at="result", times=1)
    out = run(provider(), call_for(), mode)
    assert out.images
    assert len(sim.requests("fal", stage="submit")) == 1
    assert len(sim.requests("fal", stage="result")) == 2


@pytest.mark.parametrize("mode", MODES)
def test_rate_limited_poll_waits_its_retry_after_then_resumes(sim: Simulator, mode: str) -> None:
    sim.fail("fal", status=429, at="status", retry_after=0.2)
    t0 = time.monotonic()
    out = run(provider(), call_for(), mode)
    assert out.images and time.monotonic() - t0 >= 0.2
    assert len(sim.requests("fal", stage="submit")) == 1


# -- faults that end the call ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_429_on_submit_is_rate_limited_with_retry_after_and_not_retried_by_the_client(
        sim: Simulator, mode: str) -> None:
    sim.fail("fal", status=429, retry_after=1, times=3)
    with pytest.raises(RateLimited) as ei:
        run(provider(), call_for(), mode)
    assert ei.value.retry_after == 1.0 and ei.value.retryable and ei.value.status == 429
    assert len(sim.requests("fal", stage="submit")) == 1  # fal-client's own 10 tries are off


@pytest.mark.parametrize("mode", MODES)
def test_500_on_submit_is_a_retryable_provider_error(sim: Simulator, mode: str) -> None:
    sim.fail("fal", status=500)
    with pytest.raises(ProviderError) as ei:
        run(provider(), call_for(), mode)
    assert ei.value.retryable and ei.value.status == 500
    assert not isinstance(ei.value, (RateLimited, GenerationTimeout))


@pytest.mark.parametrize("mode", MODES)
def test_gateway_html_on_submit_is_retryable_and_not_retried_inside(sim: Simulator,
                                                                    mode: str) -> None:
    sim.fail("fal", kind="gateway_html", status=502, times=3)
    with pytest.raises(ProviderError) as ei:
        run(provider(), call_for(), mode)
    assert ei.value.retryable and ei.value.status == 502
    assert "gateway page" in str(ei.value) and "<html" not in str(ei.value)
    assert len(sim.requests("fal", stage="submit")) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("at", ["submit", "result"])
def test_content_policy_violation_is_content_rejected(sim: Simulator, mode: str, at: str) -> None:
    sim.fail("fal", kind="content", at=at)
    with pytest.raises(ContentRejected) as ei:
        run(provider(), call_for(), mode)
    assert ei.value.code == "content_policy_violation"
    assert len(sim.requests("fal", stage="submit")) == 1


def test_nsfw_flag_in_the_result_is_content_rejected() -> None:
    result = {"images": [{"url": "https://x/a.png", "width": 8, "height": 8}],
              "has_nsfw_concepts": [True], "seed": 1}
    with pytest.raises(ContentRejected, match="blacked them out"):
        FalProvider()._output(result, "rid", call_for(), {}, "fal request rid")


def test_empty_images_is_empty_result() -> None:
    with pytest.raises(EmptyResult):
        FalProvider()._output({"images": [], "seed": 1}, "rid", call_for(), {}, "x")


def test_data_uri_images_are_decoded_inline() -> None:
    result = {"images": [{"url": "data:image/png;base64,iVBORw0KGgo=", "width": 1, "height": 1}]}
    out = FalProvider()._output(result, "rid", call_for(), {}, "x")
    assert out.images[0].data == b"\x89PNG\r\n\x1a\n" and out.images[0].url is None


@pytest.mark.parametrize("mode", MODES)
def test_failed_job_raises_its_error_without_refetching(sim: Simulator, mode: str) -> None:
    sim.fail("fal", kind="failed", status=500)
    with pytest.raises(ProviderError) as ei:
        run(provider(), call_for(), mode)
    assert ei.value.status == 500
    assert len(sim.requests("fal", stage="result")) == 1
    assert len(sim.requests("fal", stage="submit")) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("at", ["result", "status"])
def test_malformed_json_is_a_non_retryable_provider_error(sim: Simulator, mode: str,
                                                          at: str) -> None:
    sim.fail("fal", kind="malformed", at=at)
    with pytest.raises(ProviderError, match="malformed JSON") as ei:
        run(provider(), call_for(), mode)
    assert not ei.value.retryable


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("at", ["submit", "status", "result"])
def test_wrong_shaped_reply_is_a_non_retryable_provider_error(sim: Simulator, mode: str,
                                                              at: str) -> None:
    sim.fail("fal", kind="wrong_shape", at=at)
    with pytest.raises(ProviderError, match="cannot use") as ei:
        run(provider(), call_for(), mode)
    assert not ei.value.retryable and not isinstance(ei.value, EmptyResult)


@pytest.mark.parametrize("mode", MODES)
def test_unknown_status_is_a_provider_error(sim: Simulator, mode: str) -> None:
    sim.fail("fal", kind="unknown_status")
    with pytest.raises(ProviderError, match="does not know") as ei:
        run(provider(), call_for(), mode)
    assert not ei.value.retryable


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("at", ["submit", "status"])
def test_hang_ends_in_generation_timeout_within_the_deadline(sim: Simulator, mode: str,
                                                             at: str) -> None:
    sim.fail("fal", kind="hang", at=at, delay=20)
    t0 = time.monotonic()
    # A submit that got no answer may have queued the job (issue 8): possibly charged, not retried.
    expected = OutcomeUnknown if at == "submit" else GenerationTimeout
    with pytest.raises(expected) as ei:
        run(provider(), call_for(), mode, timeout_s=0.5)
    assert time.monotonic() - t0 < 3.0
    assert not (at == "submit" and ei.value.retryable)
    if at == "status":
        assert len(sim.requests("fal", stage="cancel")) == 1


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port with a socket bound but not listening: a connect is refused at once,
    before any byte of a request could leave."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


class _RefusedFirst(FalProvider):
    """The real fal provider; its first job's queue host refuses the connection, later jobs
    reach the simulator."""

    def __init__(self, sim: Simulator, port: int, mp: pytest.MonkeyPatch) -> None:
        super().__init__(poll_interval_s=0.01, poll_retry_backoff_s=0.01)
        self.sim, self.port, self.mp, self.jobs = sim, port, mp, 0

    def job(self, call: Any, **kw: Any) -> Any:
        import fal_client.client

        self.jobs += 1
        host = f"127.0.0.1:{self.port}" if self.jobs == 1 else self.sim.fal_queue_host
        self.mp.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"https://{host}/")
        return super().job(call, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_a_submit_that_never_connected_is_retried_not_outcome_unknown(
        sim: Simulator, mode: str, refused_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Connection refused: the submit never left, so fal cannot have queued (or billed) it. It is
    # a retryable failure the engine tries again — not OutcomeUnknown, which would give up on
    # the offer and keep its estimate as possibly spent.
    provider = _RefusedFirst(sim, refused_port, monkeypatch)
    budget = mg.Budget(1.0)
    client_cls = mg.Client if mode == "sync" else mg.AsyncClient
    client = client_cls(providers={"fal": provider}, available=["fal"], budget=budget,
                        max_retries=1, retry_backoff_s=0.0)

    async def agen() -> Any:
        async with client:  # type: ignore[attr-defined]
            return await client.generate("a red bicycle", quality="draft", provider="fal")

    r = (client.generate("a red bicycle", quality="draft", provider="fal")  # type: ignore[union-attr]
         if mode == "sync" else asyncio.run(agen()))
    first, second = r.attempts
    assert first.error_type == "ProviderError" and first.retryable and not first.possibly_charged
    assert "could not reach fal" in (first.error or "")
    assert second.ok and len(r.images) == 1
    assert len(sim.requests("fal", stage="submit")) == 1 and sim.billed("fal") == 1
    assert budget.spent == pytest.approx(r.cost_usd) and budget.reserved == 0


@pytest.mark.parametrize("mode", MODES)
def test_slow_job_past_the_deadline_is_cancelled(sim: Simulator, mode: str) -> None:
    sim.service_time("fal", 5.0)
    try:
        with pytest.raises(GenerationTimeout, match="cancelled"):
            run(provider(), call_for(), mode, timeout_s=0.5)
    finally:
        sim.service_time("fal", 0.0)
    cancels = sim.requests("fal", stage="cancel")
    assert len(cancels) == 1 and ids_on_wire(sim) and len(ids_on_wire(sim)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_401_says_which_env_var_to_check_and_never_shows_the_key(sim: Simulator,
                                                                 mode: str) -> None:
    sim.fail("fal", status=401)
    with pytest.raises(ProviderError) as ei:
        run(provider(), call_for(), mode)
    assert not ei.value.retryable and "FAL_KEY" in str(ei.value)
    assert SIM_KEY not in str(ei.value) and SIM_KEY not in repr(ei.value.body)


def test_key_never_appears_in_reprs_or_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    p = FalProvider(api_key="fal-secret-key-123456")
    assert "fal-secret" not in repr(p)
    from modelglass.providers._keys import scrub
    assert scrub("boom fal-secret-key-123456 boom", p._secrets()) == "boom *** boom"


# -- availability ----------------------------------------------------------------------------------

def test_availability_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(var, raising=False)
    a = FalProvider().availability()
    assert not a.ok and "FAL_KEY" in a.reason
    monkeypatch.setenv("FAL_KEY_ID", "id")
    monkeypatch.setenv("FAL_KEY_SECRET", "secret")
    assert FalProvider().availability().ok
    assert FalProvider()._key() == "id:secret"


def test_generate_without_a_key_is_provider_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(mg.ProviderUnavailable, match="FAL_KEY"):
        FalProvider().generate(call_for(), timeout_s=1)


# -- payload shapes per endpoint -------------------------------------------------------------------

def planned(**kw: Any) -> Planned:
    base: dict[str, Any] = {"prompt": "p", "width": 1024, "height": 1024, "n": 1}
    base.update(kw)
    return Planned(**base)


@pytest.mark.parametrize("size,preset", [((1024, 1024), "square_hd"), ((512, 512), "square"),
                                         ((768, 1024), "portrait_4_3"),
                                         ((576, 1024), "portrait_16_9"),
                                         ((1024, 768), "landscape_4_3"),
                                         ((1024, 576), "landscape_16_9")])
def test_preset_sizes_are_sent_as_image_size_presets(size: tuple[int, int], preset: str) -> None:
    payload, fates = FalProvider().build_payload(planned(width=size[0], height=size[1]),
                                                 CAT.offer("flux-dev@fal"))
    assert payload["image_size"] == preset
    assert fates["size"].kind is mg.FateKind.mapped and fates["size"].applied == preset


def test_other_sizes_are_sent_as_width_height_objects() -> None:
    payload, fates = FalProvider().build_payload(planned(width=1536, height=1024),
                                                 CAT.offer("flux-dev@fal"))
    assert payload["image_size"] == {"width": 1536, "height": 1024} and "size" not in fates


def test_fast_sdxl_uses_format_and_negative_prompt() -> None:
    p = planned(negative_prompt="blurry", steps=20, guidance=6.5, seeds=(3,), output_format="png")
    payload, _ = FalProvider().build_payload(p, CAT.offer("sdxl@fal"))
    assert payload["format"] == "png" and "output_format" not in payload
    assert payload["negative_prompt"] == "blurry"
    assert payload["num_inference_steps"] == 20 and payload["guidance_scale"] == 6.5
    assert payload["seed"] == 3


def test_ultra_sends_aspect_ratio_and_no_image_size() -> None:
    view = CAT.offer("flux-1.1-pro-ultra@fal")
    ratio, size = next(iter((view.geometry.aspect_ratios or {"16:9": "2752x1536"}).items()))
    w, h = (int(x) for x in size.split("x"))
    payload, _ = FalProvider().build_payload(planned(width=w, height=h, aspect_ratio=ratio), view)
    assert payload["aspect_ratio"] == ratio and "image_size" not in payload
    assert "num_inference_steps" not in payload and "guidance_scale" not in payload


def test_safety_tolerance_is_sent_as_a_string() -> None:
    payload, _ = FalProvider().build_payload(planned(options={"safety_tolerance": 5}),
                                             CAT.offer("flux-1.1-pro@fal"))
    assert payload["safety_tolerance"] == "5"


def test_options_may_not_override_a_control() -> None:
    with pytest.raises(mg.InvalidRequest, match="steps"):
        FalProvider().build_payload(planned(steps=10, options={"num_inference_steps": 3}),
                                    CAT.offer("flux-dev@fal"))


def test_controls_the_offer_lacks_are_not_sent() -> None:
    p = planned(steps=10, guidance=4.0, negative_prompt="x", seeds=(1,))
    payload, _ = FalProvider().build_payload(p, CAT.offer("flux-1.1-pro@fal"))
    assert not {"num_inference_steps", "guidance_scale", "negative_prompt"} & set(payload)
