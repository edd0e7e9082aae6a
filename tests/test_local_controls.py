"""Local backend: every control's effect on tiny real pipelines, and equality with hand-written diffusers."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before the fixtures module, so CI without torch skips

from _local_fixtures import PIPELINE, hand_written, offer_view, pixels, plan, tiny_folder

from modelglass.plan import Planned
from modelglass.providers.local import LocalBackend
from modelglass.result import FateKind


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend(device="cpu", paths={k: tiny_folder(k) for k in PIPELINE})


@pytest.fixture(scope="module")
def views() -> dict:
    return {k: offer_view(k, k) for k in PIPELINE}


def run(backend: LocalBackend, view, **request) -> list[np.ndarray]:
    out = backend.generate(plan(view, backend, **request), timeout_s=120)
    return [pixels(img) for img in out.images]


@pytest.mark.parametrize("kind", ["sd", "sdxl", "flux-dev"])
def test_same_seed_is_bit_identical_and_another_seed_differs(backend, views, kind):
    a = run(backend, views[kind], seed=7)
    b = run(backend, views[kind], seed=7)
    c = run(backend, views[kind], seed=8)
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_negative_prompt_changes_sd_output_when_cfg_is_on(backend, views, kind):
    plain = run(backend, views[kind], cfg=6)
    negative = run(backend, views[kind], cfg=6, negative_prompt="blurry, low quality")
    assert not np.array_equal(plain[0], negative[0])


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_negative_prompt_at_cfg_one_is_dropped_and_would_change_nothing(backend, views, kind):
    call = plan(views[kind], backend, cfg=1, negative_prompt="blurry")
    assert call.fate("negative_prompt").kind is FateKind.dropped
    assert "negative_prompt" not in call.payload
    # The drop is faithful: diffusers itself ignores the negative prompt when CFG is off.
    planned = Planned(prompt="a photo of a fox", width=64, height=64, n=1, guidance=1.0,
                      steps=2, seeds=(0,))
    forced = backend.build_payload(planned, views[kind])[0] | {"negative_prompt": "blurry"}
    call.payload = forced
    with_negative = pixels(backend.generate(call, timeout_s=60).images[0])
    assert np.array_equal(with_negative, run(backend, views[kind], cfg=1)[0])


def test_flux_dev_guidance_is_the_embedded_scale_and_changes_output(backend, views):
    call = plan(views["flux-dev"], backend, cfg=7.0)
    assert call.fate("cfg").kind is FateKind.mapped
    assert call.payload["guidance_scale"] == 7.0
    assert not np.array_equal(run(backend, views["flux-dev"], cfg=3.5)[0],
                              run(backend, views["flux-dev"], cfg=7.0)[0])


def test_flux_negative_prompt_runs_true_cfg_and_costs_double(backend, views):
    call = plan(views["flux-dev"], backend, negative_prompt="blurry")
    assert call.payload["true_cfg_scale"] > 1 and call.payload["negative_prompt"] == "blurry"
    assert "twice" in call.fate("negative_prompt").reason
    base = plan(views["flux-dev"], backend)
    assert call.estimate.usd == pytest.approx(2 * base.estimate.usd)
    assert not np.array_equal(run(backend, views["flux-dev"])[0],
                              run(backend, views["flux-dev"], negative_prompt="blurry")[0])


def test_flux_schnell_takes_no_guidance_and_no_negative_prompt(backend, views):
    call = plan(views["flux-schnell"], backend, cfg=5, negative_prompt="blurry")
    assert call.fate("cfg").kind is FateKind.dropped
    assert call.fate("negative_prompt").kind is FateKind.dropped
    assert not {"guidance_scale", "negative_prompt", "true_cfg_scale"} & set(call.payload)
    assert np.array_equal(pixels(backend.generate(call, timeout_s=60).images[0]),
                          run(backend, views["flux-schnell"])[0])


@pytest.mark.parametrize("kind", ["sd", "flux-dev"])
def test_steps_change_output(backend, views, kind):
    assert not np.array_equal(run(backend, views[kind], steps=2)[0],
                              run(backend, views[kind], steps=3)[0])


@pytest.mark.parametrize("kind", ["sd", "flux-dev"])
def test_size_sets_width_and_height(backend, views, kind):
    out = backend.generate(plan(views[kind], backend, size="128x64"), timeout_s=60)
    img = out.images[0]
    assert (img.width, img.height) == (128, 64)
    assert pixels(img).shape == (64, 128, 3)


def test_n_images_get_consecutive_seeds_each_reproducible_alone(backend, views):
    out = backend.generate(plan(views["sd"], backend, seed=10, n=2, cfg=6), timeout_s=60)
    assert [i.seed for i in out.images] == [10, 11]
    alone = run(backend, views["sd"], seed=11, cfg=6)[0]
    # One batch vs one image: the same noise; kernels may differ in the last bit.
    assert np.abs(pixels(out.images[1]).astype(int) - alone.astype(int)).max() <= 1


def test_payload_is_json_and_uses_diffusers_argument_names(backend, views):
    call = plan(views["sdxl"], backend, cfg=6, steps=3, negative_prompt="blurry", seed=5, n=2,
                sampler="dpmpp_2m_karras")
    assert json.loads(json.dumps(call.payload)) == call.payload
    assert call.payload == {
        "model": "modelglass-tests/tiny-sdxl", "pipeline": "StableDiffusionXLPipeline",
        "prompt": "a photo of a fox", "negative_prompt": "blurry", "guidance_scale": 6.0,
        "num_inference_steps": 3, "width": 64, "height": 64, "num_images_per_prompt": 2,
        "seeds": [5, 6], "sampler": "dpmpp_2m_karras", "scheduler": "DPMSolverMultistepScheduler",
        "scheduler_config": {"use_karras_sigmas": True}}


def test_result_records_the_stack_a_seed_reproduces_on(backend, views):
    import diffusers
    import transformers

    out = backend.generate(plan(views["sd"], backend), timeout_s=60)
    assert out.extra["device"] == "cpu" and out.extra["dtype"] == "float32"
    assert out.extra["torch"] == torch.__version__
    assert out.extra["diffusers"] == diffusers.__version__
    assert out.extra["transformers"] == transformers.__version__
    assert out.extra["scheduler"] == "DDIMScheduler"
    assert out.extra["gpu_seconds"] > 0
    assert out.cost_usd == pytest.approx(out.timings["gpu_s"] * 2.0 / 3600)
    assert out.images[0].data[:8] == b"\x89PNG\r\n\x1a\n"


# -- pixel for pixel: the backend is exactly the diffusers call a user would write ---------------
def test_sd_equals_hand_written_diffusers_pixel_for_pixel(backend, views):
    out = backend.generate(plan(views["sd"], backend, seed=3, cfg=6, steps=3,
                                negative_prompt="blurry"), timeout_s=60)
    ref = hand_written(tiny_folder("sd"), "sd", prompt="a photo of a fox",
                       negative_prompt="blurry", guidance_scale=6.0, num_inference_steps=3,
                       width=64, height=64, generator=torch.Generator("cpu").manual_seed(3))
    assert np.array_equal(pixels(out.images[0]), np.asarray(ref[0].convert("RGB")))


def test_sdxl_with_karras_sampler_equals_hand_written_diffusers(backend, views):
    import diffusers

    out = backend.generate(plan(views["sdxl"], backend, seed=4, cfg=5, steps=3, n=2,
                                sampler="dpmpp_2m_karras"), timeout_s=60)
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(str(tiny_folder("sdxl")),
                                                                local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config,
                                                                        use_karras_sigmas=True)
    ref = pipe(prompt="a photo of a fox", guidance_scale=5.0, num_inference_steps=3, width=64,
               height=64, num_images_per_prompt=2,
               generator=[torch.Generator("cpu").manual_seed(s) for s in (4, 5)]).images
    for got, want in zip(out.images, ref, strict=True):
        assert np.array_equal(pixels(got), np.asarray(want.convert("RGB")))


def test_flux_dev_with_true_cfg_equals_hand_written_diffusers(backend, views):
    out = backend.generate(plan(views["flux-dev"], backend, seed=9, cfg=4.0,
                                negative_prompt="blurry"), timeout_s=60)
    ref = hand_written(tiny_folder("flux-dev"), "flux-dev", prompt="a photo of a fox",
                       negative_prompt="blurry", true_cfg_scale=4.0, guidance_scale=4.0,
                       num_inference_steps=2, width=64, height=64, max_sequence_length=48,
                       generator=torch.Generator("cpu").manual_seed(9))
    assert np.array_equal(pixels(out.images[0]), np.asarray(ref[0].convert("RGB")))


def test_unknown_pipeline_option_is_refused_before_running(backend, views):
    from modelglass.errors import InvalidRequest

    call = plan(views["sd"], backend, provider_options={"local": {"not_an_argument": 1}})
    with pytest.raises(InvalidRequest, match="not_an_argument"):
        backend.generate(call, timeout_s=60)
    call = plan(views["sd"], backend, provider_options={"local": {"guidance_rescale": 0.5}})
    assert call.payload["guidance_rescale"] == 0.5
    backend.generate(call, timeout_s=60)
