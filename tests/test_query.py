"""Catalog queries: filters by score, by the controls an offer really sends, provider, licence and
lifecycle; sorting by cost and by quality; numbers in JSON."""

from __future__ import annotations

import json
import math

import pytest

import modelglass as mg
from modelglass.catalog_tools._query import offer_supports, parse_where
from modelglass.plan import plan_call
from modelglass.result import FateKind


@pytest.fixture(scope="module")
def cat() -> mg.Catalog:
    return mg.Catalog.default()


def test_supports_is_judged_per_offer_by_what_the_offer_sends(cat: mg.Catalog) -> None:
    rows = cat.query(supports=["negative_prompt"])
    keys = {r.key for r in rows}
    assert rows
    # Every offer kept really sends a negative prompt when planned; every offer left out drops it.
    for view in cat.offers(include_retired=False):
        req = mg.ImageRequest(prompt="a fox", negative_prompt="blurry")
        try:
            fate = plan_call(req, view).fate("negative_prompt")
        except mg.InvalidRequest:
            continue
        assert fate is not None
        assert (view.key in keys) == (fate.kind is not FateKind.dropped), view.key


def test_a_model_level_negative_prompt_does_not_count_for_hosted_offers_that_drop_it(
        cat: mg.Catalog) -> None:
    dropped = [v for v in cat.offers_for("flux-dev") if offer_supports(cat, v, "negative_prompt") is False]
    assert dropped, "flux-dev's hosted offers drop the negative prompt"
    keys = {r.key for r in cat.query(supports="negative_prompt")}
    assert not any(v.key in keys for v in dropped)


def test_where_filters_on_scores_and_unknown_never_passes(cat: mg.Catalog) -> None:
    rows = cat.query(where={"text_rendering": (">=", 8)})
    assert rows
    for r in rows:
        s = cat.score(r.offer.model_id, "text_rendering")
        assert s.value is not None and s.value >= 8
    same = cat.query(where="text_rendering>=8")
    assert [r.key for r in same] == [r.key for r in rows]


def test_sort_by_cost_puts_cheapest_first_and_unknown_prices_last(cat: mg.Catalog) -> None:
    rows = cat.query(axis="hero", sort="cost")
    costs = [r.cost_per_image_usd for r in rows]
    known = [c for c in costs if c is not None]
    assert known == sorted(known)
    first_unknown = next((i for i, c in enumerate(costs) if c is None), len(costs))
    assert all(c is None for c in costs[first_unknown:])


def test_axis_keeps_only_offers_the_router_ranks_and_sorts_by_quality(cat: mg.Catalog) -> None:
    rows = cat.query(axis="hero", sort="quality")
    decision = mg.Client(catalog=cat).route(mg.ImageRequest(prompt="an image", quality="hero"),
                                            available=cat.providers)
    assert {r.key for r in rows} == {c.key for c in decision.ranked}
    qualities = [r.quality for r in rows]
    assert all(q is not None for q in qualities)
    assert qualities == sorted(qualities, reverse=True)
    everything = cat.query(axis="hero", include_ineligible=True)
    out = [r for r in everything if not r.eligible]
    assert out and all(r.why_not for r in out)


def test_provider_licence_and_lifecycle_filters(cat: mg.Catalog,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert {r.offer.provider for r in cat.query(provider="fal")} == {"fal"}
    assert {r.offer.provider for r in cat.query(provider="fal,openai")} <= {"fal", "openai"}
    assert all(r.offer.model.licence.commercial_use is True for r in cat.query(commercial=True))
    monkeypatch.setenv("MODELGLASS_TODAY", "2026-11-30")  # before gpt-image-1.5's shutdown
    dep = cat.query(lifecycle="deprecated")
    assert dep and all(r.offer.status.value == "deprecated" for r in dep)
    monkeypatch.setenv("MODELGLASS_TODAY", "2026-12-06")  # after it: retired, one status
    assert not {r.key for r in dep} & {r.key for r in cat.query(lifecycle="deprecated")}
    assert {r.key for r in dep} <= {r.key for r in cat.query(lifecycle="retired")}


def test_to_dict_has_numbers_not_display_strings(cat: mg.Catalog) -> None:
    d = cat.query(axis="hero", sort="cost")[0].to_dict()
    json.dumps(d)
    assert isinstance(d["cost_per_image_usd"], float) and math.isfinite(d["cost_per_image_usd"])
    assert isinstance(d["quality"], float)
    assert d["cost_per_image_usd"] == round(d["cost_per_image_usd"], 6)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"where": "text_rendering>>8"}, "where"),
    ({"where": {"bogus": (">=", 1)}}, "where"),
    ({"where": {"speed": ("~", 1)}}, "where"),
    ({"sort": "quality"}, "sort"),
    ({"sort": "price"}, "sort"),
    ({"supports": ["teleport"]}, "supports"),
    ({"provider": "nope"}, "provider"),
    ({"lifecycle": "zombie"}, "lifecycle"),
])
def test_bad_query_arguments_are_typed_and_name_the_field(cat: mg.Catalog, kwargs: dict,
                                                          field: str) -> None:
    with pytest.raises(mg.InvalidRequest) as info:
        cat.query(**kwargs)
    assert info.value.field == field


def test_parse_where_reads_several_conditions() -> None:
    assert parse_where(["text_rendering>=8", "speed > 5,photorealism==7"]) == {
        "text_rendering": (">=", 8.0), "speed": (">", 5.0), "photorealism": ("==", 7.0)}
