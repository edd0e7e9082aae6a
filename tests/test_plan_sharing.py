"""Shapes that differ only in budget share their plans (planning never reads the budget), and
bound-first refines size-priced offers with their unfitted estimate: neither may leak one
request's plan into another's decision, nor change a decision."""

from __future__ import annotations

import datetime as dt

import modelglass as mg
from modelglass.catalog import Catalog
from modelglass.plan import estimate_unfitted, plan_call
from modelglass.routing import clear_cache, route

TODAY = dt.date(2026, 12, 6)


def test_a_shared_plan_is_never_handed_out_as_another_requests_call() -> None:
    cat = Catalog.default()
    clear_cache(cat)
    first = route(mg.ImageRequest(prompt="a red fox in the snow", quality="hero",
                                  max_cost_usd=5.0), cat, today=TODAY)
    again = route(mg.ImageRequest(prompt="a blue heron at dawn", quality="hero",
                                  max_cost_usd=4.0), cat, today=TODAY)
    assert again.choice.key == first.choice.key
    call = again.choice.call
    assert call.request.prompt == "a blue heron at dawn"
    assert call.request.max_cost_usd == 4.0
    assert "a blue heron at dawn" in repr(call.payload)
    assert "fox" not in repr(call.payload)
    # and the rows are those of a fresh route with that budget
    clear_cache(cat)
    fresh = route(mg.ImageRequest(prompt="a blue heron at dawn", quality="hero",
                                  max_cost_usd=4.0), cat, today=TODAY)
    assert [r.offer.key for r in again.ranked] == [r.offer.key for r in fresh.ranked]
    assert [r.total for r in again.ranked] == [r.total for r in fresh.ranked]
    assert [(j.offer_key, j.constraint, j.reason) for j in again.rejected] == \
        [(j.offer_key, j.constraint, j.reason) for j in fresh.rejected]


def test_a_budget_rejection_follows_each_requests_own_budget() -> None:
    cat = Catalog.default()
    clear_cache(cat)
    rich = route(mg.ImageRequest(prompt="a fox", quality="hero", max_cost_usd=5.0), cat,
                 today=TODAY)
    cheap_choice = min(r.cost_per_image_usd for r in rich.ranked
                       if r.cost_per_image_usd is not None)
    poor = route(mg.ImageRequest(prompt="a fox", quality="hero",
                                 max_cost_usd=cheap_choice * 1.0001), cat, today=TODAY)
    assert any(j.constraint == "budget" for j in poor.rejected)
    assert all(r.cost_per_image_usd is not None and r.cost_per_image_usd <= cheap_choice * 1.0001
               for r in poor.ranked)


def test_the_unfitted_estimate_is_the_plans_where_nothing_moves_the_size() -> None:
    cat = Catalog.default()
    checked = 0
    for view in cat.offers():
        for req in (mg.ImageRequest(prompt="a fox", quality="hero"),
                    mg.ImageRequest(prompt="a fox", quality="draft", size="1000x700", steps=9),
                    mg.ImageRequest(prompt="a fox", quality="print", n=3)):
            est = estimate_unfitted(req, view)
            try:
                call = plan_call(req, view, today=TODAY)
            except mg.errors.InvalidRequest:
                continue
            if est is None:
                continue
            checked += 1
            assert est.per_image_usd == call.estimate.per_image_usd or (
                est.per_image_usd is not None and call.estimate.per_image_usd is not None
                and est.per_image_usd <= call.estimate.per_image_usd), view.key
    assert checked > 10


def test_the_unfitted_estimate_does_not_read_cfg() -> None:
    # Routing shares unfitted estimates between shapes that differ only in cfg.
    cat = Catalog.default()
    for view in cat.offers():
        for req in (mg.ImageRequest(prompt="a fox", quality="hero"),
                    mg.ImageRequest(prompt="a fox", quality="draft", size="1000x700", steps=9,
                                    negative_prompt="blur")):
            base = estimate_unfitted(req, view)
            for cfg in (1.0, 3.5, 12.0):
                assert estimate_unfitted(req.model_copy(update={"cfg": cfg}), view) == base


def test_shapes_differing_only_in_cfg_decide_as_fresh_routes() -> None:
    cat = Catalog.default()
    clear_cache(cat)
    shared = []
    for cfg in (2.0, 4.5, 9.0, 2.0):
        for quality, size in (("hero", None), ("draft", "1000x700"), ("print", None)):
            req = mg.ImageRequest(prompt="a fox at dawn", quality=quality, size=size, cfg=cfg)
            d = route(req, cat, today=TODAY)
            shared.append((d.to_dict(), d.explain()))
    clear_cache(cat)
    fresh = []
    for cfg in (2.0, 4.5, 9.0, 2.0):
        for quality, size in (("hero", None), ("draft", "1000x700"), ("print", None)):
            clear_cache(cat)
            req = mg.ImageRequest(prompt="a fox at dawn", quality=quality, size=size, cfg=cfg)
            d = route(req, cat, today=TODAY)
            fresh.append((d.to_dict(), d.explain()))
    assert shared == fresh


def test_reasons_are_written_only_when_read() -> None:
    cat = Catalog.default()
    clear_cache(cat)
    d = route(mg.ImageRequest(prompt="a fox", quality="hero"), cat, today=TODAY)
    assert d.choice is not None
    assert not isinstance(d.choice.__dict__["_reasons"], tuple)  # routing wrote no text
    reasons, flags = d.choice.reasons, d.choice.flags
    assert reasons[0].startswith("quality ") and isinstance(flags, tuple)
    assert d.choice.__dict__["_reasons"] is reasons  # written once, then kept
    clear_cache(cat)
    again = route(mg.ImageRequest(prompt="a fox", quality="hero"), cat, today=TODAY)
    assert again.to_dict() == d.to_dict() and again.explain() == d.explain()
