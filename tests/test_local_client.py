"""Local generation through the client: same call as hosted providers, same pixels as diffusers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before the fixtures module, so CI without torch skips

from _local_fixtures import hand_written, pixels, tiny_catalog, tiny_folder

import modelglass as mg

KINDS = ("sd", "sdxl", "flux-dev")


@pytest.fixture(scope="module")
def catalog():
    return tiny_catalog(*KINDS)


def _client(catalog, cls=mg.Client, **paths):
    local = mg.LocalBackend(device="cpu", paths=paths or {k: tiny_folder(k) for k in KINDS})
    return cls(local=local, catalog=catalog)


def test_client_generate_on_local_equals_hand_written_diffusers(catalog):
    result = _client(catalog).generate("a photo of a fox", model="sd", provider="local", seed=3,
                                       quality="thumbnail", size="64x64", cfg=6, steps=3,
                                       negative_prompt="blurry")
    assert (result.model, result.provider) == ("sd", "local")
    ref = hand_written(tiny_folder("sd"), "sd", prompt="a photo of a fox", negative_prompt="blurry",
                       guidance_scale=6.0, num_inference_steps=3, width=64, height=64,
                       generator=torch.Generator("cpu").manual_seed(3))
    assert np.array_equal(pixels(result.images[0]), np.asarray(ref[0].convert("RGB")))
    assert result.images[0].seed == 3
    assert result.cost_usd is not None and result.cost_usd > 0  # measured GPU-seconds × $/h
    versions = result.images[0].metadata["versions"]
    assert versions["device"] == "cpu" and versions["torch"] == torch.__version__


def test_async_client_flux_dev_equals_hand_written_diffusers(catalog):
    async def go():
        return await _client(catalog, mg.AsyncClient).generate(
            "a photo of a fox", model="flux-dev", provider="local", seed=3, size="64x64", cfg=4,
            quality="thumbnail")

    result = asyncio.run(go())
    ref = hand_written(tiny_folder("flux-dev"), "flux-dev", prompt="a photo of a fox",
                       guidance_scale=4.0, num_inference_steps=2, width=64, height=64,
                       max_sequence_length=48, generator=torch.Generator("cpu").manual_seed(3))
    assert np.array_equal(pixels(result.images[0]), np.asarray(ref[0].convert("RGB")))


def test_routing_skips_local_offers_whose_weights_are_absent(catalog):
    client = _client(catalog, sd=tiny_folder("sd"))
    decision = client.route(mg.ImageRequest(prompt="a fox", quality="thumbnail", provider="local"))
    assert decision.choice is not None and decision.choice.offer.model_id == "sd"
    why = " ".join(str(r) for r in decision.rejected)
    assert "huggingface-cli download modelglass-tests/tiny-sdxl" in why
