"""Cost estimates for every price kind, and the side-by-side comparison table."""

from __future__ import annotations

import pytest

from modelglass.catalog import Catalog, CostEstimate, Price, estimate_price
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


def test_per_tier_unlisted_size_is_interpolated_and_flagged() -> None:
    # (gpt-image-2 used to be priced this way; it is token-priced now: test_price_kinds.py.)
    price = Price.model_validate({"kind": "per_tier", "tiers": {"medium": {"1024x1024": 0.07}}})
    est = estimate_price(price, 1536, 1024, quality="hero")
    assert est.approximate
    assert est.usd == pytest.approx(0.07 * 1.5)
    assert "scaled by area" in est.basis


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


# --- unknown is never free; Catalog.estimate_cost has the same shape as OfferView's ------------

def _two_offer_catalog() -> Catalog:
    from _catalogs import AS_OF, catalog, model

    offers = [
        {"provider": "fal", "endpoint": "fal-ai/x", "as_of": AS_OF, "source": "T",
         "price": {"kind": "per_megapixel", "usd_per_megapixel": 0.025, "round_up_megapixels": True}},
        {"provider": "replicate", "endpoint": "x/y", "as_of": AS_OF, "source": "T",
         "price": {"kind": "unknown", "note": "not published"}},
        {"provider": "local", "endpoint": "org/x", "as_of": AS_OF, "source": "T",
         "pipeline": "StableDiffusionXLPipeline",
         "price": {"kind": "gpu_seconds", "seconds": 2.0, "at_steps": 30}},
    ]
    unknown_only = [{**offers[1]}, {**offers[2]}]
    return catalog({"x": model(offers=offers), "y": model(offers=unknown_only),
                    "z": model(offers=[offers[2]])})


def test_unknown_price_estimates_none_not_zero() -> None:
    cat = _two_offer_catalog()
    est = cat.offer("x@replicate").estimate_cost(1024, 1024)
    assert est.usd is None and est.per_image_usd is None and not est.known
    whole = cat.estimate_cost("y")
    assert whole.usd is None and "y@replicate: price unknown" in whole.basis


def test_catalog_estimate_is_a_cost_estimate_naming_the_offer() -> None:
    est = _two_offer_catalog().estimate_cost("x", width=1536, height=1024, n=2)
    assert isinstance(est, CostEstimate)
    assert (est.offer, est.usd, est.max_usd) == ("x@fal", pytest.approx(0.1), pytest.approx(0.1))


def test_catalog_estimate_without_a_provider_never_prices_the_local_offer() -> None:
    cat = _two_offer_catalog()
    # The local offer is far cheaper (2 GPU-s) but needs a GPU and weights: hosted wins.
    assert cat.estimate_cost("x").offer == "x@fal"
    only_local = cat.estimate_cost("z")
    assert only_local.usd is None and "provider='local'" in only_local.basis
    local = cat.estimate_cost("z", provider="local")
    assert local.offer == "z@local" and local.usd == pytest.approx(2.0 * 2.0 / 3600)


def test_offer_estimate_splits_n_into_calls_of_max_images_per_call() -> None:
    from _catalogs import AS_OF, catalog, model

    price = {"kind": "per_token", "usd_per_1m_image_output_tokens": 30,
             "usd_per_1m_text_input_tokens": 5, "output_tokens": {"low": {"1024x1024": 200}}}
    cat = catalog({"t": model(offers=[{"provider": "openai", "endpoint": "t", "as_of": AS_OF,
                                       "source": "T", "price": price}])})
    est = cat.offer("t@openai").estimate_cost(1024, 1024, 6, prompt="p" * 400)  # 4 per call
    assert est.usd == pytest.approx((6 * 200 * 30 + 2 * 100 * 5) / 1e6)
    assert est.offer == "t@openai"


def test_estimate_on_a_provider_without_that_model_is_an_error(cat: Catalog) -> None:
    with pytest.raises(CatalogError, match="no offer on provider 'openai'"):
        cat.estimate_cost("sdxl", provider="openai")


# --- comparison -----------------------------------------------------------------------------------

def test_compare_rows_show_axes_controls_and_prices(cat: Catalog) -> None:
    table = cat.compare(["flux-schnell", "gpt-image-2", "sdxl"])
    assert table.columns == ["flux-schnell", "gpt-image-2", "sdxl"]
    schnell, gpt2, sdxl = table.rows
    assert schnell["name"] == "FLUX.1 [schnell]"
    # Formula v3 (calibrated, each with its prior): schnell's 1.2 s reads 8.2 alone, 8.1 with
    # the prior; gpt-image-2 has GenEval/DPG and arena rows, SDXL GenEval/DPG/OneIG/TIIF/arena.
    assert schnell["speed"] == "8.1" and schnell["photorealism"] == "unknown"
    assert gpt2["prompt_adherence"] == "9.5"
    assert sdxl["prompt_adherence"] == "1.2"
    assert schnell["steps"] == "1-4" and gpt2["steps"] == "n/a"
    assert schnell["negative prompt"] == "true-cfg-extra" and sdxl["negative prompt"] == "native"
    assert gpt2["guidance"] == "none" and sdxl["guidance"] == "true-cfg"
    assert sdxl["commercial use"] == "yes"
    assert schnell["cheapest 1024²"] == "$0.0012 (local)"    # 2.1 GPU-s at $2/GPU-hour
    assert gpt2["cheapest 1024²"] == "$0.0530 (openai)"     # medium: 1767 tokens × $30/1M
    assert gpt2["max MP"] == pytest.approx(8.2944)


def test_compare_on_a_quality_axis_adds_weighted_quality(cat: Catalog) -> None:
    rows = cat.compare(["sdxl", "hidream-i1"], axis="hero").rows
    assert rows[1]["hero quality"] > rows[0]["hero quality"]


def test_compare_unknown_model_is_an_error(cat: Catalog) -> None:
    with pytest.raises(CatalogError, match="unknown model 'flux-schnel'"):
        cat.compare(["flux-schnel"])
