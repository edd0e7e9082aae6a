"""The shipped catalog: loads, covers the models others rely on, and every number has a source."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from modelglass.catalog import Catalog, GuidanceKind, PriceKind, Status, default_catalog_dir

REQUIRED_IDS = [
    "gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "gpt-image-1", "dall-e-3", "dall-e-2",
    "flux-schnell", "flux-dev", "flux-pro", "flux-1.1-pro", "flux-1.1-pro-ultra",
    "flux-kontext-pro", "flux-2-dev", "flux-2-pro", "flux-2-flex", "flux-2-klein",
    "sd-1.5", "sdxl", "sdxl-turbo", "sdxl-lightning", "lcm-lora-sdxl", "sd-3.5-large",
    "sd-3.5-medium", "sd-3.5-large-turbo", "ideogram-3", "recraft-v3", "imagen-4-fast",
    "imagen-4-ultra", "hidream-i1", "qwen-image", "pixart-sigma", "playground-v2.5",
    # added in the 2026-11-29 refresh (issue 7)
    "gemini-3.1-flash-image", "gemini-3-pro-image", "flux-2-max", "flux-2-flash", "seedream-4.5",
    "recraft-v4", "z-image-turbo",
]


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.default()


def test_default_catalog_loads_with_at_least_25_models(cat: Catalog) -> None:
    assert len(cat.models) >= 25
    missing = [m for m in REQUIRED_IDS if m not in cat.models]
    assert not missing


def test_every_provider_has_offers(cat: Catalog) -> None:
    counts = Counter(v.provider for v in cat.offers())
    assert set(counts) == {"openai", "fal", "replicate", "local"}
    assert all(n >= 5 for n in counts.values())


# --- lifecycle facts (catalog-data §0.2) ------------------------------------------------------------

def test_gpt_image_2_is_active(cat: Catalog) -> None:
    assert cat.models["gpt-image-2"].lifecycle.status is Status.active


@pytest.mark.parametrize("mid", ["gpt-image-1.5", "gpt-image-1-mini"])
def test_gpt_image_1_x_is_deprecated_with_a_december_shutdown(cat: Catalog, mid: str) -> None:
    m = cat.models[mid]
    assert m.lifecycle.status is Status.deprecated
    assert m.lifecycle.shutdown_on == dt.date(2026, 12, 1)
    assert m.lifecycle.replacement == "gpt-image-2"
    assert m.notes and "2.6" in m.notes and "not in this catalog" in m.notes


def test_gpt_image_1_is_retired(cat: Catalog) -> None:
    lc = cat.models["gpt-image-1"].lifecycle
    assert (lc.status, lc.shutdown_on, lc.replacement) == \
        (Status.retired, dt.date(2026, 10, 23), "gpt-image-2")


@pytest.mark.parametrize("mid", ["dall-e-3", "dall-e-2"])
def test_dall_e_is_retired_and_replaced_by_gpt_image_2(cat: Catalog, mid: str) -> None:
    lc = cat.models[mid].lifecycle
    assert (lc.status, lc.replacement) == (Status.retired, "gpt-image-2")


def test_retired_models_are_left_out_on_request(cat: Catalog,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGLASS_TODAY", "2026-11-30")
    keys = {v.model_id for v in cat.offers(include_retired=False)}
    assert not keys & {"gpt-image-1", "dall-e-3", "dall-e-2"}
    assert "gpt-image-1.5" in keys          # deprecated still serves until its shutdown
    monkeypatch.setenv("MODELGLASS_TODAY", "2026-12-01")  # its shutdown day: retired
    assert "gpt-image-1.5" not in {v.model_id for v in cat.offers(include_retired=False)}


# --- provenance: every number has a source and a date ----------------------------------------------

def test_every_offer_has_as_of_and_known_sources(cat: Catalog) -> None:
    sources = set(cat.settings.sources)
    for view in cat.offers():
        o = view.offer
        assert isinstance(o.as_of, dt.date), view.key
        assert cat.settings.as_of is not None and o.as_of <= cat.settings.as_of, view.key
        ids = [s.strip() for s in o.source.split(",")]
        assert ids and set(ids) <= sources, view.key


def test_every_evidence_row_has_a_known_source(cat: Catalog) -> None:
    sources = set(cat.settings.sources)
    for mid, m in cat.models.items():
        for e in m.evidence:
            assert e.source in sources, (mid, e.metric)


def test_unknown_prices_stay_unknown(cat: Catalog) -> None:
    unknown = [v for v in cat.offers() if v.offer.price.kind is PriceKind.unknown]
    assert unknown, "the research leaves some prices unknown"
    for v in unknown:
        assert v.estimate_cost(1024, 1024).usd is None, v.key


def test_settings_values(cat: Catalog) -> None:
    s = cat.settings
    assert (s.formula_version, s.gpu_hour_usd, s.as_of) == (3, 2.0, dt.date(2026, 11, 29))
    assert set(s.providers) == {"openai", "fal", "replicate", "local"}
    # S44–S47 and S68 did not resolve to a title, URL and date and were dropped (issue 14).
    kept = {f"S{i:02d}" for i in range(1, 91)} - {"S44", "S45", "S46", "S47", "S68"}
    assert kept | {"I7"} <= set(s.sources)
    for i in range(69, 89):   # the 2026-11-29 sources say when they were checked
        assert "2026-11-29" in s.sources[f"S{i}"], i


# --- quality axes -------------------------------------------------------------------------------

def test_four_quality_axes_with_sensible_trade_offs(cat: Catalog) -> None:
    q = cat.quality_axes
    assert set(q) == {"draft", "thumbnail", "hero", "print"}
    assert q["draft"].cost_weight > q["hero"].cost_weight
    assert q["draft"].max_cost_usd is not None and q["draft"].max_cost_usd <= 0.005
    assert q["thumbnail"].target_size == "512x512"
    assert {"prompt_adherence", "photorealism", "composition", "text_rendering"} <= set(q["hero"].weights)
    assert q["print"].min_megapixels is not None and q["print"].min_megapixels >= 3.5
    assert q["print"].target_size == "2048x2048" and q["print"].dpi == 300
    assert max(q["print"].weights, key=q["print"].weights.__getitem__) in ("resolution", "photorealism")


# --- controls, geometry and wire facts the providers rely on ----------------------------------------

def test_flux_negative_prompt_is_true_cfg_extra_locally_and_none_hosted(cat: Catalog) -> None:
    for mid in ("flux-schnell", "flux-dev"):
        assert cat.offer(f"{mid}@local").controls.negative_prompt == "true-cfg-extra"
        assert cat.offer(f"{mid}@fal").controls.negative_prompt == "none"
        assert cat.offer(f"{mid}@replicate").controls.negative_prompt == "none"


def test_provider_specific_control_ranges(cat: Catalog) -> None:
    steps = cat.offer("flux-schnell@fal").controls.steps
    assert steps is not None and (steps.min, steps.max, steps.default) == (1, 12, 4)
    g = cat.offer("flux-dev@fal").controls.guidance
    assert g is not None and (g.min, g.max, g.kind) == (1, 20, GuidanceKind.distilled)
    g = cat.offer("flux-dev@replicate").controls.guidance
    assert g is not None and (g.min, g.max, g.default) == (0, 10, 3)
    assert g.kind is GuidanceKind.distilled      # an override of the range keeps the kind


def test_openai_offers_have_no_seed_and_prompt_limits(cat: Catalog) -> None:
    for mid in ("gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "gpt-image-1", "dall-e-3",
                "dall-e-2"):
        assert cat.offer(f"{mid}@openai").controls.seed is False, mid
    assert cat.models["gpt-image-2"].controls.max_prompt_chars == 32000
    assert cat.models["dall-e-3"].controls.max_prompt_chars == 4000
    assert cat.models["dall-e-2"].controls.max_prompt_chars == 1000
    assert cat.models["dall-e-3"].controls.max_images_per_call == 1


def test_local_offers_name_a_pipeline_a_hub_repo_and_samplers(cat: Catalog) -> None:
    local = [v for v in cat.offers() if v.provider == "local"]
    assert {v.model_id for v in local} >= {"sd-1.5", "sdxl", "sdxl-turbo", "flux-schnell",
                                           "flux-dev", "sd-3.5-large"}
    for v in local:
        assert v.offer.pipeline and v.offer.pipeline.endswith("Pipeline"), v.key
        assert v.endpoint.count("/") == 1, v.key
        assert v.controls.samplers, v.key
    assert cat.offer("sdxl@local").controls.samplers == [
        "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc"]
    assert cat.offer("flux-dev@local").controls.samplers == ["euler", "dpmpp_2m", "unipc"]
    assert cat.offer("lcm-lora-sdxl@local").controls.samplers == ["lcm"]


def test_geometry_facts(cat: Catalog) -> None:
    g2 = cat.models["gpt-image-2"].geometry
    assert (g2.multiple_of, g2.max_side, g2.max_aspect, g2.max_megapixels) == (16, 3840, 3, 8.2944)
    assert cat.models["gpt-image-1.5"].geometry.sizes == ["1024x1024", "1536x1024", "1024x1536"]
    assert cat.models["dall-e-3"].geometry.sizes == ["1024x1024", "1792x1024", "1024x1792"]
    rep = cat.offer("flux-schnell@replicate").geometry
    assert rep.aspect_ratios is not None and rep.aspect_ratios["16:9"] == "1344x768"
    assert rep.multiple_of is None          # a fixed table replaces the model's free range
    pro = cat.offer("flux-1.1-pro@replicate").geometry
    assert (pro.multiple_of, pro.min_side, pro.max_side) == (32, 256, 1440) and pro.aspect_ratios
    ultra = cat.offer("flux-1.1-pro-ultra@fal").geometry
    assert ultra.max_mp() is not None and ultra.max_mp() >= 4.0
    assert cat.offer("flux-dev@fal").geometry.multiple_of == 16
    assert cat.offer("sdxl@local").geometry.multiple_of == 8


def test_wire_vocabulary_and_fixed_defaults(cat: Catalog) -> None:
    assert cat.offer("sdxl@fal").offer.wire["output_format"] == "format"
    assert cat.offer("flux-schnell@replicate").offer.defaults["go_fast"] is False
    assert cat.offer("flux-1.1-pro@replicate").offer.wire["size"] == "aspect_ratio_custom"
    assert cat.offer("gpt-image-2@openai").offer.wire["tier"] == "quality"
    assert cat.offer("flux-dev@fal").offer.defaults["enable_safety_checker"] is True
    allowed_sizes = {"openai_size", "image_size", "image_size_wxh", "aspect_ratio", "width_height",
                     "aspect_ratio_custom"}
    for v in cat.offers():
        assert v.offer.wire.get("size", "image_size") in allowed_sizes, v.key


def test_endpoints_match_the_research(cat: Catalog) -> None:
    assert cat.offer("gpt-image-2@fal").endpoint == "openai/gpt-image-2"
    assert cat.offer("sdxl@replicate").endpoint == (
        "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc")
    assert cat.offer("flux-1.1-pro-ultra@fal").endpoint == "fal-ai/flux-pro/v1.1-ultra"
    assert cat.offer("sdxl@local").endpoint == "stabilityai/stable-diffusion-xl-base-1.0"


def test_priced_offer_kinds_are_all_represented(cat: Catalog) -> None:
    kinds = {v.offer.price.kind for v in cat.offers()}
    assert kinds == set(PriceKind)


# --- packaging ------------------------------------------------------------------------------------

def test_wheel_force_includes_the_catalog() -> None:
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    force = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force["catalog"] == "modelglass/_catalog_data"
    assert (default_catalog_dir() / "settings.yaml").is_file()
