"""Cost estimates for every price kind, and the side-by-side comparison table."""

from __future__ import annotations

import pytest

from modelglass.catalog import Catalog, Price, estimate_price
from modelglass.errors import CatalogError


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.default()


# --- per image ------------------------------------------------------------------------------------

def test_per_image_multiplies_by_n(cat: Catalog) -> None:
    est = cat.offer("flux-schnell@replicate").estimate_cost(1024, 1024, 3)
    assert est.usd == pytest.approx(0.009)
    assert est.per_image_usd == pytest.approx(0.003)
    assert not est.approximate


def test_per_image_ignores_size(cat: Catalog) -> None:
    offer = cat.offer("flux-1.1-pro-ultra@fal")
    assert offer.estimate_cost(2048, 2048).usd == offer.estimate_cost(1024, 1024).usd == 0.06


# --- per megapixel ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("w", "h", "billed_mp"), [
    (1024, 1024, 1),    # a 1024² image is one billed megapixel, not 1.05
    (1024, 768, 1),     # rounded up
    (1536, 1024, 2),    # 1.5 MP → 2
    (2048, 2048, 4),
    (512, 512, 1),      # never below one
])
def test_per_megapixel_rounds_up_to_whole_megapixels(cat: Catalog, w: int, h: int,
                                                     billed_mp: int) -> None:
    est = cat.offer("flux-dev@fal").estimate_cost(w, h, 2)
    assert est.per_image_usd == pytest.approx(0.025 * billed_mp)
    assert est.usd == pytest.approx(0.05 * billed_mp)


def test_catalog_estimate_cost_on_fal_flux_dev(cat: Catalog) -> None:
    assert cat.estimate_cost("flux-dev", provider="fal", width=1024, height=1024, n=1) == \
        pytest.approx(0.025)


def test_per_megapixel_without_rounding_is_proportional() -> None:
    price = Price(kind="per_megapixel", usd_per_megapixel=0.02)
    assert estimate_price(price, 1536, 1024).usd == pytest.approx(0.03)


# --- per tier -------------------------------------------------------------------------------------

def test_per_tier_exact_size_uses_the_quality_axis_tier(cat: Catalog) -> None:
    offer = cat.offer("gpt-image-1.5@openai")
    hero = offer.estimate_cost(1536, 1024, quality="hero")
    assert (hero.usd, hero.tier, hero.approximate) == (0.05, "medium", False)
    draft = offer.estimate_cost(1024, 1024, 4, quality="draft")
    assert (draft.usd, draft.tier) == (pytest.approx(0.036), "low")
    assert offer.estimate_cost(1024, 1536, quality="print").usd == 0.20


def test_per_tier_explicit_tier_wins(cat: Catalog) -> None:
    est = cat.offer("gpt-image-1@openai").estimate_cost(1024, 1024, quality="draft", tier="high")
    assert (est.usd, est.tier) == (0.167, "high")


def test_per_tier_without_quality_uses_the_default_tier(cat: Catalog) -> None:
    assert cat.offer("gpt-image-1-mini@openai").estimate_cost(1024, 1024).tier == "medium"
    assert cat.offer("dall-e-3@openai").estimate_cost(1792, 1024, quality="hero").usd == 0.12


def test_per_tier_unlisted_size_is_interpolated_and_flagged(cat: Catalog) -> None:
    est = cat.offer("gpt-image-2@openai").estimate_cost(1536, 1024, quality="hero")
    assert est.approximate
    assert est.usd == pytest.approx(0.07 * 1.5)
    assert "scaled by area" in est.basis
    big = cat.offer("gpt-image-2@openai").estimate_cost(3840, 2160, quality="print")
    assert big.usd == pytest.approx(0.19 * 3840 * 2160 / 1024**2)


# --- GPU seconds (local) --------------------------------------------------------------------------

def test_gpu_seconds_at_the_reference_point(cat: Catalog) -> None:
    est = cat.offer("sdxl@local").estimate_cost(1024, 1024, steps=50)
    assert est.usd == pytest.approx(6.5 * 2.0 / 3600)
    assert not est.approximate


def test_gpu_seconds_scale_with_steps_and_megapixels(cat: Catalog) -> None:
    offer = cat.offer("sdxl@local")
    base = offer.estimate_cost(1024, 1024, steps=50).usd
    assert base is not None
    half = offer.estimate_cost(1024, 1024, steps=25)
    assert half.usd == pytest.approx(base / 2) and half.approximate
    assert offer.estimate_cost(2048, 2048, steps=50).usd == pytest.approx(base * 4)
    assert offer.estimate_cost(1024, 1024, 3, steps=50).usd == pytest.approx(base * 3)


def test_gpu_seconds_default_steps_come_from_the_offer_controls(cat: Catalog) -> None:
    # FLUX.1 [dev] local was measured at 50 steps; its default is 28.
    est = cat.offer("flux-dev@local").estimate_cost(1024, 1024)
    assert est.usd == pytest.approx(23.0 * 28 / 50 * 2.0 / 3600)


def test_gpu_seconds_use_the_configured_gpu_hour_price(cat: Catalog) -> None:
    est = cat.offer("sdxl@local").estimate_cost(1024, 1024, steps=50, gpu_hour_usd=4.0)
    assert est.usd == pytest.approx(6.5 * 4.0 / 3600)


# --- unknown is never free ------------------------------------------------------------------------

def test_unknown_price_estimates_none_not_zero(cat: Catalog) -> None:
    est = cat.offer("flux-pro@fal").estimate_cost(1024, 1024)
    assert est.usd is None and est.per_image_usd is None and not est.known
    assert cat.estimate_cost("flux-pro") is None
    assert cat.estimate_cost("sd-3.5-large", provider="local") is None


def test_catalog_estimate_is_the_cheapest_known_offer(cat: Catalog) -> None:
    # fal $0.025, Replicate $0.025, local 23 s × 28/50 steps at $2/GPU-hour.
    assert cat.estimate_cost("flux-dev") == pytest.approx(23.0 * 28 / 50 * 2.0 / 3600)
    # sd-3.5-large: local is unknown, fal is known → fal.
    assert cat.estimate_cost("sd-3.5-large") == pytest.approx(0.065)


def test_estimate_on_a_provider_without_that_model_is_an_error(cat: Catalog) -> None:
    with pytest.raises(CatalogError, match="no offer on provider 'openai'"):
        cat.estimate_cost("sdxl", provider="openai")


# --- comparison -----------------------------------------------------------------------------------

def test_compare_rows_show_axes_controls_and_prices(cat: Catalog) -> None:
    table = cat.compare(["flux-schnell", "gpt-image-2", "sdxl"])
    assert table.columns == ["flux-schnell", "gpt-image-2", "sdxl"]
    schnell, gpt2, sdxl = table.rows
    assert schnell["name"] == "FLUX.1 [schnell]"
    assert schnell["speed"] == "8.2" and schnell["photorealism"] == "unknown"
    assert gpt2["prompt_adherence"] == "9.5*"          # an estimated prior is starred
    assert sdxl["prompt_adherence"] == "3.9"
    assert schnell["steps"] == "1-4" and gpt2["steps"] == "n/a"
    assert schnell["negative prompt"] == "true-cfg-extra" and sdxl["negative prompt"] == "native"
    assert gpt2["guidance"] == "none" and sdxl["guidance"] == "true-cfg"
    assert sdxl["commercial use"] == "yes"
    assert schnell["cheapest 1024²"] == "$0.0012 (local)"    # 2.1 GPU-s at $2/GPU-hour
    assert gpt2["cheapest 1024²"] == "$0.0700 (openai)"     # default_tier: medium
    assert gpt2["max MP"] == pytest.approx(8.2944)


def test_compare_on_a_quality_axis_adds_weighted_quality(cat: Catalog) -> None:
    rows = cat.compare(["sdxl", "hidream-i1"], axis="hero").rows
    assert rows[1]["hero quality"] > rows[0]["hero quality"]


def test_compare_unknown_model_is_an_error(cat: Catalog) -> None:
    with pytest.raises(CatalogError, match="unknown model 'flux-schnel'"):
        cat.compare(["flux-schnel"])
