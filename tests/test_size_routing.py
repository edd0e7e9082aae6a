"""Size as asked: a requested size is honoured when any eligible offer can make it (within 2 %
per side); otherwise the approximation is stated up front, before anything is sent."""

from __future__ import annotations

from typing import Any

from _routing_models import TODAY, catalog, good, model, offer
from hypothesis import given, settings
from hypothesis import strategies as st

from modelglass.request import ImageRequest
from modelglass.routing import SIZE_TOLERANCE, route

# Fixed sizes only: the nearest to 1536x1024 is 1248x832 (−34 % area), as gpt-image presets do.
FIXED = {"sizes": ["1024x1024", "1248x832", "832x1248"]}


def req(**kw: Any) -> ImageRequest:
    return ImageRequest(**{"prompt": "a lighthouse at dusk", "quality": "hero", **kw})


def test_an_offer_that_makes_the_size_wins_over_a_better_one_that_cannot() -> None:
    cat = catalog(best=model(good(prompt_adherence=9.5), [offer("fal", 0.01)], geometry=FIXED),
                  exact=model(good(prompt_adherence=7), [offer("fal", 0.02)]))
    d = route(req(size="1536x1024"), cat, today=TODAY)
    assert d.choice is not None and d.choice.model == "exact"
    assert (d.choice.call.planned.width, d.choice.call.planned.height) == (1536, 1024)
    (rej,) = [r for r in d.rejected if r.offer_key == "best@fal"]
    assert rej.constraint == "size"
    assert rej.reason == ("makes 1248x832 instead of 1536x1024 (area -34 %, tolerance ±2 % per "
                          "side); 1 eligible offer(s) make 1536x1024 as asked")
    assert d.notices == []
    # Without a size the better model wins as before: the constraint is about size only.
    assert route(req(), cat, today=TODAY).choice.model == "best"  # type: ignore[union-attr]


def test_when_no_offer_can_the_approximation_is_stated_up_front() -> None:
    cat = catalog(best=model(good(prompt_adherence=9.5), [offer("fal", 0.01)], geometry=FIXED))
    d = route(req(size="1536x1024"), cat, today=TODAY)
    assert d.choice is not None and d.choice.model == "best"
    assert d.notices == ["size 1536x1024 approximated: no eligible offer makes it within "
                         "tolerance; best@fal makes 1248x832 instead of 1536x1024 (area -34 %, "
                         "tolerance ±2 % per side)"]
    assert d.explain().startswith("NOTE: size 1536x1024 approximated")
    assert d.to_dict()["notices"] == d.notices
    fate = d.choice.call.fate("size")
    assert fate is not None and fate.kind.value == "approximated"


def test_a_wire_rounding_within_tolerance_counts_as_the_size() -> None:
    # 630 is not a multiple of 16: the offer makes 1200x624 (−1.0 % on one side), within 2 %.
    cat = catalog(rounding=model(good(), [offer("fal", 0.01)]),
                  exact=model(good(prompt_adherence=6.5), [offer("fal", 0.01)],
                              geometry={"multiple_of": 2, "max_megapixels": 4.2}))
    d = route(req(size="1200x630"), cat, today=TODAY)
    assert {c.model for c in d.ranked} == {"rounding", "exact"}
    assert d.choice.model == "rounding" and d.notices == []  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None)
@given(w=st.integers(256, 2048), h=st.integers(256, 2048))
def test_the_choice_makes_the_size_whenever_some_eligible_offer_can(w: int, h: int) -> None:
    cat = catalog(fixed=model(good(prompt_adherence=9.5), [offer("fal", 0.01)], geometry=FIXED),
                  free=model(good(prompt_adherence=7), [offer("fal", 0.02)],
                             geometry={"multiple_of": 16, "max_megapixels": 4.2,
                                       "max_side": 2048}))
    d = route(req(size=f"{w}x{h}"), cat, today=TODAY)
    assert d.choice is not None

    def within(c: Any) -> bool:
        p = c.call.planned
        return max(abs(p.width - w) / w, abs(p.height - h) / h) <= SIZE_TOLERANCE + 1e-12

    if any(within(c) for c in d.ranked) or any(r.constraint == "size" for r in d.rejected):
        assert within(d.choice) and d.notices == []
        assert all(within(c) for c in d.ranked)
    else:
        assert d.notices and d.notices[0].startswith(f"size {w}x{h} approximated")


def test_when_the_offers_that_make_the_size_cool_down_the_others_step_in_and_it_is_said() -> None:
    from modelglass.routing import HealthBoard

    cat = catalog(best=model(good(prompt_adherence=9.5), [offer("replicate", 0.01)],
                             geometry=FIXED),
                  exact=model(good(prompt_adherence=7), [offer("fal", 0.02)]))
    board = HealthBoard()
    first = route(req(size="1536x1024"), cat, today=TODAY, health=board).choice
    assert first is not None and first.model == "exact"
    for _ in range(3):
        board.record("exact@fal", "fal", ok=False, error="ProviderError")
    d = route(req(size="1536x1024"), cat, today=TODAY, health=board)
    assert d.choice is not None and d.choice.key == "best@replicate"
    assert d.notices == ["size 1536x1024 approximated: the offers that make it are cooling down; "
                         "best@replicate makes 1248x832 instead of 1536x1024 (area -34 %, "
                         "tolerance ±2 % per side)"]
    assert [r.constraint for r in d.rejected] == ["health"]
