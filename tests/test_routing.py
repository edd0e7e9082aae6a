"""Routing: hard constraints reject with reasons, scoring follows the quality axis, prompt signals
shift the choice, ties break deterministically, and the decision explains itself."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest
from _catalogs import AS_OF, axis

from modelglass.catalog import Catalog, OfferView
from modelglass.catalog._schema import Model, QualityAxis, Settings
from modelglass.errors import CatalogError, InvalidRequest, NoEligibleModel
from modelglass.providers.base import Availability
from modelglass.request import ImageRequest
from modelglass.routing import Policy, RoutingDecision, clear_cache, route

TODAY = dt.date(2026, 11, 1)

AXES: dict[str, QualityAxis] = {
    # draft: cost dominates, speed must be ≥ 7, $0.01/image default ceiling.
    "draft": axis(weights={"prompt_adherence": 1, "speed": 1}, minimums={"speed": 7},
                  cost_weight=0.8, cost_reference_usd=0.005, max_cost_usd=0.01),
    "thumbnail": axis(weights={"speed": 1, "prompt_adherence": 1}, target_size="512x512",
                      cost_weight=0.6, cost_reference_usd=0.005),
    # hero: quality dominates, prompt adherence must be ≥ 6.
    "hero": axis(weights={"prompt_adherence": 2, "photorealism": 1},
                 minimums={"prompt_adherence": 6}, cost_weight=0.1, cost_reference_usd=0.05),
    "print": axis(weights={"resolution": 1, "photorealism": 1}, target_size="2048x2048",
                  cost_weight=0.1, cost_reference_usd=0.08, min_megapixels=3.5),
}


def offer(provider: str = "fal", price: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"provider": provider, "endpoint": f"{provider}/test", "as_of": AS_OF, "source": "T",
            "price": price or {"kind": "per_image", "usd": 0.01}, **kw}


def model(*, scores: dict[str, float] | None = None, offers: list[dict[str, Any]] | None = None,
          commercial: bool | None = True, lifecycle: dict[str, Any] | None = None,
          controls: dict[str, Any] | None = None, geometry: dict[str, Any] | None = None,
          geneval: float | None = None) -> Model:
    """A model whose capability scores are stated priors (``scores``), or, for
    prompt_adherence, measured (``geneval``: 0.40 → 0, 0.90 → 10)."""
    data: dict[str, Any] = {
        "name": "Test", "family": "test",
        "licence": {"id": "test-licence", "open_weights": True, "commercial_use": commercial},
        "priors": {ax: {"value": v, "reason": "test"} for ax, v in (scores or {}).items()},
        "evidence": ([{"metric": "geneval", "value": geneval, "source": "T"}]
                     if geneval is not None else []),
        "controls": controls or {
            "negative_prompt": "native",
            "guidance": {"kind": "true-cfg", "min": 1, "max": 20, "default": 7},
            "steps": {"min": 1, "max": 50, "default": 30}, "seed": True,
            "max_images_per_call": 4},
        "geometry": geometry or {"multiple_of": 8, "min_side": 256, "max_side": 2048,
                                 "max_megapixels": 4.2},
        "offers": offers if offers is not None else [offer()],
    }
    if lifecycle:
        data["lifecycle"] = lifecycle
    return Model.model_validate(data)


def catalog(**models: Model) -> Catalog:
    settings = Settings(providers={"openai": "", "fal": "", "replicate": "", "local": ""},
                        sources={"T": "test"})
    return Catalog(settings, AXES, {k.replace("_", "-"): v for k, v in models.items()})


GOOD = {"prompt_adherence": 8.0, "photorealism": 8.0, "speed": 8.0, "resolution": 7.0,
        "text_rendering": 5.0, "composition": 5.0}


def good(**over: float) -> dict[str, float]:
    return {**GOOD, **over}


def req(prompt: str = "a lighthouse at dusk", **kw: Any) -> ImageRequest:
    return ImageRequest(prompt=prompt, **kw)


def keys(decision: RoutingDecision) -> list[str]:
    return [c.key for c in decision.ranked]


def rejection(decision: RoutingDecision, key: str) -> tuple[str, str]:
    found = [r for r in decision.rejected if r.offer_key == key]
    assert len(found) == 1, f"{key} not rejected exactly once: {decision.rejected}"
    return found[0].constraint, found[0].reason


# -- hard constraints -------------------------------------------------------------------------
def test_retired_model_is_rejected_naming_its_replacement() -> None:
    cat = catalog(old=model(scores=good(), lifecycle={"status": "retired",
                                                      "shutdown_on": "2026-05-12",
                                                      "replacement": "new"}),
                  new=model(scores=good()))
    d = route(req(), cat, today=TODAY)
    assert keys(d) == ["new@fal"]
    assert rejection(d, "old@fal") == ("lifecycle", "old retired on 2026-05-12; use new")


def test_pinned_retired_model_is_rejected_and_require_says_to_use_the_replacement() -> None:
    cat = catalog(old=model(scores=good(), lifecycle={"status": "retired",
                                                      "shutdown_on": "2026-05-12",
                                                      "replacement": "new"}),
                  new=model(scores=good()))
    d = route(req(model="old"), cat, today=TODAY)
    assert d.choice is None and d.ranked == []
    assert rejection(d, "old@fal") == ("lifecycle", "old retired on 2026-05-12; use new")
    assert rejection(d, "new@fal")[0] == "pin"
    with pytest.raises(NoEligibleModel) as err:
        d.require()
    assert "use new" in str(err.value)
    assert err.value.rejected["old@fal"] == "lifecycle: old retired on 2026-05-12; use new"


def test_deprecated_model_counts_as_retired_once_its_shutdown_date_passes() -> None:
    cat = catalog(mini=model(scores=good(), lifecycle={"status": "deprecated",
                                                       "shutdown_on": "2026-12-01",
                                                       "replacement": "big"}))
    before = route(req(), cat, today=dt.date(2026, 11, 30))
    assert keys(before) == ["mini@fal"]
    assert any("deprecated, shuts down 2026-12-01; replacement big" in r
               for r in before.choice.reasons)  # type: ignore[union-attr]
    after = route(req(), cat, today=dt.date(2026, 12, 1))
    assert after.choice is None
    constraint, reason = rejection(after, "mini@fal")
    assert constraint == "lifecycle"
    assert "retired on 2026-12-01" in reason and "use big" in reason


def test_deprecated_model_ranks_below_an_equal_active_one() -> None:
    cat = catalog(a_old=model(scores=good(), lifecycle={"status": "deprecated"}),
                  b_new=model(scores=good()))
    assert keys(route(req(), cat, today=TODAY)) == ["b-new@fal", "a-old@fal"]


def test_budget_rejects_offers_over_max_cost_usd_with_the_numbers() -> None:
    cat = catalog(cheap=model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.02})]),
                  dear=model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.08})]))
    d = route(req(quality="hero", max_cost_usd=0.05, n=2), cat, today=TODAY)
    assert keys(d) == ["cheap@fal"]
    constraint, reason = rejection(d, "dear@fal")
    assert constraint == "budget"
    assert "$0.1600 for 2 images exceeds max_cost_usd $0.05" in reason
    assert all(c.cost_usd is not None and c.cost_usd <= 0.05 for c in d.ranked)


def test_unknown_price_cannot_pass_a_budget() -> None:
    cat = catalog(mystery=model(scores=good(), offers=[offer(price={"kind": "unknown"})]))
    d = route(req(quality="hero", max_cost_usd=0.05), cat, today=TODAY)
    assert rejection(d, "mystery@fal") == (
        "budget", "price unknown; cannot be checked against max_cost_usd $0.05")


def test_axis_default_ceiling_applies_per_image_when_the_request_sets_none() -> None:
    cat = catalog(fast=model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.02})]))
    d = route(req(quality="draft"), cat, today=TODAY)
    constraint, reason = rejection(d, "fast@fal")
    assert constraint == "budget"
    assert "$0.0200/image exceeds the draft axis ceiling $0.01/image" in reason
    # The request's own ceiling replaces the axis default.
    assert keys(route(req(quality="draft", max_cost_usd=0.03), cat, today=TODAY)) == ["fast@fal"]


def test_unknown_price_is_never_free_when_no_budget_applies() -> None:
    cat = catalog(a_unknown=model(scores=good(), offers=[offer(price={"kind": "unknown"})]),
                  b_priced=model(scores=good(), offers=[offer(price={"kind": "per_image",
                                                                     "usd": 0.5})]))
    d = route(req(quality="hero"), cat, today=TODAY)
    assert keys(d) == ["b-priced@fal", "a-unknown@fal"]
    unknown = d.ranked[1]
    assert unknown.cost_usd is None and unknown.cost_score == 0.0
    assert "price unknown" in unknown.flags


def test_commercial_use_needs_a_verified_licence() -> None:
    cat = catalog(ok=model(scores=good()), nc=model(scores=good(), commercial=False),
                  unverified=model(scores=good(), commercial=None))
    d = route(req(commercial=True), cat, today=TODAY)
    assert keys(d) == ["ok@fal"]
    c1, r1 = rejection(d, "nc@fal")
    c2, r2 = rejection(d, "unverified@fal")
    assert c1 == c2 == "licence"
    assert "does not allow commercial use" in r1
    assert "unverified" in r2
    # Without commercial=True, licences do not filter.
    assert len(route(req(), cat, today=TODAY).ranked) == 3


def test_unknown_score_fails_an_axis_minimum_and_says_so() -> None:
    no_pa = {k: v for k, v in GOOD.items() if k != "prompt_adherence"}
    cat = catalog(blind=model(scores=no_pa), low=model(scores=good(prompt_adherence=4.0)),
                  ok=model(scores=good()))
    d = route(req(quality="hero"), cat, today=TODAY)
    assert keys(d) == ["ok@fal"]
    assert rejection(d, "blind@fal") == (
        "minimum", "prompt_adherence score unknown (no evidence), needs ≥ 6")
    assert rejection(d, "low@fal") == ("minimum", "prompt_adherence 4.0 < minimum 6")


def test_estimated_prior_passes_a_minimum_but_is_marked() -> None:
    cat = catalog(prior=model(scores=good()),
                  measured=model(scores={k: v for k, v in GOOD.items()
                                         if k != "prompt_adherence"}, geneval=0.80))
    d = route(req(quality="hero"), cat, today=TODAY)
    by_key = {c.key: c for c in d.ranked}
    assert set(by_key) == {"prior@fal", "measured@fal"}
    assert any("prompt_adherence" in f for f in by_key["prior@fal"].flags)
    assert any("estimated prior" in r for r in by_key["prior@fal"].reasons)
    assert not any("prompt_adherence" in f for f in by_key["measured@fal"].flags)


def test_unavailable_provider_is_rejected_by_set_and_by_callable() -> None:
    cat = catalog(m=model(scores=good(), offers=[offer("fal"), offer("replicate"), offer("local")]))
    d = route(req(), cat, available={"fal"}, today=TODAY)
    assert keys(d) == ["m@fal"]
    constraint, reason = rejection(d, "m@replicate")
    assert constraint == "availability" and "'replicate'" in reason and "available: fal" in reason

    def check(view: OfferView) -> Availability:
        if view.provider == "local":
            return Availability(False, "weights for m are not in the HF cache")
        return Availability(True, "ok")

    d2 = route(req(), cat, available=check, today=TODAY)
    assert set(keys(d2)) == {"m@fal", "m@replicate"}
    assert rejection(d2, "m@local") == ("availability", "weights for m are not in the HF cache")


def test_pins_restrict_candidates_to_the_model_and_provider() -> None:
    cat = catalog(a=model(scores=good(), offers=[offer("fal"), offer("replicate")]),
                  b=model(scores=good(prompt_adherence=9.5), offers=[offer("fal")]))
    assert keys(route(req(model="a"), cat, today=TODAY)) == ["a@fal", "a@replicate"]
    assert keys(route(req(provider="replicate"), cat, today=TODAY)) == ["a@replicate"]
    d = route(req(model="a", provider="replicate"), cat, today=TODAY)
    assert keys(d) == ["a@replicate"]
    assert rejection(d, "b@fal") == ("pin", "request pins model='a'")
    assert rejection(d, "a@fal") == ("pin", "request pins provider='replicate'")


def test_unknown_pins_are_errors_not_empty_decisions() -> None:
    cat = catalog(a=model(scores=good()))
    with pytest.raises(CatalogError, match="unknown model 'nope'"):
        route(req(model="nope"), cat, today=TODAY)
    with pytest.raises(InvalidRequest, match="provider 'openai'"):
        route(req(provider="openai"), cat, today=TODAY)


def test_print_axis_rejects_small_outputs_unless_an_upscaler_is_available() -> None:
    small = {"multiple_of": 8, "min_side": 256, "max_side": 1024, "max_megapixels": 1.05}
    cat = catalog(big=model(scores=good()), small=model(scores=good(), geometry=small))
    d = route(req(quality="print"), cat, today=TODAY)
    assert keys(d) == ["big@fal"]
    constraint, reason = rejection(d, "small@fal")
    assert constraint == "resolution"
    assert "1.05 MP < 3.5 MP" in reason
    upscaling = Policy(upscale_available=lambda call: True)
    d2 = route(req(quality="print"), cat, today=TODAY, policy=upscaling)
    assert set(keys(d2)) == {"big@fal", "small@fal"}
    small_c = next(c for c in d2.ranked if c.key == "small@fal")
    assert any("upscale step" in r for r in small_c.reasons)


def test_strict_request_rejects_offers_that_would_approximate_a_control() -> None:
    narrow = {"negative_prompt": "native",
              "guidance": {"kind": "true-cfg", "min": 1, "max": 5, "default": 3},
              "steps": {"min": 1, "max": 50, "default": 30}, "seed": True}
    cat = catalog(wide=model(scores=good()), narrow=model(scores=good(), controls=narrow))
    d = route(req(cfg=9, strict=True), cat, today=TODAY)
    assert keys(d) == ["wide@fal"]
    constraint, reason = rejection(d, "narrow@fal")
    assert constraint == "strict"
    assert "cfg" in reason and "strict=True" in reason
    # Not strict: the narrow offer ranks, penalised for the clamped cfg.
    loose = route(req(cfg=9), cat, today=TODAY)
    assert keys(loose) == ["wide@fal", "narrow@fal"]
    assert any("approximated" in r for r in loose.ranked[1].reasons)


# -- scoring ----------------------------------------------------------------------------------
def _cheap_vs_best() -> Catalog:
    return catalog(
        cheap=model(scores=good(prompt_adherence=7.0, photorealism=6.5, speed=9.0),
                    offers=[offer(price={"kind": "per_image", "usd": 0.003})]),
        best=model(scores=good(prompt_adherence=9.5, photorealism=9.5, speed=9.0),
                   offers=[offer(price={"kind": "per_image", "usd": 0.009})]),
        slow=model(scores=good(prompt_adherence=9.9, speed=3.0),
                   offers=[offer(price={"kind": "per_image", "usd": 0.001})]))


def test_draft_picks_the_cheapest_adequate_offer() -> None:
    d = route(req(quality="draft"), _cheap_vs_best(), today=TODAY)
    assert d.choice is not None and d.choice.key == "cheap@fal"
    assert rejection(d, "slow@fal")[0] == "minimum"  # cheapest of all, but not fast enough


def test_hero_picks_quality_over_cost() -> None:
    d = route(req(quality="hero"), _cheap_vs_best(), today=TODAY)
    # best costs 3× cheap, but hero barely weighs cost; slow's speed does not matter for hero.
    assert keys(d) == ["best@fal", "slow@fal", "cheap@fal"]


def test_ranking_follows_the_axis_cost_weight() -> None:
    # With quality only, the best-scoring model wins; with cost nearly only, the cheapest does.
    cat = catalog(cheap=model(scores=good(prompt_adherence=6.5), offers=[offer(price={
        "kind": "per_image", "usd": 0.001})]),
        best=model(scores=good(prompt_adherence=9.5), offers=[offer(price={
            "kind": "per_image", "usd": 0.05})]))
    firsts = []
    for cw in (0.0, 0.95):
        axes = {**AXES, "hero": axis(weights={"prompt_adherence": 1}, cost_weight=cw,
                                     cost_reference_usd=0.005)}
        firsts.append(keys(route(req(quality="hero"),
                                 Catalog(cat.settings, axes, cat.models), today=TODAY))[0])
    assert firsts == ["best@fal", "cheap@fal"]


def test_total_is_the_documented_trade_of_quality_and_cost() -> None:
    cat = catalog(m=model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.005})]))
    c = route(req(quality="draft"), cat, today=TODAY).require()
    # draft: weights pa 1, speed 1 → quality 8.0; cost score 0.005/(0.005+0.005) = 0.5.
    assert c.quality == pytest.approx(8.0)
    assert c.cost_score == pytest.approx(0.5)
    assert c.total == pytest.approx(0.2 * 0.8 + 0.8 * 0.5)


def test_quoted_text_raises_models_that_render_text() -> None:
    cat = catalog(pretty=model(scores=good(prompt_adherence=9.0, photorealism=9.5,
                                           text_rendering=2.0)),
                  typo=model(scores=good(prompt_adherence=8.5, photorealism=8.0,
                                         text_rendering=9.0)))
    plain = route(req("a bakery storefront", quality="hero"), cat, today=TODAY)
    assert keys(plain)[0] == "pretty@fal"
    sign = route(req("a bakery storefront with a sign that says 'FRESH BREAD'", quality="hero"),
                 cat, today=TODAY)
    assert keys(sign)[0] == "typo@fal"
    assert sign.signals.text_matters
    assert sign.weights["text_rendering"] > 0
    assert any("quoted text" in r for r in sign.ranked[0].reasons)


@pytest.mark.parametrize("prompt", ["three cats on a sofa", "2 dogs and a ball",
                                    "a red cube to the left of a blue sphere",
                                    "a vase on top of a piano"])
def test_counts_and_spatial_words_raise_models_that_compose_well(prompt: str) -> None:
    cat = catalog(pretty=model(scores=good(prompt_adherence=8.6, photorealism=9.0,
                                           composition=2.0)),
                  layout=model(scores=good(prompt_adherence=8.5, photorealism=8.5,
                                           composition=9.5)))
    assert keys(route(req("a cat", quality="hero"), cat, today=TODAY))[0] == "pretty@fal"
    d = route(req(prompt, quality="hero"), cat, today=TODAY)
    assert d.signals.composition_matters
    assert keys(d)[0] == "layout@fal"


def test_negative_prompt_prefers_offers_that_honour_it() -> None:
    no_negative = {"negative_prompt": "none", "guidance": {"kind": "none"},
                   "steps": {"min": 1, "max": 4, "default": 4}, "seed": True}
    cat = catalog(a_ignores=model(scores=good(prompt_adherence=8.2), controls=no_negative),
                  b_honours=model(scores=good(prompt_adherence=8.0)))
    assert keys(route(req(quality="hero"), cat, today=TODAY))[0] == "a-ignores@fal"
    d = route(req(quality="hero", negative_prompt="blurry, watermark"), cat, today=TODAY)
    assert keys(d) == ["b-honours@fal", "a-ignores@fal"]
    assert any("negative prompt honored" in r for r in d.ranked[0].reasons)
    assert any("negative prompt dropped" in r for r in d.ranked[1].reasons)


def test_ties_break_by_cost_then_offer_key_whatever_the_catalog_order() -> None:
    models = {name: model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": usd})])
              for name, usd in [("zeta", 0.01), ("alpha", 0.01), ("mid", 0.01)]}
    # Identical offers: only the key can order them.
    axes = {**AXES, "hero": axis(weights={"prompt_adherence": 1}, cost_weight=0.0,
                                 cost_reference_usd=0.05)}
    results = set()
    for seed in range(5):
        items = list(models.items())
        random.Random(seed).shuffle(items)
        cat = Catalog(catalog().settings, axes, dict(items))
        results.add(tuple(keys(route(req(quality="hero"), cat, today=TODAY))))
    assert results == {("alpha@fal", "mid@fal", "zeta@fal")}
    # Equal totals, different costs: the cheaper first.
    two = Catalog(catalog().settings, axes, {
        "a": model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.02})]),
        "b": model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.01})])})
    assert keys(route(req(quality="hero"), two, today=TODAY)) == ["b@fal", "a@fal"]


# -- the decision ------------------------------------------------------------------------------
def _mixed() -> Catalog:
    return catalog(
        winner=model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.004})]),
        runner=model(scores=good(prompt_adherence=7.0),
                     offers=[offer(price={"kind": "per_image", "usd": 0.006})]),
        pricey=model(scores=good(), offers=[offer(price={"kind": "per_image", "usd": 0.5})]),
        unknown=model(scores=good(), offers=[offer(price={"kind": "unknown"})]),
        gone=model(scores=good(), lifecycle={"status": "retired", "replacement": "winner"}))


def test_explain_names_the_choice_its_cost_and_every_rejection_reason() -> None:
    d = route(req(quality="draft", max_cost_usd=0.05), _mixed(), today=TODAY)
    text = d.explain()
    assert "Choice: winner@fal" in text
    assert "$0.0040" in text
    assert "runner@fal" in text and "Runners-up" in text
    assert "budget (2):" in text and "lifecycle (1):" in text
    assert "price unknown; cannot be checked against max_cost_usd $0.05" in text
    assert "exceeds max_cost_usd $0.05" in text
    assert "gone retired; use winner" in text
    assert "estimated" in text  # every score here is a prior, and the report says so


def test_require_raises_no_eligible_model_with_every_reason() -> None:
    d = route(req(quality="draft", max_cost_usd=0.001), _mixed(), today=TODAY)
    assert d.choice is None
    with pytest.raises(NoEligibleModel) as err:
        d.require()
    assert set(err.value.rejected) == {"winner@fal", "runner@fal", "pricey@fal", "unknown@fal",
                                       "gone@fal"}
    assert "raise max_cost_usd" in str(err.value)
    assert "No eligible offer" in d.explain()


def test_to_dict_is_json_ready_and_complete() -> None:
    d = route(req('a sign saying "HI"', quality="draft", max_cost_usd=0.05), _mixed(), today=TODAY)
    data = json.loads(json.dumps(d.to_dict()))
    assert data["choice"]["offer"] == "winner@fal"
    assert [c["offer"] for c in data["ranked"]] == keys(d)
    assert {r["offer"] for r in data["rejected"]} == {"pricey@fal", "unknown@fal", "gone@fal"}
    assert data["signals"]["text_matters"] is True


def test_choice_call_is_the_plan_for_this_request() -> None:
    d = route(req(quality="draft", seed=7, max_cost_usd=0.05), _mixed(), today=TODAY)
    call = d.require().call
    assert call.offer.key == "winner@fal"
    assert call.planned.seeds == (7,)
    assert call.estimate.usd == pytest.approx(0.004)


def test_repeat_shapes_reuse_the_ranking_but_plan_each_prompt() -> None:
    cat = _mixed()
    clear_cache(cat)
    first = route(req("a red fox", quality="draft", max_cost_usd=0.05), cat, today=TODAY)
    again = route(req("a blue whale", quality="draft", max_cost_usd=0.05), cat, today=TODAY)
    assert keys(first) == keys(again)
    assert [r.to_dict() for r in first.rejected] == [r.to_dict() for r in again.rejected]
    assert first.require().call.planned.prompt == "a red fox"
    assert again.require().call.planned.prompt == "a blue whale"
    assert again.ranked[1].call.planned.prompt == "a blue whale"
    # A different signal is a different shape.
    text = route(req('a sign saying "OPEN"', quality="draft", max_cost_usd=0.05), cat,
                 today=TODAY)
    assert text.signals.text_matters and text.weights != first.weights


def test_ranked_starts_with_the_choice() -> None:
    d = route(req(quality="draft", max_cost_usd=0.05), _mixed(), today=TODAY)
    assert d.ranked[0] is d.choice
    totals = [c.total for c in d.ranked]
    assert totals == sorted(totals, reverse=True)


# -- the shipped catalog ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return Catalog.default()  # a shipped catalog that does not load fails these tests


def test_shipped_draft_routes_to_a_cheap_fast_model(shipped: Catalog) -> None:
    d = route(req("a red bicycle", quality="draft"), shipped, today=TODAY)
    c = d.require()
    assert c.cost_per_image_usd is not None and c.cost_per_image_usd <= 0.005
    speed = shipped.score(c.model, "speed").value
    assert speed is not None and speed >= 7


def test_shipped_draft_on_hosted_providers_only(shipped: Catalog) -> None:
    d = route(req("a red bicycle", quality="draft"), shipped, available={"fal", "replicate"},
              today=TODAY)
    c = d.require()
    assert c.provider in {"fal", "replicate"}
    assert c.cost_per_image_usd is not None and c.cost_per_image_usd <= 0.005


@pytest.mark.parametrize("prompt", ["a lighthouse at dusk, oil painting",
                                    "a storefront sign that says 'GRAND OPENING'"])
def test_shipped_hero_with_commercial_never_picks_a_non_commercial_model(shipped: Catalog,
                                                                         prompt: str) -> None:
    d = route(req(prompt, quality="hero", commercial=True), shipped, today=TODAY)
    assert d.ranked, d.explain()
    for c in d.ranked:
        assert c.offer.model.licence.commercial_use is True, c.key
    assert d.rejected_by("licence")


@pytest.mark.parametrize("quality", ["draft", "thumbnail", "hero", "print"])
def test_shipped_max_cost_usd_is_respected_by_every_ranked_candidate(shipped: Catalog,
                                                                     quality: str) -> None:
    d = route(req("a fox", quality=quality, max_cost_usd=0.04), shipped, today=TODAY)
    for c in d.ranked:
        assert c.cost_usd is not None and c.cost_usd <= 0.04, c.key


@pytest.mark.parametrize("quality", ["draft", "thumbnail", "hero", "print"])
@pytest.mark.parametrize("extra", [{}, {"negative_prompt": "blurry", "seed": 3, "n": 2},
                                   {"aspect_ratio": "16:9", "commercial": True}])
def test_shipped_every_offer_ranks_or_is_rejected_with_a_reason(shipped: Catalog, quality: str,
                                                                extra: dict[str, Any]) -> None:
    d = route(req("a fox", quality=quality, **extra), shipped, today=TODAY)
    ranked = keys(d)
    rejected = [r.offer_key for r in d.rejected]
    assert sorted(ranked + rejected) == sorted(v.key for v in shipped.offers())
    assert all(r.reason.strip() and r.constraint for r in d.rejected)


def test_shipped_quoted_text_hero_picks_a_strong_text_renderer(shipped: Catalog) -> None:
    d = route(req("a storefront sign that says 'GRAND OPENING'", quality="hero"), shipped,
              today=TODAY)
    c = d.require()
    tr = shipped.score(c.model, "text_rendering").value
    assert tr is not None and tr >= 6, d.explain()


def test_a_pinned_model_below_the_axis_minimum_is_kept_and_flagged() -> None:
    cat = catalog(low=model(scores=good(prompt_adherence=4.0)), ok=model(scores=good()))
    free = route(req(quality="hero"), cat, today=TODAY)
    assert rejection(free, "low@fal")[0] == "minimum"
    pinned = route(req(quality="hero", model="low"), cat, today=TODAY)
    assert keys(pinned) == ["low@fal"]
    assert any("kept because the model was pinned" in f for f in pinned.ranked[0].flags)


def test_no_eligible_model_error_puts_the_pinned_offers_reason_first() -> None:
    cat = catalog(**{f"m{i}": model(scores=good()) for i in range(5)},
                  old=model(scores=good(), lifecycle={"status": "retired",
                                                      "shutdown_on": "2026-05-12",
                                                      "replacement": "m0"}))
    d = route(req(model="old"), cat, today=TODAY)
    with pytest.raises(NoEligibleModel) as info:
        d.require()
    text = str(info.value)
    first = text.splitlines()[1]
    assert first.startswith("  - lifecycle:") and "old@fal" in first and "use m0" in first
    assert "5 offers of other models/providers left out by the pin" in text
    assert "m1@fal" not in text
