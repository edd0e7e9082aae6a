"""Local backend and catalog data: every shipped local offer plans into a real diffusers call;
offers assembled at load time (LoRA, replacement UNet, extra text encoder) are eligible only when
every piece is on this machine; guidance kind "none" and scheduler settings from the catalog."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before the fixtures module, so CI without torch skips

from _local_fixtures import offer_view, pixels, plan, tiny_folder

import modelglass as mg
from modelglass.catalog._schema import Controls
from modelglass.providers.local import LocalBackend
from modelglass.providers.local._run import call_kwargs
from modelglass.result import FateKind


def _shipped_local_offers() -> list:
    return [v for v in mg.Catalog.default().offers() if v.provider == "local"]


@pytest.mark.parametrize("view", _shipped_local_offers(), ids=lambda v: v.key)
def test_every_shipped_local_offer_plans_into_arguments_its_pipeline_takes(view):
    import diffusers

    backend = LocalBackend(device="cpu")
    g = view.controls.guidance
    requests = [{}, {"cfg": g.default if g and g.default else 5, "negative_prompt": "blurry"},
                {"n": 2, "seed": 1}] + [{"sampler": s} for s in view.controls.samplers or []]
    pipeline = getattr(diffusers, view.offer.pipeline)
    for request in requests:
        call = mg.plan_call(mg.ImageRequest(prompt="a fox", **request), view, provider=backend)
        assert json.loads(json.dumps(call.payload)) == call.payload
        call_kwargs(pipeline, call.payload)  # raises on an argument the pipeline does not take


def test_load_time_recipe_and_scheduler_settings_are_not_call_arguments():
    cat = mg.Catalog.default()
    backend = LocalBackend(device="cpu")
    lightning = mg.plan_call(mg.ImageRequest(prompt="a fox"), cat.offer("sdxl-lightning@local"),
                             provider=backend).payload
    assert lightning["load"] == {"base_model": "stabilityai/stable-diffusion-xl-base-1.0",
                                 "unet_weights": "sdxl_lightning_4step_unet.safetensors"}
    assert lightning["scheduler_config"] == {"timestep_spacing": "trailing"}
    assert lightning["guidance_scale"] == 0.0
    lcm = mg.plan_call(mg.ImageRequest(prompt="a fox"), cat.offer("lcm-lora-sdxl@local"),
                       provider=backend).payload
    assert lcm["load"] == {"lora": "latent-consistency/lcm-lora-sdxl"}
    assert lcm["scheduler"] == "LCMScheduler"


@pytest.mark.parametrize("key", ["sdxl-turbo@local", "sd-3.5-large-turbo@local",
                                 "hidream-i1-dev@local"])
def test_guidance_kind_none_turns_cfg_off_instead_of_leaving_the_pipeline_default(key):
    view = mg.Catalog.default().offer(key)
    call = mg.plan_call(mg.ImageRequest(prompt="a fox", cfg=7), view,
                        provider=LocalBackend(device="cpu"))
    assert call.payload["guidance_scale"] == 0.0
    assert call.fate("cfg").kind is FateKind.dropped


def test_qwen_image_cfg_is_true_cfg_scale_with_a_blank_negative_prompt():
    view = mg.Catalog.default().offer("qwen-image@local")
    backend = LocalBackend(device="cpu")
    call = mg.plan_call(mg.ImageRequest(prompt="a fox", cfg=4), view, provider=backend)
    assert call.payload["true_cfg_scale"] == 4.0 and call.payload["negative_prompt"] == " "
    assert "guidance_scale" not in call.payload  # diffusers ignores it for the base model
    call = mg.plan_call(mg.ImageRequest(prompt="a fox", cfg=4, negative_prompt="blurry"), view,
                        provider=backend)
    assert call.payload["negative_prompt"] == "blurry"


def test_turbo_style_offer_equals_hand_written_turbo_call(tmp_path):
    """guidance none + timestep_spacing from the catalog: what the SDXL-Turbo model card writes."""
    import diffusers

    turbo = Controls(negative_prompt="none", guidance={"kind": "none"},
                     steps={"min": 1, "max": 4, "default": 2}, seed=True,
                     samplers=["euler_a", "euler"])
    view = offer_view("turbo", "sdxl", controls=turbo, defaults={"timestep_spacing": "trailing"})
    backend = LocalBackend(device="cpu", paths={"turbo": tiny_folder("sdxl")})
    out = backend.generate(plan(view, backend, seed=2, sampler="euler_a"), timeout_s=60)
    assert out.extra["scheduler"] == "EulerAncestralDiscreteScheduler"
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(str(tiny_folder("sdxl")),
                                                                local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing")
    ref = pipe(prompt="a photo of a fox", num_inference_steps=2, guidance_scale=0.0, width=64,
               height=64, generator=torch.Generator("cpu").manual_seed(2)).images[0]
    assert np.array_equal(pixels(out.images[0]), np.asarray(ref.convert("RGB")))


def test_an_offer_built_on_a_base_model_needs_its_unet_file_and_loads_it(tmp_path):
    from safetensors.torch import save_file

    view = offer_view("lightning", "sdxl", defaults={
        "base_model": "modelglass-tests/sdxl-base", "unet_weights": "unet_4step.safetensors"})
    base = {"modelglass-tests/sdxl-base": tiny_folder("sdxl")}
    backend = LocalBackend(device="cpu", paths=base)
    reason = backend.offer_availability(view).reason
    assert "huggingface-cli download modelglass-tests/tiny-sdxl unet_4step.safetensors" in reason
    # The "distilled" UNet: the base UNet's weights, scaled, in the endpoint repo's folder.
    import diffusers

    unet = diffusers.UNet2DConditionModel.from_pretrained(str(tiny_folder("sdxl")),
                                                          subfolder="unet")
    state = {k: v * 1.5 for k, v in unet.state_dict().items()}
    save_file(state, str(tmp_path / "unet_4step.safetensors"))
    backend = LocalBackend(device="cpu", paths={**base, view.endpoint: tmp_path})
    assert backend.offer_availability(view).ok
    backend.generate(plan(view, backend), timeout_s=60)
    loaded = backend.pipeline(view).unet.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_an_offer_with_a_lora_is_not_eligible_without_it(monkeypatch):
    import importlib.util

    view = offer_view("lcm", "sd", defaults={"lora": "latent-consistency/lcm-lora-tiny"})
    backend = LocalBackend(device="cpu", paths={"lcm": tiny_folder("sd")})
    reason = backend.offer_availability(view).reason
    if importlib.util.find_spec("peft") is None:
        assert "pip install peft" in reason
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: object() if name == "peft" else real(name, *a))
        reason = backend.offer_availability(view).reason
    assert "huggingface-cli download latent-consistency/lcm-lora-tiny" in reason


def test_hidream_needs_its_llama_encoder_present():
    view = mg.Catalog.default().offer("hidream-i1-dev@local")
    backend = LocalBackend(device="cpu", paths={"hidream-i1-dev": tiny_folder("sd")})
    reason = backend.offer_availability(view).reason
    assert "meta-llama/Meta-Llama-3.1-8B-Instruct" in reason and "gated" in reason


def test_the_offers_that_run_here_are_the_local_backends_and_only_they_name_a_pipeline():
    # Code outside providers/ asks `runs_here`, never the provider's name: it must pick exactly
    # the offers the local backend serves, and those are the ones with a diffusers pipeline.
    from modelglass.catalog import LOCAL

    views = list(mg.Catalog.default().offers())
    here = {v.key for v in views if v.runs_here}
    assert LocalBackend.name == LOCAL
    assert here and here == {v.key for v in views if v.provider == LocalBackend.name}
    assert here == {v.key for v in views if v.offer.pipeline}
    assert all(v.runs_here == v.offer.runs_here for v in views)
