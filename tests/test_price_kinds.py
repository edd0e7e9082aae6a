"""Every price kind against the figures providers publish, plus the reservation upper bound.

Published figures (issue 7, as of 2026-11-29):
- gpt-image-2 (OpenAI): $30/1M image-output tokens, $5/1M text input, $8/1M image input; per image
  at 1024x1024 low $0.006 / medium $0.053 / high $0.211, at 1536x1024 $0.005 / $0.041 / $0.165.
- FLUX.2 [pro] on fal: $0.03 first MP + $0.015 per extra MP (2048² = $0.075); [max]: $0.07 + $0.03.
- Gemini 3 Pro Image: $0.134 per 1K/2K image, $0.24 per 4K image (multiplier 0.24 / 0.134).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modelglass as mg
from modelglass.catalog import Price, cost_from_usage, estimate_price
from modelglass.catalog._price import prompt_tokens, resolution_bucket
from modelglass.errors import InvalidRequest

# Image-output tokens per image, from the published per-image dollars ÷ $30 per 1M.
GPT_IMAGE_2 = Price.model_validate({
    "kind": "per_token",
    "usd_per_1m_image_output_tokens": 30, "usd_per_1m_text_input_tokens": 5,
    "usd_per_1m_image_input_tokens": 8,
    "output_tokens": {"low": {"1024x1024": 200, "1536x1024": 167, "1024x1536": 167},
                      "medium": {"1024x1024": 1767, "1536x1024": 1367, "1024x1536": 1367},
                      "high": {"1024x1024": 7033, "1536x1024": 5500, "1024x1536": 5500}},
    "tier_for_quality": {"draft": "low", "thumbnail": "low", "hero": "medium", "print": "high"},
    "default_tier": "medium",
})
FLUX2_PRO = Price(kind="first_megapixel", usd=0.03, usd_per_extra_megapixel=0.015)
FLUX2_MAX = Price(kind="first_megapixel", usd=0.07, usd_per_extra_megapixel=0.03)
GEMINI_PRO = Price.model_validate({"kind": "per_image_resolution", "usd": 0.134,
                                   "resolution_multipliers": {"1K": 1.0, "2K": 1.0,
                                                              "4K": 0.24 / 0.134}})


# --- token-priced (gpt-image-2) -------------------------------------------------------------------

@pytest.mark.parametrize(("size", "tier", "usd"), [
    ("1024x1024", "low", 0.006), ("1024x1024", "medium", 0.053), ("1024x1024", "high", 0.211),
    ("1536x1024", "low", 0.005), ("1536x1024", "medium", 0.041), ("1536x1024", "high", 0.165),
])
def test_gpt_image_2_matches_openai_published_per_image_figures(size: str, tier: str,
                                                                usd: float) -> None:
    w, h = (int(p) for p in size.split("x"))
    est = estimate_price(GPT_IMAGE_2, w, h, tier=tier)
    assert est.usd == pytest.approx(usd, abs=0.0005)
    assert est.tier == tier and not est.approximate


def test_gpt_image_2_cost_does_not_scale_with_area() -> None:
    square = estimate_price(GPT_IMAGE_2, 1024, 1024, tier="high").usd
    wide = estimate_price(GPT_IMAGE_2, 1536, 1024, tier="high").usd
    assert square is not None and wide is not None and wide < square


def test_token_estimate_adds_prompt_text_tokens_once_per_call() -> None:
    prompt = "a lighthouse at dusk, " * 100  # 2,200 characters → 550 expected tokens
    est = estimate_price(GPT_IMAGE_2, 1024, 1024, 2, tier="low", prompt=prompt, images_per_call=10)
    assert est.prompt_tokens == 550
    assert est.usd == pytest.approx((2 * 200 * 30 + 550 * 5) / 1e6)
    split = estimate_price(GPT_IMAGE_2, 1024, 1024, 2, tier="low", prompt=prompt, images_per_call=1)
    assert split.usd == pytest.approx((2 * 200 * 30 + 2 * 550 * 5) / 1e6)


def test_token_tier_comes_from_the_quality_axis_then_the_default() -> None:
    assert estimate_price(GPT_IMAGE_2, 1024, 1024, quality="print").tier == "high"
    assert estimate_price(GPT_IMAGE_2, 1024, 1024).tier == "medium"
    assert estimate_price(GPT_IMAGE_2, 1024, 1024, quality="draft", tier="high").tier == "high"


def test_token_size_missing_from_the_table_uses_the_nearest_count_and_is_flagged() -> None:
    est = estimate_price(GPT_IMAGE_2, 2048, 2048, tier="medium")
    assert est.approximate and "not in the token table" in est.basis
    assert est.usd == pytest.approx(1367 * 30 / 1e6)  # nearest by area: 1536x1024
    # The bound scales the nearest count by area: a larger size may need more tokens.
    assert est.max_usd == pytest.approx(math.ceil(1367 * 2048 * 2048 / (1536 * 1024)) * 30 / 1e6)


def test_token_max_usd_bounds_the_prompt_at_one_token_per_byte() -> None:
    prompt = "x" * 32_000
    est = estimate_price(GPT_IMAGE_2, 1024, 1024, 4, tier="low", prompt=prompt, images_per_call=4)
    assert est.max_usd == pytest.approx((4 * 200 * 30 + (32_000 + 16) * 5) / 1e6)
    assert est.usd is not None and est.max_usd is not None and est.max_usd > est.usd


def test_token_max_usd_counts_the_prompt_per_image_when_chunking_is_unknown() -> None:
    est = estimate_price(GPT_IMAGE_2, 1024, 1024, 3, tier="low", prompt="abc")
    assert est.max_usd == pytest.approx((3 * 200 * 30 + 3 * (3 + 16) * 5) / 1e6)


def test_token_max_usd_takes_the_dearest_tier_when_the_tier_is_auto() -> None:
    est = estimate_price(GPT_IMAGE_2, 1024, 1024, tier="auto")
    assert est.tier == "medium"
    assert est.max_usd == pytest.approx(0.211, abs=0.0005)


def test_usage_cost_uses_every_token_kind() -> None:
    usage = {"output_tokens": 7033, "input_tokens": 120,
             "input_tokens_details": {"text_tokens": 100, "image_tokens": 20}}
    assert cost_from_usage(GPT_IMAGE_2, usage) == pytest.approx((7033 * 30 + 100 * 5 + 20 * 8) / 1e6)


@pytest.mark.parametrize("bad", [-5, float("nan"), float("inf"), 1.5, "12", True])
def test_usage_cost_refuses_malformed_counts(bad: object) -> None:
    assert cost_from_usage(GPT_IMAGE_2, {"output_tokens": bad}) is None
    assert cost_from_usage(GPT_IMAGE_2, {"output_tokens": 10, "input_tokens": bad}) is None


def test_usage_cost_is_none_for_other_price_kinds_or_no_output_count() -> None:
    assert cost_from_usage(FLUX2_PRO, {"output_tokens": 10}) is None
    assert cost_from_usage(GPT_IMAGE_2, {"input_tokens": 10}) is None
    assert cost_from_usage(GPT_IMAGE_2, None) is None


def test_prompt_token_bound_is_utf8_bytes() -> None:
    assert prompt_tokens("日本語") == (3, 9 + 16)
    assert prompt_tokens(None) == (0, 0)


@pytest.mark.parametrize(("text", "expected"), [
    ("a red bicycle", 4),                  # English: 4 characters a token
    ("一辆红色的自行车", 8),                 # Chinese: one a character
    ("赤い自転車", 5), ("빨간 자전거", 6),    # Japanese, Korean (the space is Latin: 1/4)
    ("красный велосипед", 9),              # Cyrillic: half one a character
    ("🚲🚲", 4),                            # emoji: outside the BMP
])
def test_prompt_tokens_are_counted_by_script(text: str, expected: int) -> None:
    assert prompt_tokens(text)[0] == expected
    assert prompt_tokens(text)[1] >= expected  # the bound (UTF-8 bytes) holds in every script


def test_a_long_chinese_prompt_on_gpt_image_2_is_quoted_within_10_percent_of_the_bill() -> None:
    """Issue 17: a 4,200-character Chinese prompt on gpt-image-2 (low, 1024²) was billed $0.0275
    (about 4,300 text tokens at $5/1M + 200 image tokens at $30/1M) and quoted $0.0114 when
    prompts were counted at 4 characters a token."""
    cat = mg.Catalog.default()
    prompt = ("一只红色的狐狸在雪地里奔跑，背景是高山和松树。" * 200)[:4200]
    est = cat.estimate_cost("gpt-image-2", provider="openai", width=1024, height=1024,
                            quality="draft", prompt=prompt)
    billed = (4300 * 5 + 200 * 30) / 1e6
    assert billed == pytest.approx(0.0275)
    assert est.usd is not None and abs(est.usd / billed - 1) < 0.10, est
    assert est.max_usd is not None and est.max_usd >= billed


# --- first megapixel + extra megapixels (FLUX.2 on fal) -------------------------------------------

@pytest.mark.parametrize(("price", "w", "h", "usd"), [
    (FLUX2_PRO, 1024, 1024, 0.03),
    (FLUX2_PRO, 2048, 2048, 0.075),      # 0.03 + 3 × 0.015 (the catalog used to say 0.12)
    (FLUX2_PRO, 1536, 1024, 0.045),      # 0.5 extra MP rounds up to 1
    (FLUX2_PRO, 512, 512, 0.03),         # never below the first megapixel
    (FLUX2_MAX, 1024, 1024, 0.07),
    (FLUX2_MAX, 2048, 2048, 0.16),       # 0.07 + 3 × 0.03
])
def test_first_megapixel_plus_extra_matches_fal(price: Price, w: int, h: int, usd: float) -> None:
    est = estimate_price(price, w, h, 2)
    assert est.per_image_usd == pytest.approx(usd)
    assert est.usd == pytest.approx(2 * usd) and est.max_usd == pytest.approx(2 * usd)


def test_first_megapixel_extra_can_be_proportional() -> None:
    price = Price(kind="first_megapixel", usd=0.03, usd_per_extra_megapixel=0.015,
                  round_up_megapixels=False)
    assert estimate_price(price, 1536, 1024).usd == pytest.approx(0.0375)


# --- per image with resolution multipliers (Gemini) -----------------------------------------------

@pytest.mark.parametrize(("w", "h", "bucket", "usd"), [
    (1024, 1024, "1K", 0.134), (1376, 768, "1K", 0.134), (1584, 672, "1K", 0.134),
    (2048, 2048, "2K", 0.134), (2752, 1536, "2K", 0.134),
    (4096, 4096, "4K", 0.24), (5504, 3072, "4K", 0.24),
])
def test_gemini_resolution_bucket_from_the_long_side(w: int, h: int, bucket: str,
                                                     usd: float) -> None:
    assert resolution_bucket(GEMINI_PRO, w, h) == bucket
    assert estimate_price(GEMINI_PRO, w, h).usd == pytest.approx(usd)


def test_resolution_larger_than_every_bucket_is_unknown_not_cheap() -> None:
    est = estimate_price(GEMINI_PRO, 8192, 8192)
    assert est.usd is None and est.max_usd is None and "larger than" in est.basis


def test_resolution_long_side_can_be_given_explicitly() -> None:
    price = Price.model_validate({"kind": "per_image_resolution", "usd": 0.039,
                                  "resolution_multipliers": {"small": 1, "big": 2},
                                  "resolution_long_side": {"small": 1024, "big": 2048}})
    assert estimate_price(price, 1200, 800).usd == pytest.approx(0.078)


def test_resolution_bucket_names_are_checked() -> None:
    with pytest.raises(ValueError, match="must look like 1K"):
        Price.model_validate({"kind": "per_image_resolution", "usd": 0.1,
                              "resolution_multipliers": {"huge": 2}})


# --- per megapixel, per image, per tier, GPU seconds ----------------------------------------------

def test_per_megapixel_rounded_up() -> None:
    price = Price(kind="per_megapixel", usd_per_megapixel=0.025, round_up_megapixels=True)
    assert estimate_price(price, 1536, 1024).usd == pytest.approx(0.05)
    assert estimate_price(price, 512, 512).usd == pytest.approx(0.025)


def test_per_tier_max_usd_is_the_dearest_tier_only_when_the_tier_is_not_fixed() -> None:
    price = Price.model_validate({"kind": "per_tier", "default_tier": "low",
                                  "tiers": {"low": {"1024x1024": 0.011},
                                            "high": {"1024x1024": 0.167}}})
    fixed = estimate_price(price, 1024, 1024, 2, tier="low")
    assert fixed.max_usd == pytest.approx(0.022)
    auto = estimate_price(price, 1024, 1024, 2, tier="auto")
    assert auto.usd == pytest.approx(0.022) and auto.max_usd == pytest.approx(0.334)


def test_gpu_seconds_bound_leaves_room_for_a_slow_run() -> None:
    price = Price(kind="gpu_seconds", seconds=36.0, at_megapixels=1.048576, at_steps=50)
    est = estimate_price(price, 1024, 1024, steps=50, gpu_hour_usd=2.0)
    assert est.usd == pytest.approx(0.02) and est.max_usd == pytest.approx(0.04)


def test_unknown_price_is_never_free() -> None:
    est = estimate_price(Price(kind="unknown", note="not published"), 1024, 1024)
    assert (est.usd, est.max_usd, est.known) == (None, None, False)
    assert "not published" in est.basis


@pytest.mark.parametrize(("w", "h", "n", "field"), [(0, 1024, 1, "width"), (1024, -1, 1, "height"),
                                                    (1024, 1024, -3, "n"), (1024, 1024, 0, "n")])
def test_estimate_refuses_sizes_and_counts_below_one(w: int, h: int, n: int, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        estimate_price(FLUX2_PRO, w, h, n)
    assert info.value.field == field


# --- the bound is a bound -------------------------------------------------------------------------

PRICES = [GPT_IMAGE_2, FLUX2_PRO, FLUX2_MAX, GEMINI_PRO,
          Price(kind="per_megapixel", usd_per_megapixel=0.02),
          Price(kind="gpu_seconds", seconds=6.5, at_steps=50)]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PRICES), st.integers(64, 4096), st.integers(64, 4096), st.integers(1, 10),
       st.sampled_from([None, "low", "medium", "high", "auto"]), st.text(max_size=300),
       st.sampled_from([None, 1, 4, 10]))
def test_max_usd_is_never_below_the_estimate(price: Price, w: int, h: int, n: int,
                                             tier: str | None, prompt: str,
                                             per_call: int | None) -> None:
    est = estimate_price(price, w, h, n, tier=tier, prompt=prompt, images_per_call=per_call)
    if est.usd is None:
        assert est.max_usd is None
    else:
        assert est.max_usd is not None and math.isfinite(est.max_usd)
        assert 0 <= est.usd <= est.max_usd + 1e-12


# --- the shipped catalog prices as published ------------------------------------------------------

@pytest.mark.parametrize(("offer", "w", "h", "tier", "usd"), [
    ("gpt-image-2@openai", 1024, 1024, "low", 0.006),
    ("gpt-image-2@openai", 1024, 1024, "medium", 0.053),
    ("gpt-image-2@openai", 1024, 1024, "high", 0.211),
    ("gpt-image-2@openai", 1536, 1024, "low", 0.005),
    ("gpt-image-2@openai", 1536, 1024, "medium", 0.041),
    ("gpt-image-2@openai", 1536, 1024, "high", 0.165),
    ("flux-2-pro@fal", 1024, 1024, None, 0.03),
    ("flux-2-pro@fal", 2048, 2048, None, 0.075),
    ("flux-2-max@fal", 1024, 1024, None, 0.07),
    ("flux-2-max@fal", 2048, 2048, None, 0.16),
])
def test_shipped_catalog_prices_match_the_published_figures(offer: str, w: int, h: int,
                                                            tier: str | None, usd: float) -> None:
    from modelglass.catalog import Catalog

    est = Catalog.default().offer(offer).estimate_cost(w, h, tier=tier, prompt="")
    assert est.usd == pytest.approx(usd, abs=0.0005)


def test_token_price_without_a_text_rate_is_unknown_when_a_prompt_is_billed() -> None:
    price = Price.model_validate({"kind": "per_token", "usd_per_1m_image_output_tokens": 30,
                                  "output_tokens": {"low": {"1024x1024": 200}}})
    est = estimate_price(price, 1024, 1024, prompt="a fox")
    assert (est.usd, est.max_usd) == (None, None) and "text-input token price" in est.basis
    assert estimate_price(price, 1024, 1024).usd == pytest.approx(0.006)  # no prompt to bill


def test_per_tier_bound_never_assumes_an_unlisted_smaller_size_is_cheaper() -> None:
    price = Price.model_validate({"kind": "per_tier", "tiers": {"low": {"1024x1024": 0.02}}})
    est = estimate_price(price, 512, 512, tier="low")
    assert est.usd == pytest.approx(0.005) and est.approximate
    assert est.max_usd == pytest.approx(0.02)


@pytest.mark.parametrize("gpu_hour", [float("inf"), float("nan"), -2.0])
def test_an_estimate_is_never_infinite_nan_or_negative(gpu_hour: float) -> None:
    huge = estimate_price(Price(kind="per_image", usd=1e308), 1024, 1024, 10)
    assert (huge.usd, huge.max_usd) == (None, None) and "finite" in huge.basis
    gpu = estimate_price(Price(kind="gpu_seconds", seconds=5.0), 1024, 1024, gpu_hour_usd=gpu_hour)
    assert gpu.usd is None and gpu.max_usd is None


def test_every_documented_price_example_validates() -> None:
    import re
    from pathlib import Path

    import yaml

    from modelglass.catalog._schema import PriceKind

    doc = Price.__doc__ or ""
    seen = {Price.model_validate(yaml.safe_load(b)).kind
            for b in re.findall(r"price: (\{.*?\})\n(?=\n|\s*$|\s*#)", doc + "\n\n", re.DOTALL)}
    md = (Path(__file__).parent.parent / "docs" / "catalog.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", md, re.DOTALL):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "price" in data:
            seen.add(Price.model_validate(data["price"]).kind)
    assert seen == set(PriceKind)


def test_text_the_model_writes_is_billed_at_its_own_rate_where_known() -> None:
    """fal bills gpt-image-2's text output at $10 per 1M (S12); without that rate the text
    tokens are priced as image output ($30), never below the bill."""
    cat = mg.Catalog.default()
    fal, openai = (cat.offer(k).offer.price for k in ("gpt-image-2@fal", "gpt-image-2@openai"))
    assert fal.usd_per_1m_text_output_tokens == 10 and openai.usd_per_1m_text_output_tokens is None
    usage = {"output_tokens": 300, "input_tokens": 10,
             "output_tokens_details": {"image_tokens": 200, "text_tokens": 100}}
    assert cost_from_usage(fal, usage) == pytest.approx((200 * 30 + 100 * 10 + 10 * 5) / 1e6)
    assert cost_from_usage(openai, usage) == pytest.approx((300 * 30 + 10 * 5) / 1e6)
    bad = {**usage, "output_tokens_details": {"text_tokens": 400}}  # more text than output
    assert cost_from_usage(fal, bad) is None
