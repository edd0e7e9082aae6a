"""The ranking memo (a request *shape* remembered across calls) never shows one prompt's costs or
text-encoder cuts for another: a route on warm caches equals the same route on empty ones."""

from __future__ import annotations

import datetime as dt
import random

import modelglass as mg
from modelglass.catalog import Catalog
from modelglass.routing import clear_cache, route

TODAY = dt.date(2026, 12, 6)
WORDS = ("red", "bicycle", "neon", "sign", "that", "says", "'OPEN'", "harbour", "at", "dusk",
         "storefront", "typography", "poster", "with", "the", "words", "日本語", "mountain")


def _view(request: mg.ImageRequest, catalog: Catalog) -> tuple[object, ...]:
    d = route(request, catalog, today=TODAY, available={"openai", "fal", "replicate"})
    return (d.choice.key if d.choice else None, d.to_dict(),
            d.explain(runners_up=100, rejected_per_group=1000))


def test_token_priced_cost_follows_the_prompt() -> None:
    """gpt-image-2 is priced by tokens: two prompts of one shape but different lengths cost
    differently, and the second route must not repeat the first one's figure."""
    catalog = Catalog.default()
    clear_cache(catalog)
    short = mg.ImageRequest(prompt="a fox", model="gpt-image-2", provider="openai",
                            quality="hero")
    long = mg.ImageRequest(prompt="a fox " + "in a very long and winding description " * 3,
                           model="gpt-image-2", provider="openai", quality="hero")
    warm_short, warm_long = _view(short, catalog), _view(long, catalog)
    clear_cache(catalog)
    assert _view(long, catalog) == warm_long
    clear_cache(catalog)
    assert _view(short, catalog) == warm_short
    costs = {d[1]["choice"]["cost_usd"] for d in (warm_short, warm_long)}  # type: ignore[index]
    assert len(costs) == 2


def test_random_prompts_on_warm_caches_match_fresh_routes() -> None:
    catalog, r = Catalog.default(), random.Random(12)
    clear_cache(catalog)
    for _ in range(300):
        words = r.choices(WORDS, k=r.choice((1, 3, 8, 20, 40)))
        request = mg.ImageRequest(prompt=" ".join(words), quality=r.choice(("draft", "hero")),
                                  n=r.choice((1, 2)))
        warm = _view(request, catalog)
        clear_cache(catalog)
        fresh = _view(request, catalog)
        assert warm == fresh, request.prompt
        # warm the memo with this prompt's shape for the next request
        _view(request, catalog)
