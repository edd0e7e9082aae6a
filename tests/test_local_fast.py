"""The opt-in fast path: fused QKV, channels_last, compile, prompt-embedding cache, batching.

Off by default (the default image is the hand-written diffusers image, bit for bit: see
test_local_controls). On, images may drift in the low bits; docs/local.md states the bound these
tests hold it to: at most 1/255 per 8-bit channel on CPU in float32.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # before the fixtures module, so CI without torch skips

from _local_fixtures import PIPELINE, offer_view, pixels, plan, tiny_folder

from modelglass.providers.local import LocalBackend

DRIFT = 1  # most a channel may move, in 8-bit levels


@pytest.fixture(scope="module")
def views() -> dict:
    return {k: offer_view(k, k) for k in PIPELINE}


@pytest.fixture(scope="module")
def default() -> LocalBackend:
    return LocalBackend(device="cpu", paths={k: tiny_folder(k) for k in PIPELINE})


@pytest.fixture(scope="module")
def fast() -> LocalBackend:
    return LocalBackend(device="cpu", paths={k: tiny_folder(k) for k in PIPELINE}, fast=True,
                        compile="none")


def _drift(a, b) -> int:
    return int(np.abs(pixels(a).astype(int) - pixels(b).astype(int)).max())


def test_the_fast_path_is_off_unless_asked(default, views):
    out = default.generate(plan(views["sd"], default), timeout_s=60)
    assert out.extra["fast"] == [] and "prompt_embeddings" not in out.extra


@pytest.mark.parametrize("kind", ["sd", "sdxl", "flux-dev"])
def test_fast_path_drift_stays_within_the_documented_bound(default, fast, views, kind):
    request = {"seed": 3, "negative_prompt": "blurry", "cfg": 3.5 if kind == "flux-dev" else 6}
    want = default.generate(plan(views[kind], default, **request), timeout_s=60)
    got = fast.generate(plan(views[kind], fast, **request), timeout_s=60)
    assert "fuse_qkv:denoiser" in got.extra["fast"] and "channels_last:vae" in got.extra["fast"]
    assert _drift(got.images[0], want.images[0]) <= DRIFT


def test_prompt_embeddings_are_encoded_once_and_reused(fast, views):
    first = fast.generate(plan(views["sdxl"], fast, prompt="a lighthouse", cfg=6), timeout_s=60)
    again = fast.generate(plan(views["sdxl"], fast, prompt="a lighthouse", cfg=6, seed=9),
                          timeout_s=60)
    assert (first.extra["prompt_embeddings"], again.extra["prompt_embeddings"]) == ("miss", "hit")


def test_requests_for_one_pipeline_are_merged_into_one_call_each_with_its_own_seed(
        default, fast, views):
    calls = [plan(views["sd"], fast, prompt=f"a fox, take {s}", seed=s, cfg=6) for s in range(3)]
    outs = fast.generate_batch(calls)
    assert [o.extra["batch_images"] for o in outs] == [3, 3, 3]
    assert [o.images[0].seed for o in outs] == [0, 1, 2]
    for s, out in enumerate(outs):
        alone = default.generate(plan(views["sd"], default, prompt=f"a fox, take {s}", seed=s,
                                      cfg=6), timeout_s=60)
        assert _drift(out.images[0], alone.images[0]) <= DRIFT
        assert out.cost_usd == pytest.approx(outs[0].cost_usd)  # the call's time, shared


def test_requests_that_differ_in_steps_are_not_merged(fast, views):
    outs = fast.generate_batch([plan(views["sd"], fast, steps=2), plan(views["sd"], fast, steps=3)])
    assert [o.extra["batch_images"] for o in outs] == [1, 1]


def test_regional_compile_plumbing(views):
    """Inductor needs a GPU to pay off; the eager backend checks the graph capture on CPU."""
    backend = LocalBackend(device="cpu", paths={"flux-dev": tiny_folder("flux-dev")}, fast=True,
                           compile="regional", compile_options={"backend": "eager"})
    out = backend.generate(plan(views["flux-dev"], backend, seed=1), timeout_s=120)
    assert "compile:regional" in out.extra["fast"]
    assert out.extra["stack"]["fast"] == out.extra["fast"]
