"""The simulators themselves (``modelglass.testing``), driven by the unmodified official clients.

What a user's test can rely on: deterministic real image bytes, request records, scripted
faults (``times``, ``at``, each kind), ``reset``, ``service_time``, fal over TLS, and the
environment put back when the block ends.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import ssl
import sys
import threading
import time
from typing import Any

import _sim_fixtures
import fal_client
import httpx
import openai
import pytest
import replicate
from PIL import Image
from replicate.exceptions import ModelError, ReplicateError

from modelglass.testing import (
    FAULT_KINDS,
    SIMULATED_MARKER,
    Fault,
    Simulator,
    is_simulated,
    render_image,
    simulate,
)
from modelglass.testing._openai import DRAWS, render_seed

PROMPT = "a red bicycle against a brick wall"


sim = _sim_fixtures.sim_fixture(poll_interval=0.01)
_fresh = _sim_fixtures.fresh


# -- helpers: the official clients, built inside the block so they read its environment ----------

def oai(**kw: Any) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(**kw)


def fal() -> fal_client.SyncClient:
    return fal_client.SyncClient()


def rep() -> replicate.Client:
    return replicate.Client()


def fetch(url: str) -> httpx.Response:
    with httpx.Client(timeout=5) as c:  # trusts the simulator CA through SSL_CERT_FILE
        return c.get(url)


def fal_image(seed: int, size: dict[str, int] | str = "square", prompt: str = PROMPT,
              fmt: str = "png") -> bytes:
    out = fal().subscribe("fal-ai/flux/dev", {"prompt": prompt, "seed": seed,
                                              "image_size": size, "output_format": fmt},
                          interval=0.01)
    return fetch(out["images"][0]["url"]).content


def rep_run(model: str = "black-forest-labs/flux-schnell", **inp: Any) -> Any:
    inp.setdefault("prompt", PROMPT)
    return rep().run(model, input=inp, use_file_output=False, wait=False)


def size_of(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return str(img.format), img.size


# -- determinism and real bytes -------------------------------------------------------------------

def test_same_prompt_seed_and_size_give_the_same_bytes_across_providers(sim: Simulator) -> None:
    a = fal_image(7, {"width": 640, "height": 384})
    b = fal_image(7, {"width": 640, "height": 384})
    assert a == b and is_simulated(a)
    (u1,) = rep_run(seed=7, aspect_ratio="16:9", output_format="png")
    (u2,) = rep_run(seed=7, aspect_ratio="16:9", output_format="png")
    assert u1 != u2  # each prediction has its own file ...
    assert fetch(u1).content == fetch(u2).content  # ... with the same content
    # The content is a pure function of (prompt, seed, size, format), the same on every provider.
    assert fetch(u1).content == render_image(PROMPT, 7, 1344, 768, "png")
    assert a == render_image(PROMPT, 7, 640, 384, "png")


def test_different_seed_or_prompt_gives_different_bytes(sim: Simulator) -> None:
    base = fal_image(1)
    assert fal_image(2) != base
    assert fal_image(1, prompt="a blue bicycle") != base
    urls = rep_run(seed=10, num_outputs=2)
    first, second = (fetch(u).content for u in urls)
    assert first != second  # image i is rendered with seed + i
    assert first == fetch(rep_run(seed=10)[0]).content


@pytest.mark.parametrize("fmt,pil", [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_openai_returns_real_bytes_in_the_requested_format_and_size(sim: Simulator, fmt: str,
                                                                    pil: str) -> None:
    r = oai().images.generate(model="gpt-image-2", prompt=PROMPT, size="1536x1024",
                              output_format=fmt, quality="low", n=2)
    assert r.output_format == fmt and r.size == "1536x1024" and r.usage is not None
    datas = [base64.b64decode(d.b64_json) for d in r.data]
    for data in datas:
        assert size_of(data) == (pil, (1536, 1024)) and is_simulated(data)
    assert datas[0] != datas[1]
    assert datas[0] == render_image(PROMPT, render_seed(0, 0), 1536, 1024, fmt)
    # OpenAI takes no seed: the same request again is a new draw, with new images
    again = oai().images.generate(model="gpt-image-2", prompt=PROMPT, size="1536x1024",
                                  output_format=fmt, quality="low", n=1)
    data = base64.b64decode(again.data[0].b64_json)
    assert data not in datas and data == render_image(PROMPT, render_seed(1, 0), 1536, 1024, fmt)


def test_openai_draws_cycle_through_a_bounded_set_of_renders() -> None:
    seeds = [render_seed(k, i) for k in range(DRAWS) for i in range(10)]
    assert len(set(seeds)) == len(seeds)  # every image of 16 requests of up to 10 differs
    assert render_seed(DRAWS + 3, 2) == render_seed(3, 2)  # then the renders repeat (cached)


@pytest.mark.parametrize("fmt,pil,mime", [("webp", "WEBP", "image/webp"),
                                          ("jpg", "JPEG", "image/jpeg"),
                                          ("png", "PNG", "image/png")])
def test_replicate_serves_each_output_format_at_the_aspect_ratio_size(sim: Simulator, fmt: str,
                                                                      pil: str,
                                                                      mime: str) -> None:
    (url,) = rep_run(seed=3, aspect_ratio="3:2", output_format=fmt)
    resp = fetch(url)
    assert resp.headers["content-type"] == mime
    assert size_of(resp.content) == (pil, (1216, 832)) and is_simulated(resp.content)


def test_fal_sizes_follow_presets_objects_and_ultra_aspect_ratios(sim: Simulator) -> None:
    out = fal().subscribe("fal-ai/flux/schnell", {"prompt": PROMPT, "image_size":
                                                  "portrait_16_9"}, interval=0.01)
    img = out["images"][0]
    assert (img["width"], img["height"]) == (576, 1024)
    assert size_of(fetch(img["url"]).content) == ("JPEG", (576, 1024))  # fal's default: jpeg
    out = fal().subscribe("fal-ai/flux-pro/v1.1-ultra", {"prompt": PROMPT, "aspect_ratio": "1:1",
                                                          "output_format": "png"}, interval=0.01)
    assert size_of(fetch(out["images"][0]["url"]).content) == ("PNG", (2048, 2048))


def test_render_image_and_is_simulated() -> None:
    for fmt in ("png", "jpeg", "webp"):
        data = render_image("x", 1, 96, 48, fmt)
        assert size_of(data)[1] == (96, 48) and is_simulated(data)
        assert SIMULATED_MARKER.encode() in data
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    assert not is_simulated(buf.getvalue())
    with pytest.raises(ValueError, match="format"):
        render_image("x", 1, 8, 8, "gif")


def test_fal_sync_run_host_answers_directly(sim: Simulator) -> None:
    out = fal().run("fal-ai/flux/schnell", {"prompt": PROMPT, "seed": 5, "image_size": "square"})
    assert out["seed"] == 5 and out["has_nsfw_concepts"] == [False]
    (req,) = sim.requests("fal")
    assert req.stage == "run" and req.path == "/fal-ai/flux/schnell"


def test_replicate_run_by_version_fetches_the_version_and_prefer_wait_finishes(
        sim: Simulator) -> None:
    version = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
    out = rep().run(f"stability-ai/sdxl:{version}", input={"prompt": PROMPT, "width": 768,
                                                           "height": 512, "seed": 1},
                    use_file_output=False)
    assert size_of(fetch(out[0]).content) == ("PNG", (768, 512))
    stages = [r.stage for r in sim.requests("replicate") if r.stage != "download"]
    assert sorted(stages) == ["create", "version"]  # no poll: Prefer: wait answered at once
    create = sim.requests("replicate", stage="create")[0]
    assert create.header("prefer") == "wait" and create.json["version"] == version


def test_the_simulators_validate_like_the_real_apis(sim: Simulator) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        oai().images.generate(model="gpt-image-2", prompt=PROMPT, size="1000x1000")
    assert ei.value.status_code == 400 and ei.value.body["param"] == "size"
    with pytest.raises(openai.NotFoundError) as nf:
        oai().images.generate(model="dall-e-3", prompt=PROMPT)
    assert nf.value.code == "model_not_found"
    with pytest.raises(fal_client.client.FalClientHTTPError) as fe:
        fal().run("fal-ai/flux/schnell", {"prompt": PROMPT, "num_inference_steps": 30})
    assert fe.value.status_code == 422 and isinstance(fe.value.message, list)
    with pytest.raises(ReplicateError) as re_:
        rep_run(aspect_ratio="7:3")
    assert re_.value.status == 422


# -- request records -------------------------------------------------------------------------------

def test_every_request_is_recorded_with_headers_including_auth(sim: Simulator) -> None:
    oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    fal_image(1)
    rep_run(seed=1)

    (o,) = sim.requests("openai")
    assert (o.method, o.path, o.stage) == ("POST", "/v1/images/generations", "generate")
    assert o.header("Authorization") == "Bearer sim-openai-key"
    assert o.json == {"model": "gpt-image-2", "prompt": PROMPT}
    assert o.header("x-stainless-retry-count") == "0"

    f = sim.requests("fal")
    assert [r.stage for r in f][:2] == ["submit", "status"] and f[-1].stage == "download"
    assert "result" in [r.stage for r in f]
    assert all(r.header("authorization") == "Key sim-fal-key" for r in f if r.stage != "download")
    assert f[1].query["logs"] in ("true", "false", "0", "1")

    r = sim.requests("replicate")
    assert r[0].stage == "create" and r[0].header("authorization") == "Bearer sim-replicate-token"
    assert r[0].json == {"input": {"prompt": PROMPT, "seed": 1}}

    everything = sim.requests()
    assert len(everything) == 1 + len(f) + len(r)
    assert [x.time for x in everything] == sorted(x.time for x in everything)
    assert len(sim.requests("fal", stage="submit")) == 1


def test_records_never_show_the_key_in_their_repr(sim: Simulator) -> None:
    oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    (req,) = sim.requests("openai")
    assert "sim-openai-key" not in repr(req) and "<redacted>" in repr(req)
    assert "sim-openai-key" not in repr(sim)


def test_reset_forgets_requests_and_faults(sim: Simulator) -> None:
    oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    sim.fail("openai", status=500, times=5)
    sim.fail("fal", status=500)
    sim.reset("openai")
    assert sim.requests("openai") == [] and sim.faults("openai") == []
    assert len(sim.faults("fal")) == 1
    oai().images.generate(model="gpt-image-2", prompt=PROMPT)  # no fault left
    sim.reset()
    assert sim.requests() == [] and sim.faults("fal") == []


# -- fault plans -----------------------------------------------------------------------------------

def test_times_counts_matching_requests_then_service_resumes(sim: Simulator) -> None:
    fault = sim.fail("openai", status=429, retry_after=0.05, times=2)
    assert isinstance(fault, Fault) and fault.remaining == 2 and fault.stage == "generate"
    r = oai(max_retries=2).images.generate(model="gpt-image-2", prompt=PROMPT)
    assert r.data and fault.exhausted and fault.remaining == 0
    reqs = sim.requests("openai")
    assert [q.fault for q in reqs] == ["status", "status", None]
    assert [q.header("x-stainless-retry-count") for q in reqs] == ["0", "1", "2"]


def test_at_picks_the_stage_and_other_stages_are_untouched(sim: Simulator) -> None:
    fault = sim.fail("fal", status=429, at="result")  # fal-client retries a 429 by itself
    out = fal().subscribe("fal-ai/flux/dev", {"prompt": PROMPT}, interval=0.01)
    assert out["images"]
    faulty = [r for r in sim.requests("fal") if r.fault]
    assert [r.stage for r in faulty] == ["result"] and fault.exhausted
    assert len(sim.requests("fal", stage="result")) == 2
    assert len(sim.requests("fal", stage="submit")) == 1


def test_fault_arguments_are_checked() -> None:
    s = simulate()  # not started: fail() only books faults
    with pytest.raises(ValueError, match="unknown fault kind"):
        s.fail("fal", kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not apply to openai"):
        s.fail("openai", kind="slow")
    with pytest.raises(ValueError, match="cannot happen"):
        s.fail("replicate", kind="expired", at="create")
    with pytest.raises(ValueError, match="unknown fal stage"):
        s.fail("fal", status=500, at="nowhere")
    with pytest.raises(ValueError, match="times"):
        s.fail("fal", status=500, times=0)
    with pytest.raises(ValueError, match="unknown provider"):
        s.requests("midjourney")  # type: ignore[arg-type]
    assert set(FAULT_KINDS) >= {"status", "gateway_html", "slow", "failed", "canceled", "expired",
                                "content", "malformed", "wrong_shape", "drop", "hang",
                                "unknown_status"}


def test_status_fault_sends_the_provider_error_body_and_retry_after(sim: Simulator) -> None:
    sim.fail("openai", status=429, retry_after=3)
    with pytest.raises(openai.RateLimitError) as ei:
        oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    assert ei.value.response.headers["retry-after"] == "3"
    assert ei.value.code == "rate_limit_exceeded"
    sim.fail("replicate", status=429, retry_after=4)
    with pytest.raises(ReplicateError) as re_:
        rep_run()
    assert re_.value.status == 429
    assert sim.requests("replicate")[-1].fault == "status"


def test_gateway_html_is_an_nginx_page_without_a_fal_request_id(sim: Simulator) -> None:
    sim.fail("fal", kind="gateway_html", status=504)
    resp = httpx.post(f"{sim.url('fal')}/fal-ai/flux/dev", json={"prompt": PROMPT},
                      headers={"Authorization": "Key k"},
                      verify=ssl.create_default_context(cafile=sim.ca_file))
    assert resp.status_code == 504 and "nginx" in resp.text
    assert resp.headers["content-type"] == "text/html" and "x-fal-request-id" not in resp.headers
    sim.fail("openai", kind="gateway_html")
    with pytest.raises(openai.InternalServerError) as ei:
        oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    assert ei.value.status_code == 502 and "nginx" in str(ei.value.body)


def test_slow_keeps_a_fal_job_queued_with_a_falling_position(sim: Simulator) -> None:
    sim.fail("fal", kind="slow", times=3)
    seen: list[int] = []

    def on_update(status: Any) -> None:
        if isinstance(status, fal_client.Queued):
            seen.append(status.position)
    fal().subscribe("fal-ai/flux/dev", {"prompt": PROMPT}, interval=0.01,
                    on_queue_update=on_update)
    assert seen[:3] == [3, 2, 1] and seen[-1] == 0


def test_slow_keeps_a_replicate_prediction_starting(sim: Simulator) -> None:
    sim.fail("replicate", kind="slow", times=3)
    pred = rep().models.predictions.create(model="black-forest-labs/flux-schnell",
                                           input={"prompt": PROMPT})
    statuses = []
    while pred.status not in ("succeeded", "failed", "canceled"):
        pred.reload()
        statuses.append(pred.status)
    assert statuses[:4] == ["starting", "starting", "starting", "processing"]


def test_failed_and_content_faults_surface_as_the_clients_do(sim: Simulator) -> None:
    sim.fail("fal", kind="failed", status=500)
    with pytest.raises(fal_client.client.FalClientHTTPError) as fe:
        fal().subscribe("fal-ai/flux/dev", {"prompt": PROMPT}, interval=0.01)
    assert fe.value.status_code == 500
    sim.fail("fal", kind="content")
    with pytest.raises(fal_client.client.FalClientHTTPError) as fc:
        fal().subscribe("fal-ai/flux/dev", {"prompt": PROMPT}, interval=0.01)
    assert fc.value.status_code == 422
    assert fc.value.message[0]["type"] == "content_policy_violation"

    sim.fail("replicate", kind="failed")
    with pytest.raises(ModelError, match="simulated model error"):
        rep_run()
    sim.fail("replicate", kind="content")
    with pytest.raises(ModelError, match="NSFW"):
        rep_run()

    sim.fail("openai", kind="content")
    with pytest.raises(openai.BadRequestError) as oe:
        oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    assert oe.value.code == "moderation_blocked"


def test_canceled_and_unknown_status_on_replicate(sim: Simulator) -> None:
    sim.fail("replicate", kind="canceled")
    assert rep_run() is None  # replicate.run returns the (null) output of a canceled prediction
    sim.fail("replicate", kind="unknown_status")
    with pytest.raises(Exception, match="aborted"):  # pydantic.v1 ValidationError in the client
        rep_run()


def test_unknown_status_on_fal_breaks_the_client(sim: Simulator) -> None:
    sim.fail("fal", kind="unknown_status")
    with pytest.raises(ValueError, match="(?i)unknown status"):
        fal().subscribe("fal-ai/flux/dev", {"prompt": PROMPT}, interval=0.01)


def test_expired_output_url_is_a_404(sim: Simulator) -> None:
    sim.fail("replicate", kind="expired")
    (url,) = rep_run()
    assert fetch(url).status_code == 404
    assert fetch(url).status_code == 200  # times=1: the next download works


def test_malformed_and_wrong_shape_replies(sim: Simulator) -> None:
    sim.fail("openai", kind="malformed")
    with pytest.raises(json.JSONDecodeError):
        oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    sim.fail("openai", kind="wrong_shape")
    r = oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    assert r.data[0].b64_json is None  # the client parses wrong shapes silently
    sim.fail("fal", kind="wrong_shape", at="submit")
    with pytest.raises(KeyError):
        fal().submit("fal-ai/flux/dev", {"prompt": PROMPT})
    sim.fail("replicate", kind="malformed", at="create")
    with pytest.raises(json.JSONDecodeError):
        rep_run()


def test_drop_closes_the_connection_without_an_answer(sim: Simulator) -> None:
    sim.fail("openai", kind="drop")
    with pytest.raises(openai.APIConnectionError):
        oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    sim.fail("replicate", kind="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        rep_run()


def test_hang_stays_silent_for_its_delay_then_serves(sim: Simulator) -> None:
    sim.fail("openai", kind="hang", delay=10)
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oai(timeout=0.3).images.generate(model="gpt-image-2", prompt=PROMPT)
    assert time.monotonic() - t0 < 2
    sim.fail("openai", kind="hang", delay=0.2)
    t0 = time.monotonic()
    assert oai().images.generate(model="gpt-image-2", prompt=PROMPT).data
    assert time.monotonic() - t0 >= 0.2


def test_stopping_the_block_wakes_hung_requests() -> None:
    with simulate() as s:
        s.fail("openai", kind="hang", delay=30)
        t0 = time.monotonic()
        with pytest.raises(openai.APIConnectionError):
            threading.Timer(0.3, s.stop).start()
            oai(timeout=10).images.generate(model="gpt-image-2", prompt=PROMPT)
        assert time.monotonic() - t0 < 5


# -- service time ----------------------------------------------------------------------------------

def test_service_time_delays_each_provider(sim: Simulator) -> None:
    assert sim.service_time("openai") == 0.0
    sim.service_time("openai", 0.2)
    t0 = time.monotonic()
    oai().images.generate(model="gpt-image-2", prompt=PROMPT)
    assert time.monotonic() - t0 >= 0.2
    sim.service_time("replicate", 0.2)
    t0 = time.monotonic()
    pred = rep().models.predictions.create(model="black-forest-labs/flux-schnell",
                                           input={"prompt": PROMPT}, wait=True)
    assert pred.status == "succeeded" and time.monotonic() - t0 >= 0.2  # Prefer: wait held it
    assert sim.requests("replicate")[-1].header("prefer") == "wait"
    sim.service_time("fal", 0.2)
    t0 = time.monotonic()
    fal().subscribe("fal-ai/flux/dev", {"prompt": PROMPT}, interval=0.01)
    assert time.monotonic() - t0 >= 0.2
    with pytest.raises(ValueError):
        sim.service_time("fal", -1)


def test_service_time_per_provider_at_construction() -> None:
    s = simulate(service_time={"fal": 0.3})
    assert (s.service_time("fal"), s.service_time("openai")) == (0.3, 0.0)


# -- TLS and the environment -----------------------------------------------------------------------

def test_fal_listens_over_tls_signed_by_the_simulator_ca(sim: Simulator) -> None:
    host, port = sim.fal_queue_host.split(":")
    trusted = ssl.create_default_context(cafile=sim.ca_file)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            trusted.wrap_socket(raw, server_hostname=host) as tls:
        assert tls.version() and tls.getpeercert()
    untrusted = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA loaded
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        untrusted.wrap_socket(raw, server_hostname=host)
    assert os.environ["SSL_CERT_FILE"] == sim.ca_file
    assert sim.url("fal").startswith("https://127.0.0.1:")
    assert sim.url("openai").startswith("http://127.0.0.1:") and sim.url("openai").endswith("/v1")


def test_environment_and_client_modules_are_restored_after_the_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "outer-key")
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)
    before = {k: os.environ.get(k) for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FAL_KEY",
                                             "FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST", "SSL_CERT_FILE",
                                             "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL",
                                             "REPLICATE_POLL_INTERVAL", "NO_PROXY")}
    fal_mod = sys.modules["fal_client.client"]
    queue_before = fal_mod.QUEUE_URL_FORMAT
    with simulate() as s:
        assert os.environ["OPENAI_API_KEY"] == "sim-openai-key"
        assert os.environ["REPLICATE_BASE_URL"] == s.replicate_base_url
        assert fal_mod.QUEUE_URL_FORMAT == f"https://{s.fal_queue_host}/"
        assert set(s.env) >= {"OPENAI_BASE_URL", "FAL_KEY", "SSL_CERT_FILE", "NO_PROXY"}
        ca_file, port = s.ca_file, int(s.fal_queue_host.split(":")[1])
        assert os.path.exists(ca_file)
    assert {k: os.environ.get(k) for k in before} == before
    assert fal_mod.QUEUE_URL_FORMAT == queue_before
    assert not os.path.exists(ca_file)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_a_simulator_cannot_start_twice_and_async_with_works() -> None:
    async def go() -> None:
        async with simulate() as s:
            client = openai.AsyncOpenAI(max_retries=0)
            r = await client.images.generate(model="gpt-image-2", prompt=PROMPT)
            assert r.data and s.requests("openai")[0].header("x-stainless-async") != "false"
            await client.close()
            with pytest.raises(RuntimeError, match="already running"):
                s.start()
    asyncio.run(go())


# -- lost creates: the request is processed, the answer is lost -----------------------------------

def _post(url: str, body: dict[str, Any], auth: str, timeout: float = 5.0) -> httpx.Response:
    with httpx.Client(timeout=timeout) as c:
        return c.post(url, json=body, headers={"Authorization": auth})


OPENAI_BODY = {"model": "gpt-image-2", "prompt": PROMPT, "size": "1024x1024"}


@pytest.mark.parametrize("kind", ["processed_drop", "truncated"])
def test_openai_processed_faults_bill_the_generation_but_lose_the_answer(sim: Simulator,
                                                                          kind: str) -> None:
    sim.fail("openai", kind=kind)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _post(sim.openai_base_url + "/images/generations", OPENAI_BODY, "Bearer sim-openai-key")
    assert sim.billed("openai") == 1
    # normal service resumes, and bills again
    ok = _post(sim.openai_base_url + "/images/generations", OPENAI_BODY, "Bearer sim-openai-key")
    assert ok.status_code == 200 and sim.billed("openai") == 2


def test_plain_drop_closes_before_anything_is_billed(sim: Simulator) -> None:
    sim.fail("fal", kind="drop")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _post(sim.url("fal") + "/fal-ai/flux/dev", {"prompt": PROMPT}, "Key sim-fal-key")
    assert sim.billed("fal") == 0


def test_processed_hang_creates_the_job_then_stays_silent(sim: Simulator) -> None:
    sim.fail("replicate", kind="processed_hang", delay=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        _post(sim.replicate_base_url + "/v1/models/black-forest-labs/flux-schnell/predictions",
              {"input": {"prompt": PROMPT}}, "Bearer sim-replicate-token", timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert sim.billed("replicate") == 1
    # the prediction exists and can be found by listing
    with httpx.Client(timeout=5) as c:
        listed = c.get(sim.replicate_base_url + "/v1/predictions",
                       headers={"Authorization": "Bearer sim-replicate-token"}).json()
    newest = listed["results"][0]
    assert newest["input"] == {"prompt": PROMPT} and newest["status"] == "starting"


def test_truncated_status_poll_still_advances_the_job(sim: Simulator) -> None:
    handle = fal().submit("fal-ai/flux/dev", {"prompt": PROMPT})
    sim.fail("fal", kind="truncated", at="status", times=5)
    auth = {"Authorization": "Key sim-fal-key"}
    with httpx.Client(timeout=5) as c:
        for _ in range(5):
            with pytest.raises(httpx.RemoteProtocolError):
                c.get(handle.status_url, headers=auth)
        assert c.get(handle.status_url, headers=auth).json()["status"] == "COMPLETED"
    assert sim.billed("fal") == 1


def test_processed_faults_refuse_unknown_stages() -> None:
    with simulate() as s, pytest.raises(ValueError, match="stage"):
        s.fail("fal", kind="processed_drop", at="poll")
