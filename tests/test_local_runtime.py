"""Local backend at run time: weights discovery, memory-bounded cache, concurrency, safety, cost."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before the fixtures module, so CI without torch skips

from _local_fixtures import PIPELINE, offer_view, pixels, plan, tiny_folder

from modelglass.errors import ContentRejected, GenerationTimeout, ProviderUnavailable
from modelglass.providers.local import LocalBackend, inspect_folder


@pytest.fixture(scope="module")
def views() -> dict:
    return {k: offer_view(k, k) for k in PIPELINE}


# -- where weights come from ----------------------------------------------------------------------
def test_an_offer_without_local_weights_is_not_eligible_and_says_how_to_fetch(views):
    backend = LocalBackend(device="cpu")
    avail = backend.offer_availability(views["sdxl"])
    assert not avail.ok
    assert "huggingface-cli download modelglass-tests/tiny-sdxl" in avail.reason
    assert "LocalBackend(paths=" in avail.reason
    with pytest.raises(ProviderUnavailable, match="huggingface-cli download"):
        backend.generate(plan(views["sdxl"]), timeout_s=10)


def test_a_folder_that_is_not_a_diffusers_folder_is_not_eligible(views, tmp_path):
    backend = LocalBackend(device="cpu", paths={"sd": tmp_path})
    avail = backend.offer_availability(views["sd"])
    assert not avail.ok and "model_index.json" in avail.reason


def test_weights_in_the_hugging_face_cache_are_found_and_loaded(views, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    repo = tmp_path / "models--modelglass-tests--tiny-sd"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    shutil.copytree(tiny_folder("sd"), repo / "snapshots" / "abc123")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    backend = LocalBackend(device="cpu")
    avail = backend.offer_availability(views["sd"])
    assert avail.ok and "Hugging Face cache" in avail.reason
    assert backend.generate(plan(views["sd"]), timeout_s=60).images


def test_availability_names_the_missing_piece(monkeypatch):
    assert LocalBackend(device="cpu").availability().ok
    if not torch.cuda.is_available():
        reason = LocalBackend(device="cuda").availability().reason
        assert "CUDA" in reason
        auto = LocalBackend().availability()
        assert not auto.ok and "device='cpu'" in auto.reason
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "diffusers" else real(name, *a))
    reason = LocalBackend(device="cpu").availability().reason
    assert "pip install 'modelglass[local]'" in reason and "torch" in reason


def test_importing_the_backend_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, modelglass, modelglass.providers.local as l; l.LocalBackend(); "
            "print('torch' in sys.modules or 'diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the pipeline cache -------------------------------------------------------------------------
def test_least_recently_used_pipeline_is_evicted_when_memory_runs_out(views):
    sizes = {k: inspect_folder(tiny_folder(k)).memory_bytes("float32") for k in PIPELINE}
    # The estimate counts the saved weights; a loaded pipeline also holds buffers that are not
    # saved (CLIP's position ids), which the cache measures after loading. Leave room for them.
    budget = sizes["sd"] + sizes["flux-dev"] + 64 * 1024  # room for sd + one flux, not two
    assert sizes["flux-dev"] + sizes["flux-schnell"] > budget
    backend = LocalBackend(device="cpu", memory_budget_bytes=budget,
                           paths={k: tiny_folder(k) for k in PIPELINE})
    backend.generate(plan(views["sd"]), timeout_s=60)
    backend.generate(plan(views["flux-dev"]), timeout_s=60)
    backend.generate(plan(views["sd"]), timeout_s=60)  # sd is now the most recently used
    assert [k.split(":")[0] for k in backend.loaded()] == ["flux-dev", "sd"]
    backend.generate(plan(views["flux-schnell"]), timeout_s=60)
    assert [k.split(":")[0] for k in backend.loaded()] == ["sd", "flux-schnell"]


def test_ready_pipelines_are_used_as_given_and_never_evicted(views, tmp_path):
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(tiny_folder("sd")),
                                                             local_files_only=True)
    backend = LocalBackend(device="cpu", pipelines={"sd": pipe}, memory_budget_bytes=1)
    assert backend.offer_availability(views["sd"]).ok
    assert backend.pipeline(views["sd"]) is pipe
    backend.generate(plan(views["sd"]), timeout_s=60)
    assert backend.loaded() == ["pipeline:sd"]


# -- concurrency --------------------------------------------------------------------------------
def test_concurrent_async_calls_on_one_pipeline_match_sequential_calls(views):
    backend = LocalBackend(device="cpu", paths={"sd": tiny_folder("sd")})
    calls = [plan(views["sd"], seed=s, cfg=6, prompt=f"a fox, take {s}") for s in range(4)]
    sequential = [pixels(backend.generate(c, timeout_s=60).images[0]) for c in calls]

    async def together():
        return await asyncio.gather(*(backend.agenerate(c, timeout_s=60) for c in calls))

    outs = asyncio.run(together())
    for got, want in zip(outs, sequential, strict=True):
        assert np.array_equal(pixels(got.images[0]), want)
        assert got.extra["batch_images"] == 1  # the default path never merges


def test_a_deadline_stops_the_pipeline_between_steps(views):
    backend = LocalBackend(device="cpu", paths={"sd": tiny_folder("sd")})
    with pytest.raises(GenerationTimeout, match="stopped early"):
        backend.generate(plan(views["sd"], steps=20), timeout_s=1e-6)


def test_a_busy_pipeline_past_the_deadline_raises_timeout_without_running(views):
    backend = LocalBackend(device="cpu", paths={"sd": tiny_folder("sd")})
    entry = backend._entry(views["sd"])
    with entry.lock, pytest.raises(GenerationTimeout, match="waiting"):  # someone else holds it
        backend.generate(plan(views["sd"]), timeout_s=0.05)
    assert entry.queue == []


# -- safety checker -----------------------------------------------------------------------------
def _sd_with_checker(tmp_path, *, flag: bool):
    from modelglass.testing.tiny_pipes import build_tiny, safety_checker

    checker, extractor = safety_checker(flag=flag)
    pipe = build_tiny("sd", tmp_path, safety_checker=checker, feature_extractor=extractor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_nsfw_flags_from_the_safety_checker_raise_content_rejected(views, tmp_path):
    pipe = _sd_with_checker(tmp_path, flag=True)
    backend = LocalBackend(device="cpu", pipelines={"sd": pipe})
    with pytest.raises(ContentRejected, match="safety checker") as info:
        backend.generate(plan(views["sd"], seed=5, n=2), timeout_s=60)
    assert info.value.provider == "local"
    assert "[0, 1]" in str(info.value) and "[5, 6]" in str(info.value)  # which images, which seeds
    # What the user would otherwise have got: black images, silently.
    out = pipe("a photo of a fox", num_inference_steps=2, width=64, height=64)
    assert out.nsfw_content_detected == [True] and not np.asarray(out.images[0]).any()


def test_images_the_safety_checker_passes_are_returned(views, tmp_path):
    backend = LocalBackend(device="cpu", pipelines={"sd": _sd_with_checker(tmp_path, flag=False)})
    out = backend.generate(plan(views["sd"]), timeout_s=60)
    assert pixels(out.images[0]).any()


# -- cost ---------------------------------------------------------------------------------------
def test_cost_is_measured_seconds_times_the_gpu_hour_and_feeds_later_estimates(views):
    backend = LocalBackend(device="cpu", gpu_hour_usd=3.6, paths={"sd": tiny_folder("sd")})
    assert backend.cost_estimate(views["sd"], 64, 64, 1, 2) is None  # nothing measured yet
    first = backend.generate(plan(views["sd"]), timeout_s=60)
    assert first.cost_usd == pytest.approx(first.timings["gpu_s"] / 1000)
    assert backend.cost_estimate(views["sd"], 64, 64, 1, 2) is None  # the warm-up call is not used
    second = backend.generate(plan(views["sd"]), timeout_s=60)
    est = backend.cost_estimate(views["sd"], 64, 64, 1, 2)
    assert est.usd == pytest.approx(second.cost_usd, rel=1e-2)
    bigger = backend.cost_estimate(views["sd"], 128, 128, 2, 4)
    assert bigger.usd == pytest.approx(est.usd * 4 * 2 * 2, rel=1e-2)  # megapixels × n × steps
    call = plan(views["sd"], backend)  # the planner asks the backend first
    assert "measured here" in call.estimate.basis
