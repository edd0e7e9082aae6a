r"""Benchmark: how long ``route()`` takes, against LiteLLM Router's deployment selection.

Not a test. Run it and read the table::

    python benchmarks/routing.py            # add --quick for fewer repetitions

It measures, side by side in one process:

- ``route()`` on the shipped catalog and on synthetic catalogs of 50 and 5,000 offers;
  *warm* = a request shape seen before (the memoised ranking; prompts differ every call),
  *cold* = a new request shape every call (a new budget: ranked bound-first; the catalog index,
  the bound-first order of the shape's screening fields and the plans, none of which a budget
  changes, kept), *cold\** = the same with that order dropped
  before each call too (the steps before planning run for every offer),
  *new plans* = a new ``cfg`` every call (a new plan shape: every offer the walk visits is
  planned; the unfitted estimates, which do not read ``cfg``, kept), *plans\** = the same with
  those estimates dropped before each call too, *exhaustive* = a new shape ranked the old way, every offer planned and scored (what a cold
  decision costs once its full ranking or rejection list is read);
- LiteLLM ``Router(model_list=[N deployments]).get_available_deployment(model=..., messages=...)``
  with its default routing strategy (simple-shuffle) over the same N, when litellm is importable
  (``pip install litellm``; it is not a modelglass dependency; without it the script says so);
- the ratios: route() ÷ LiteLLM at equal N (target ≤ 0.1×), and 5,000 offers ÷ 50 (target ≤ 120×).

Every figure is a median of per-call wall times (``time.perf_counter``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelglass.catalog import Catalog
from modelglass.catalog._schema import Model, QualityAxis, Settings
from modelglass.request import ImageRequest
from modelglass.routing import _route, clear_cache, route
from modelglass.routing._index import _index

TODAY = dt.date(2026, 11, 1)
PROVIDERS = ("fal", "replicate", "openai", "local")
PROMPTS = ["a lighthouse at dusk, oil painting", "a red bicycle against a brick wall",
           "a bowl of ramen, studio photo", "a fox in the snow, watercolor",
           "an isometric city at night", "a portrait of an old fisherman"]


# -- synthetic catalogs -----------------------------------------------------------------------
def _axes() -> dict[str, QualityAxis]:
    def ax(**kw: Any) -> QualityAxis:
        return QualityAxis.model_validate({"description": "synthetic", **kw})

    return {
        "draft": ax(weights={"prompt_adherence": 1, "speed": 1.5}, minimums={"speed": 5},
                    cost_weight=0.6, cost_reference_usd=0.003, max_cost_usd=0.02),
        "thumbnail": ax(weights={"speed": 2, "prompt_adherence": 1}, target_size="512x512",
                        cost_weight=0.6, cost_reference_usd=0.005),
        "hero": ax(weights={"prompt_adherence": 3, "photorealism": 2, "composition": 2,
                            "text_rendering": 1}, minimums={"prompt_adherence": 5},
                   target_size="1536x1024", cost_weight=0.1, cost_reference_usd=0.05),
        "print": ax(weights={"resolution": 3, "photorealism": 3}, target_size="2048x2048",
                    cost_weight=0.2, cost_reference_usd=0.08, min_megapixels=3.5),
    }


def _price(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["per_image", "per_image", "per_megapixel", "per_tier", "gpu_seconds",
                       "unknown"])
    if kind == "per_image":
        return {"kind": kind, "usd": round(rng.uniform(0.002, 0.12), 4)}
    if kind == "per_megapixel":
        return {"kind": kind, "usd_per_megapixel": round(rng.uniform(0.003, 0.06), 4)}
    if kind == "per_tier":
        return {"kind": kind, "tiers": {t: {"1024x1024": v, "1536x1024": v * 1.5}
                                        for t, v in (("low", 0.01), ("medium", 0.04),
                                                     ("high", 0.17))},
                "tier_for_quality": {"draft": "low", "hero": "high"}, "default_tier": "medium"}
    if kind == "gpu_seconds":
        return {"kind": kind, "seconds": round(rng.uniform(0.3, 25), 2), "at_steps": 30}
    return {"kind": "unknown"}


def synthetic_catalog(n_offers: int, seed: int = 0) -> Catalog:
    """``n_offers`` offers over ~n/3 models, with varied scores, prices, controls and lifecycles."""
    rng = random.Random(seed)
    models: dict[str, Model] = {}
    made = 0
    i = 0
    while made < n_offers:
        k = min(n_offers - made, rng.choice([1, 2, 3, 4, 4]))
        providers = rng.sample(PROVIDERS, k)
        status = rng.choices(["active", "deprecated", "retired"], [8, 1, 1])[0]
        priors = {ax: {"value": round(rng.uniform(1, 10), 1), "reason": "synthetic"}
                  for ax in ("prompt_adherence", "photorealism", "text_rendering", "style_range",
                             "composition", "speed", "resolution") if rng.random() < 0.85}
        distilled = rng.random() < 0.3
        controls: dict[str, Any] = {
            "negative_prompt": "none" if distilled else rng.choice(["native", "true-cfg-extra"]),
            "guidance": {"kind": "none"} if distilled else
            {"kind": "true-cfg", "min": 1, "max": 20, "default": 7},
            "steps": {"min": 1, "max": 8, "default": 4} if distilled else
            {"min": 1, "max": 50, "default": 30},
            "seed": rng.random() < 0.9, "max_images_per_call": rng.choice([1, 4])}
        geometry: dict[str, Any] = (
            {"sizes": ["1024x1024", "1536x1024", "1024x1536"]} if rng.random() < 0.3 else
            {"multiple_of": rng.choice([8, 16, 32]), "min_side": 256,
             "max_side": rng.choice([1440, 2048, 4096]),
             "max_megapixels": rng.choice([1.1, 2.1, 4.2, 8.3])})
        models[f"syn-{i}"] = Model.model_validate({
            "name": f"Synthetic {i}", "family": f"family-{i % 17}",
            "licence": {"id": "synthetic", "commercial_use": rng.choice([True, True, False,
                                                                          None])},
            "lifecycle": {"status": status,
                          **({"replacement": "syn-0"} if status != "active" else {}),
                          **({"shutdown_on": "2026-12-01"} if status == "deprecated" else {})},
            "priors": priors, "controls": controls, "geometry": geometry,
            "offers": [{"provider": p, "endpoint": f"{p}/syn-{i}", "as_of": "2026-11-01",
                        "source": "SYN", "price": _price(rng)} for p in providers]})
        made += k
        i += 1
    settings = Settings(providers={p: p for p in PROVIDERS}, sources={"SYN": "synthetic"})
    return Catalog(settings, _axes(), models)


# -- timing -----------------------------------------------------------------------------------
def median_us(fn: Callable[[int], object], reps: int, warmup: int = 3) -> float:
    for i in range(warmup):
        fn(-1 - i)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def bench_route(cat: Catalog, reps: int, cold_reps: int, available: set[str]) -> dict[str, float]:
    clear_cache(cat)
    t0 = time.perf_counter()
    route(ImageRequest(prompt="warm-up", quality="hero"), cat, available=available, today=TODAY)
    first = (time.perf_counter() - t0) * 1e6

    def warm(i: int) -> object:
        d = route(ImageRequest(prompt=PROMPTS[i % len(PROMPTS)], quality="hero"), cat,
                  available=available, today=TODAY)
        return d.choice

    counter = iter(range(10**9))

    def cold(i: int) -> object:
        # A budget never seen before makes a new request shape (its plans are shared).
        d = route(ImageRequest(prompt=PROMPTS[i % len(PROMPTS)], quality="hero",
                               max_cost_usd=1000 + next(counter) * 1e-3), cat,
                  available=available, today=TODAY)
        return d.choice

    def cold_plans(i: int) -> object:
        # A guidance scale never seen before: a new plan shape too (its cfg fates and payloads
        # differ), so every offer the walk visits is planned.
        d = route(ImageRequest(prompt=PROMPTS[i % len(PROMPTS)], quality="hero",
                               cfg=3 + (next(counter) % 10**6) * 1e-5), cat,
                  available=available, today=TODAY)
        return d.choice

    def cold_unshared(i: int) -> object:
        _index(cat).orders.clear()
        return cold(i)

    def cold_plans_unshared(i: int) -> object:
        _index(cat).estimates.clear()  # the unfitted estimates made again too
        return cold_plans(i)

    def exhaustive(i: int) -> object:
        _route.BOUND_FIRST = False
        try:
            return cold_plans(i)
        finally:
            _route.BOUND_FIRST = True

    return {"first": first, "warm": median_us(warm, reps), "cold": median_us(cold, cold_reps),
            "cold*": median_us(cold_unshared, cold_reps),
            "new plans": median_us(cold_plans, cold_reps),
            "plans*": median_us(cold_plans_unshared, cold_reps),
            "exhaustive": median_us(exhaustive, max(3, cold_reps // 2))}


def bench_litellm(n: int, reps: int) -> float | None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
    try:
        import litellm
        from litellm import Router
    except ImportError:
        return None
    litellm.suppress_debug_info = True
    model_list = [{"model_name": "image-model",
                   "litellm_params": {"model": f"openai/model-{i}", "api_key": "sk-bench",
                                      "api_base": f"http://127.0.0.1:9/{i}"},
                   "model_info": {"id": f"deployment-{i}"}} for i in range(n)]
    router = Router(model_list=model_list)  # default routing_strategy: simple-shuffle
    messages = [{"role": "user", "content": "a lighthouse at dusk"}]

    def select(i: int) -> object:
        return router.get_available_deployment(model="image-model", messages=messages)

    return median_us(select, reps)


def _fmt(us: float | None) -> str:
    if us is None:
        return "n/a"
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.3f}×"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    reps, cold_small, cold_big, ll_reps = (50, 20, 3, 20) if args.quick else (500, 200, 15, 200)
    available = set(PROVIDERS)

    print(f"python {platform.python_version()} on {platform.machine()} ({platform.system()})")
    rows: list[tuple[str, int, dict[str, float]]] = []
    shipped = Catalog.default()
    rows.append(("shipped", len(shipped.offers()), bench_route(shipped, reps, cold_small,
                                                               available)))
    for n in (50, 5000):
        cat = synthetic_catalog(n)
        cold_reps = cold_small if n <= 100 else cold_big
        rows.append((f"synthetic-{n}", n, bench_route(cat, reps, cold_reps, available)))

    litellm_us: dict[int, float | None] = {}
    for n in sorted({r[1] for r in rows}):
        litellm_us[n] = bench_litellm(n, ll_reps if n <= 100 else max(20, ll_reps // 5))

    print()
    print(f"{'catalog':<14}{'offers':>7}{'warm':>10}{'cold':>11}{'cold*':>11}{'new plans':>11}"
          f"{'plans*':>11}{'exhaustive':>12}{'first':>11}{'LiteLLM':>11}{'warm/LL':>9}{'cold/LL':>9}"
          f"{'cold*/LL':>9}{'plans/LL':>9}{'plans*/LL':>10}{'exh/LL':>9}")
    for name, n, r in rows:
        ll = litellm_us[n]
        print(f"{name:<14}{n:>7}{_fmt(r['warm']):>10}{_fmt(r['cold']):>11}{_fmt(r['cold*']):>11}"
              f"{_fmt(r['new plans']):>11}{_fmt(r['plans*']):>11}{_fmt(r['exhaustive']):>12}{_fmt(r['first']):>11}"
              f"{_fmt(ll):>11}{_ratio(r['warm'], ll):>9}{_ratio(r['cold'], ll):>9}"
              f"{_ratio(r['cold*'], ll):>9}{_ratio(r['new plans'], ll):>9}"
              f"{_ratio(r['plans*'], ll):>10}"
              f"{_ratio(r['exhaustive'], ll):>9}")
    small = next(r for name, n, r in rows if n == 50)
    big = next(r for name, n, r in rows if n == 5000)
    print()
    print(f"5,000 vs 50 offers: warm {big['warm'] / small['warm']:.1f}×, "
          f"cold {big['cold'] / small['cold']:.1f}× (target ≤ 120×)")
    ll50, ll5k = litellm_us.get(50), litellm_us.get(5000)
    if ll50 is None:
        print("LiteLLM: not installed (pip install litellm to compare); ratios skipped")
    else:
        print(f"route() ÷ LiteLLM selection (target ≤ 0.1×): 50 offers warm "
              f"{_ratio(small['warm'], ll50)}, cold {_ratio(small['cold'], ll50)} "
              f"(cold* {_ratio(small['cold*'], ll50)}); "
              f"5,000 offers warm {_ratio(big['warm'], ll5k)}, cold {_ratio(big['cold'], ll5k)}")
        print(f"LiteLLM 5,000 vs 50 deployments: {_ratio(ll5k, ll50)}")
    print("warm: a request shape routed before (memoised ranking, new prompt each call); "
          "cold: a new shape each call (a new budget), bound-first (screening order and plans "
          "shared: planning does not read the budget); cold*: the same, the screening order "
          "dropped; new plans: a new cfg each call, so every offer visited is planned (unfitted "
          "estimates, which do not read cfg, shared); plans*: the same, the estimates dropped; "
          "exhaustive: every offer planned; first: includes the per-catalog index.")


if __name__ == "__main__":
    main()
