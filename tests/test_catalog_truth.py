"""The shipped catalog after the 2026-11-29 refresh (issue 7): retired models are not routed, each
new or corrected price reproduces the figure its source publishes, and the corrected wire limits
are what the planner sends."""

from __future__ import annotations

import datetime as dt

import pytest

import modelglass as mg
from modelglass.catalog import Catalog, PriceKind, Status
from modelglass.errors import InvalidRequest, NoEligibleModel
from modelglass.request import ImageRequest
from modelglass.routing import route

TODAY = dt.date(2026, 11, 29)
REFRESH = dt.date(2026, 11, 29)


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.default()


def usd(cat: Catalog, key: str, w: int = 1024, h: int = 1024, **kw: object) -> float:
    est = cat.offer(key).estimate_cost(w, h, **kw)  # type: ignore[arg-type]
    assert est.usd is not None, key
    return est.usd


# --- retired: Imagen 4 (S69, S70) -----------------------------------------------------------------

IMAGEN = {"imagen-4-fast": "gemini-3.1-flash-image", "imagen-4": "gemini-3.1-flash-image",
          "imagen-4-ultra": "gemini-3-pro-image"}


@pytest.mark.parametrize(("model_id", "replacement"), IMAGEN.items())
def test_imagen_4_is_retired_with_its_google_replacement(cat: Catalog, model_id: str,
                                                         replacement: str) -> None:
    lc = cat.models[model_id].lifecycle
    assert (lc.status, lc.shutdown_on, lc.replacement) == (Status.retired, dt.date(2026, 8, 17),
                                                           replacement)
    assert set((lc.source or "").split(",")) == {"S69", "S70"}
    assert cat.models[replacement].lifecycle.status is Status.active
    assert cat.offers_for(replacement, "fal")


@pytest.mark.parametrize("quality", ["draft", "thumbnail", "hero", "print"])
def test_no_retired_offer_is_ever_ranked(cat: Catalog, quality: str) -> None:
    d = route(ImageRequest(prompt="a fox", quality=quality), cat, today=TODAY)
    retired = {v.key for v in cat.offers() if v.model.lifecycle.status_on(TODAY) is Status.retired}
    assert {"imagen-4@fal", "imagen-4@replicate", "imagen-4-ultra@replicate",
            "imagen-4-fast@replicate"} <= retired
    assert not retired & {c.key for c in d.ranked}
    for key in retired:
        assert key in {r.offer_key for r in d.rejected}, key


@pytest.mark.parametrize(("model_id", "replacement"), IMAGEN.items())
def test_pinning_a_retired_model_fails_naming_the_replacement(cat: Catalog, model_id: str,
                                                              replacement: str) -> None:
    d = route(ImageRequest(prompt="a fox", model=model_id), cat, today=TODAY)
    assert not d.ranked
    with pytest.raises(NoEligibleModel) as info:
        d.require()
    assert replacement in str(info.value)


@pytest.mark.parametrize("key", ["imagen-4@fal", "imagen-4-ultra@replicate"])
def test_planning_a_retired_hosted_offer_sends_nothing(cat: Catalog, key: str) -> None:
    with pytest.raises(InvalidRequest, match="retired on 2026-08-17") as info:
        mg.plan_call(ImageRequest(prompt="a fox"), cat.offer(key))
    assert info.value.field == "model" and "nothing was sent" in str(info.value)


# --- prices as the providers publish them ---------------------------------------------------------

@pytest.mark.parametrize("provider", ["openai", "fal"])
@pytest.mark.parametrize(("quality", "square", "wide"), [("draft", 0.006, 0.005),
                                                         ("hero", 0.053, 0.041),
                                                         ("print", 0.211, 0.165)])
def test_gpt_image_2_per_image_figures_do_not_scale_with_area(cat: Catalog, provider: str,
                                                             quality: str, square: float,
                                                             wide: float) -> None:
    key = f"gpt-image-2@{provider}"
    assert cat.offer(key).offer.price.kind is PriceKind.per_token
    assert usd(cat, key, quality=quality) == pytest.approx(square, abs=5e-4)
    assert usd(cat, key, 1536, 1024, quality=quality) == pytest.approx(wide, abs=5e-4)
    assert usd(cat, key, 1024, 1536, quality=quality) == pytest.approx(wide, abs=5e-4)
    # 1.5× the pixels, yet cheaper: the old per-area scaling would have said 1.5× the price.
    assert usd(cat, key, 1536, 1024, quality=quality) < usd(cat, key, quality=quality)


def test_gpt_image_2_token_rates(cat: Catalog) -> None:
    p = cat.offer("gpt-image-2@openai").offer.price
    assert (p.usd_per_1m_image_output_tokens, p.usd_per_1m_text_input_tokens,
            p.usd_per_1m_image_input_tokens) == (30, 5, 8)
    assert cat.estimate_cost("gpt-image-2", "openai").usd == pytest.approx(0.053, abs=5e-4)


@pytest.mark.parametrize(("key", "w", "h", "expected"), [
    ("flux-2-pro@fal", 1024, 1024, 0.03),     # first MP
    ("flux-2-pro@fal", 2048, 2048, 0.075),    # 0.03 + 3 × 0.015 (issue 7: not 0.12)
    ("flux-2-max@fal", 1024, 1024, 0.07),
    ("flux-2-max@fal", 2048, 2048, 0.16),     # 0.07 + 3 × 0.03
])
def test_flux_2_first_megapixel_plus_extra(cat: Catalog, key: str, w: int, h: int,
                                           expected: float) -> None:
    assert cat.offer(key).offer.price.kind is PriceKind.first_megapixel
    assert usd(cat, key, w, h) == pytest.approx(expected)


@pytest.mark.parametrize(("w", "h", "expected"), [(1024, 1024, 0.08), (1376, 768, 0.08),
                                                  (2048, 2048, 0.12), (4096, 4096, 0.16),
                                                  (512, 512, 0.06)])
def test_nano_banana_2_per_image_with_resolution_multipliers(cat: Catalog, w: int, h: int,
                                                             expected: float) -> None:
    key = "gemini-3.1-flash-image@fal"
    assert cat.offer(key).offer.price.kind is PriceKind.per_image_resolution
    assert usd(cat, key, w, h) == pytest.approx(expected)


@pytest.mark.parametrize(("key", "expected"), [("flux-pro@replicate", 0.055),
                                               ("sd-3.5-medium@fal", 0.02)])
def test_prices_that_were_unknown_are_now_known(cat: Catalog, key: str, expected: float) -> None:
    assert usd(cat, key) == pytest.approx(expected)
    assert usd(cat, key, n=3) == pytest.approx(3 * expected)


@pytest.mark.parametrize(("quality", "square", "wide"), [("draft", 0.005, 0.006),
                                                         ("hero", 0.011, 0.015),
                                                         ("print", 0.036, 0.052)])
def test_gpt_image_1_mini_on_fal_bills_openais_tiers(cat: Catalog, quality: str, square: float,
                                                     wide: float) -> None:
    for key in ("gpt-image-1-mini@fal", "gpt-image-1-mini@openai"):
        assert usd(cat, key, quality=quality) == pytest.approx(square)
        assert usd(cat, key, 1536, 1024, quality=quality) == pytest.approx(wide)


@pytest.mark.parametrize(("key", "expected_1mp", "expected_2048"), [
    ("flux-2-klein@fal", 0.006, 0.024),
    ("flux-2-flash@fal", 0.005, 0.02),
    ("z-image-turbo@fal", 0.005, 0.02),
    ("sd-3.5-medium@fal", 0.02, None),
    ("seedream-4.5@fal", None, 0.04),
])
def test_new_offer_prices(cat: Catalog, key: str, expected_1mp: float | None,
                          expected_2048: float | None) -> None:
    if expected_1mp is not None:
        assert usd(cat, key) == pytest.approx(expected_1mp)
    if expected_2048 is not None:
        assert usd(cat, key, 2048, 2048) == pytest.approx(expected_2048)


def test_recraft_v4_is_four_cents_an_image(cat: Catalog) -> None:
    assert usd(cat, "recraft-v4@fal") == pytest.approx(0.04)
    assert cat.estimate_cost("recraft-v4").usd == pytest.approx(0.04)


def test_nano_banana_pro_price_is_unknown_and_says_why(cat: Catalog) -> None:
    view = cat.offer("gemini-3-pro-image@fal")
    assert view.offer.price.kind is PriceKind.unknown
    assert view.estimate_cost(1024, 1024).usd is None
    assert "not on any stored page" in (view.offer.price.note or "")


def test_every_refreshed_offer_is_dated_and_sourced(cat: Catalog) -> None:
    refreshed = [v for v in cat.offers() if v.offer.as_of == REFRESH]
    assert len(refreshed) >= 15
    for v in refreshed:
        ids = {s.strip() for s in v.offer.source.split(",")}
        assert ids <= set(cat.settings.sources), v.key
        # at least one source checked on the refresh date, or issue 7 itself
        assert any("2026-11-29" in cat.settings.sources[i] for i in ids), v.key


# --- wire limits the providers document ------------------------------------------------------------

def test_gpt_image_2_on_fal_takes_at_most_4_images(cat: Catalog) -> None:
    assert cat.offer("gpt-image-2@fal").controls.max_images_per_call == 4
    assert cat.offer("gpt-image-2@openai").controls.max_images_per_call == 10
    call = mg.plan_call(ImageRequest(prompt="a fox", n=6), cat.offer("gpt-image-2@fal"))
    assert call.chunks == [4, 2]
    assert call.payload["num_images"] == 4


@pytest.mark.parametrize("key", ["ideogram-3@fal-turbo", "ideogram-3@fal-balanced",
                                 "ideogram-3@fal-quality"])
def test_ideogram_3_on_fal_has_a_negative_prompt_and_up_to_8_images(cat: Catalog,
                                                                    key: str) -> None:
    view = cat.offer(key)
    assert view.controls.negative_prompt == "native"
    assert view.controls.max_images_per_call == 8
    call = mg.plan_call(ImageRequest(prompt="a fox", negative_prompt="blurry", n=8), view)
    assert call.payload["negative_prompt"] == "blurry" and call.payload["num_images"] == 8
    assert call.chunks == [8]


def test_qwen_image_on_fal_guidance_0_to_20_steps_2_to_250(cat: Catalog) -> None:
    view = cat.offer("qwen-image@fal")
    g, st = view.controls.guidance, view.controls.steps
    assert g is not None and (g.min, g.max) == (0, 20)
    assert st is not None and (st.min, st.max) == (2, 250)
    one = mg.plan_call(ImageRequest(prompt="a fox", steps=1), view)
    assert one.payload["num_inference_steps"] == 2          # steps=1 fails on fal: raised to 2
    many = mg.plan_call(ImageRequest(prompt="a fox", steps=200, cfg=15), view)
    assert many.payload["num_inference_steps"] == 200 and many.payload["guidance_scale"] == 15


def test_flux_pro_on_replicate_steps_1_to_50_guidance_2_to_5(cat: Catalog) -> None:
    view = cat.offer("flux-pro@replicate")
    g, st = view.controls.guidance, view.controls.steps
    assert g is not None and (g.min, g.max, g.default) == (2, 5, 3)
    assert st is not None and (st.min, st.max, st.default) == (1, 50, 25)
    call = mg.plan_call(ImageRequest(prompt="a fox", steps=80, cfg=9), view)
    assert call.payload["steps"] == 50 and call.payload["guidance"] == 5
    assert {f.control for f in call.fates if f.kind.value == "approximated"} == {"steps", "cfg"}


def test_flux_2_klein_on_fal_steps_4_to_8(cat: Catalog) -> None:
    st = cat.offer("flux-2-klein@fal").controls.steps
    assert st is not None and (st.min, st.max, st.default) == (4, 8, 4)


@pytest.mark.parametrize("key", ["flux-2-pro@fal", "flux-2-max@fal", "recraft-v4@fal"])
def test_endpoints_without_num_images_get_one_call_per_image(cat: Catalog, key: str) -> None:
    call = mg.plan_call(ImageRequest(prompt="a fox", n=2), cat.offer(key))
    assert call.chunks == [1, 1]
    assert "num_images" not in call.payload


@pytest.mark.parametrize(("key", "endpoint"), [
    ("gemini-3.1-flash-image@fal", "fal-ai/nano-banana-2"),
    ("gemini-3-pro-image@fal", "fal-ai/nano-banana-pro"),
    ("flux-2-max@fal", "fal-ai/flux-2-max"),
    ("flux-2-flash@fal", "fal-ai/flux-2/flash"),
    ("flux-2-klein@fal", "fal-ai/flux-2/klein/9b"),
    ("seedream-4.5@fal", "fal-ai/bytedance/seedream/v4.5/text-to-image"),
    ("recraft-v4@fal", "fal-ai/recraft/v4/text-to-image"),
    ("z-image-turbo@fal", "fal-ai/z-image/turbo"),
])
def test_new_models_use_the_documented_endpoint_ids(cat: Catalog, key: str, endpoint: str) -> None:
    assert cat.offer(key).endpoint == endpoint


def test_gemini_models_send_aspect_ratio_and_1k(cat: Catalog) -> None:
    call = mg.plan_call(ImageRequest(prompt="a fox", aspect_ratio="16:9"),
                        cat.offer("gemini-3.1-flash-image@fal"))
    assert call.payload["aspect_ratio"] == "16:9" and call.payload["resolution"] == "1K"
    assert (call.planned.width, call.planned.height) == (1376, 768)


# --- quality axes on principle ----------------------------------------------------------------------

def test_hero_minimum_is_the_research_threshold(cat: Catalog) -> None:
    assert cat.quality_axes["hero"].minimums == {"prompt_adherence": 8.0}
    d = route(ImageRequest(prompt="a lighthouse at dusk", quality="hero"), cat, today=TODAY)
    for c in d.ranked:
        pa = cat.score(c.model, "prompt_adherence")
        assert pa.value is not None and pa.value >= 8.0 and not pa.estimated, c.key


def test_content_refresh_of_issue_17_cites_its_sources(cat: Catalog) -> None:
    """gpt-image-2.6's token rates (S100) and Firebase's current Imagen replacements (S101) are
    recorded with their sources; models without per-image figures are not quoted."""
    assert {"S100", "S101"} <= set(cat.settings.sources)
    assert "gemini-nano-banana-2.1" in cat.settings.sources["S101"]
    assert "S101" in (cat.models["imagen-4"].notes or "")
    assert not any(mid.startswith(("gpt-image-2.6", "gpt-image-2.5"))
                   for mid in cat.models)  # no per-image token counts: not quotable yet
