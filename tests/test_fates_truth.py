"""Fates that tell the truth: a prompt cut by the text encoder is approximated, with the cut; a
seed that was not sent is not written as the seed; print PNGs carry their DPI; print_size without
dpi uses the quality axis's DPI."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import modelglass as mg
from modelglass._encoders import count_tokens, prompt_cut, window_for
from modelglass._provenance import read_metadata
from modelglass.result import FateKind
from modelglass.testing import simulate

HOSTED = ["openai", "fal", "replicate"]


@pytest.fixture(scope="module")
def client() -> mg.Client:
    return mg.Client(available=HOSTED)


def test_a_long_prompt_on_flux_schnell_is_approximated_with_the_cut(client: mg.Client) -> None:
    prompt = "a cozy reading nook with morning light " * 1100  # ≈ 42k characters
    fate = client.plan(prompt, model="flux-schnell", provider="fal").fate("prompt")
    assert fate is not None and fate.kind is FateKind.approximated
    assert "T5" in fate.reason and "256" in fate.reason
    assert fate.delta and "tokens ignored" in fate.delta
    kept = int(fate.applied.split()[2])
    assert 0 < kept < len(prompt)


def test_the_cut_depends_on_the_family(client: mg.Client) -> None:
    prompt = " ".join(f"word{i}" for i in range(120))  # ≈ 120 tokens
    assert client.plan(prompt, model="sdxl", provider="fal").fate("prompt").kind \
        is FateKind.approximated                         # CLIP: 75
    assert client.plan(prompt, model="flux-dev", provider="fal").fate("prompt").kind \
        is FateKind.honored                              # T5: 512
    assert client.plan(prompt, model="gpt-image-2", provider="openai").fate("prompt").kind \
        is FateKind.honored                              # no window claimed
    assert client.plan("a fox", model="sdxl", provider="fal").fate("prompt").kind \
        is FateKind.honored


def test_strict_refuses_a_prompt_the_encoder_cuts(client: mg.Client) -> None:
    prompt = "a fox " * 200
    with pytest.raises(mg.InvalidRequest):
        client.plan(prompt, model="sdxl", provider="fal", strict=True)
    client.plan("a fox", model="sdxl", provider="fal", strict=True)  # short: fine
    # The routing memo must not hand a short prompt's strict verdict to a long one.
    client.route("a fox", quality="draft", strict=True)
    decision = client.route(prompt, quality="draft", strict=True)
    assert all(c.model not in ("sdxl", "sd-1.5") for c in decision.ranked)


def test_token_count_is_conservative_for_long_words() -> None:
    assert count_tokens("a fox") == 2
    assert count_tokens("photorealistically") >= 3
    window = window_for("sd-1.5", "stable-diffusion")
    assert window is not None and window.tokens == 75
    assert not prompt_cut("short prompt", window).cut


def test_a_seed_that_was_not_sent_is_not_written_as_the_seed(tmp_path: Path) -> None:
    with simulate(), mg.Client(available=HOSTED) as c:
        r = c.generate("a fox", model="gpt-image-2", provider="fal", seed=11, quality="hero")
    assert r.plan is not None and r.plan.planned.seeds is None
    assert r.plan.fate("seed").kind is FateKind.dropped
    path = r.images[0].save(tmp_path / "fox.png")
    meta = read_metadata(path)
    assert meta["seed"] is None
    with Image.open(path) as im:
        params = im.info["parameters"]
    assert "Seed:" not in params


def test_a_seed_that_was_sent_is_written(tmp_path: Path) -> None:
    with simulate(), mg.Client(available=HOSTED) as c:
        r = c.generate("a fox", model="flux-schnell", provider="fal", seed=11, quality="draft")
    path = r.images[0].save(tmp_path / "fox.png")
    assert read_metadata(path)["seed"] == 11
    with Image.open(path) as im:
        assert "Seed: 11" in im.info["parameters"]


def test_print_pngs_carry_their_dpi(tmp_path: Path) -> None:
    with simulate(), mg.Client(available=HOSTED) as c:
        r = c.generate("a fox", quality="print", print_size="4x5in", dpi=240)
    path = r.images[0].save(tmp_path / "print.png")
    with Image.open(path) as im:
        assert [round(v) for v in im.info["dpi"]] == [240, 240]
    assert read_metadata(path)["dpi"] == 240
    jpg = r.images[0].save(tmp_path / "print.jpg")
    with Image.open(jpg) as im:
        assert [round(v) for v in im.info["dpi"]] == [240, 240]


def test_print_size_without_dpi_uses_the_axis_dpi(client: mg.Client) -> None:
    cat = mg.Catalog.default()
    draft_dpi = cat.quality("draft").dpi
    call = client.plan("a fox", quality="draft", print_size="8x10in")
    size = call.fate("size")
    assert f"at {draft_dpi} dpi" in str(size.requested)
    assert (call.planned.width, call.planned.height) == (8 * draft_dpi, 10 * draft_dpi) \
        or size.kind is not FateKind.honored


def test_a_print_quality_png_carries_the_axis_dpi_and_a_hero_png_none(tmp_path: Path) -> None:
    with simulate(), mg.Client(available=HOSTED) as c:
        printed = c.generate("a fox", quality="print")
        hero = c.generate("a fox", quality="hero")
    with Image.open(printed.images[0].save(tmp_path / "p.png")) as im:
        assert [round(v) for v in im.info["dpi"]] == [mg.Catalog.default().quality("print").dpi] * 2
    assert read_metadata(hero.images[0].save(tmp_path / "h.png"))["dpi"] is None
