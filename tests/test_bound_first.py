"""Bound-first cold routing decides exactly as the exhaustive path (issue 19, part 5).

A request shape not seen before is ranked bound-first (``routing/_bound.py``): offers visited by
an upper bound on their total, planned only until the best one is proven, the rest of the
decision ranked on first read. These tests route thousands of random requests, on the shipped
catalog and on synthetic catalogs with every price kind and lifecycle, under random policies
(tie-break orders, tolerances, preferences, scoring numbers), both ways, and compare everything
a decision exposes: the choice read first (before anything forces the full ranking), then
``to_dict()`` (ranked rows with totals, reasons, flags; rejected offers with constraint and
reason; notices) and ``explain()``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import random
from pathlib import Path
from typing import Any

import pytest
from test_decisions_unchanged import _case

import modelglass as mg
from modelglass.catalog import Catalog, default_catalog_dir
from modelglass.routing import _route, clear_cache, route

TODAY = dt.date(2026, 12, 6)


def _synthetic() -> Any:
    path = Path(__file__).parents[1] / "benchmarks" / "routing.py"
    spec = importlib.util.spec_from_file_location("_bench_routing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_catalog


def _policy(r: random.Random, catalog: Catalog) -> mg.Policy:
    """A random policy: tie-break order and tolerance, preferences, scoring numbers."""
    keys = ["cost", "quality", "latency", "offer"]
    r.shuffle(keys)
    providers = sorted(catalog.providers)
    spec: dict[str, Any] = {"extends": None}
    if r.random() < 0.4:
        spec["tie_break"] = keys[:r.randint(1, 4)]
    if r.random() < 0.3:
        spec["tie_tolerance"] = r.choice((0.001, 0.01, 0.05))
    if r.random() < 0.4:
        spec["providers"] = {"prefer": {p: r.choice((-0.05, 0.02, 0.1))
                                        for p in r.sample(providers, r.randint(1, 2))}}
    if r.random() < 0.4:
        spec["models"] = {"prefer": {m: r.choice((-0.1, 0.03))
                                     for m in r.sample(sorted(catalog.models), 2)}}
    if r.random() < 0.5:
        spec["scoring"] = {"negative_bonus": r.choice((0.0, 0.03, 0.2, -0.02)),
                           "approximated_penalty": r.choice((0.0, 0.01, -0.01)),
                           "dropped_penalty": r.choice((0.0, 0.03)),
                           "deprecated_penalty": r.choice((0.02, -0.05)),
                           "unknown_cost_score": r.choice((0.0, 0.5, 1.0))}
    if r.random() < 0.2:
        spec["limits"] = {"max_cost_usd": r.choice((0.01, 0.05))}
    return mg.Policy(spec)


_LAZY = [0]  # decisions whose first row was proven before the rest was ranked


def _decide(request: mg.ImageRequest, catalog: Catalog, bound: bool, fresh: bool = True,
            **kw: Any) -> Any:
    """(choice read first, to_dict, explain) of a route, bound-first or exhaustive; ``fresh``:
    on emptied caches (else the memo and the bound-first orders of earlier requests stay)."""
    if fresh:
        clear_cache(catalog)
    old = _route.BOUND_FIRST
    _route.BOUND_FIRST = bound
    try:
        d = route(request, catalog, today=TODAY, **kw)
    except Exception as exc:  # noqa: BLE001 - a refusal is an outcome too
        return repr(exc)
    finally:
        _route.BOUND_FIRST = old
    first = d.choice.key if d.choice else None
    _LAZY[0] += d._deferred is not None
    return first, d.to_dict(), d.explain(runners_up=100, rejected_per_group=1000)


def _compare(catalog: Catalog, seed: int, count: int, policies: bool,
             warm: Catalog | None = None) -> int:
    """Route ``count`` random requests both ways; ``warm``: an equal catalog the bound-first
    path routes on while the exhaustive path routes on ``catalog``, neither emptying its caches
    between requests (so both remember the same shapes; the memo keys the prompt only through
    its signals, length and token estimate (and whole when long), the same on both sides)."""
    r = random.Random(seed)
    models, providers = sorted(catalog.models), sorted(catalog.providers)
    proven = 0
    _LAZY[0] = 0
    for _ in range(count):
        case = _case(r, models, providers)
        try:
            request = mg.ImageRequest(**case["request"])
        except Exception:  # noqa: BLE001,S112 - an invalid request never reaches routing
            continue
        kw: dict[str, Any] = {"available": case["available"]}
        if policies:
            kw["policy"] = _policy(r, catalog)
        exhaustive = _decide(request, catalog, False, fresh=warm is None, **kw)
        bounded = _decide(request, warm or catalog, True, fresh=warm is None, **kw)
        assert bounded == exhaustive, (case, kw)
        proven += isinstance(exhaustive, tuple) and exhaustive[0] is not None
    assert _LAZY[0] > proven // 3  # most choices were proven early, not all by the full path
    return proven


def test_shipped_catalog_and_policy() -> None:
    assert _compare(Catalog.default(), seed=5, count=1500, policies=False) > 500


def test_shipped_catalog_random_policies() -> None:
    assert _compare(Catalog.default(), seed=6, count=800, policies=True) > 200


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_catalogs(seed: int) -> None:
    catalog = _synthetic()(60, seed=seed)
    assert _compare(catalog, seed=seed, count=400, policies=True) > 100


def test_caches_kept_between_requests() -> None:
    """The memo (holding rankings whose rest is not ranked yet) and the bound-first orders
    shared by later shapes change nothing either."""
    make = _synthetic()
    assert _compare(make(60, seed=3), seed=3, count=500, policies=False,
                    warm=make(60, seed=3)) > 100
    shipped = Catalog.default()
    assert _compare(shipped, seed=4, count=500, policies=False,
                    warm=Catalog.load(default_catalog_dir())) > 100


def test_a_cold_route_plans_fewer_offers_than_it_ranks() -> None:
    """The point of it: the choice is proven before every offer is planned, and reading the
    rest of the decision afterwards plans the others."""
    catalog = Catalog.default()
    clear_cache(catalog)
    planned: list[str] = []
    original = _route.plan_call

    def counting(request: Any, view: Any, **kw: Any) -> Any:
        planned.append(view.key)
        return original(request, view, **kw)

    request = mg.ImageRequest(prompt="a fox in the snow", quality="hero", max_cost_usd=7.25)
    _route.plan_call = counting  # type: ignore[assignment]
    try:
        d = route(request, catalog, today=TODAY)
        assert d.choice is not None
        cold = len(planned)
        ranked = len(d.ranked)
    finally:
        _route.plan_call = original
    assert 1 <= cold < ranked
    assert len(planned) > cold  # the rest planned on first read

