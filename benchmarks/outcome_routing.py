"""Benchmark: cost per accepted image with check-fed routing against the static router.

Not a test. Run it and read the table::

    python benchmarks/outcome_routing.py            # --jobs 60 for a shorter run

One process, the built-in simulators, the shipped catalog, the default policy. The workload is
the shipped text suite's English prompts (quoted text, 1–8 words), cycled to ``--jobs`` jobs on
the ``hero`` axis, one image each, run one after another with ``check=["text"]``: every image is
read by the real text check (RapidOCR), and an image is *accepted* when the check passes.

The simulators spell each model's quoted text right with a scripted probability
(``sim.text_accuracy``). Three scenarios:

- ``scores right``: every model's true pass rate is what its catalog score says
  (``text_rendering / 10``; 0.5 where the score is unknown);
- ``static pick overrated``: the same, except the static router's choice spells worse than its
  score claims (true rate 0.40);
- ``learned pick overrated``: the same, except the model the check-fed router turns to first
  (cheapest price ÷ prior) spells far worse than its score claims (true rate 0.10): learning
  must notice and move on, and pays for finding out.

Each scenario runs twice on the same jobs and seeds: the **static** router (the policy's
``learning: {enabled: false}``: the quality/cost trade, as before issue 14) and the
**check-fed** router (the default policy: each verdict goes to an observed store; once an offer
has ``min_samples`` checks, routing ranks by price ÷ pass probability). Target: check-fed cost
per accepted image at least 25 % lower than static.
"""

from __future__ import annotations

import argparse
import collections
import functools
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modelglass as mg
from modelglass._eval import load_suite
from modelglass.catalog._observed import ObservedStore
from modelglass.catalog._pass_rate import declared_prior
from modelglass.routing import Policy
from modelglass.testing import simulate

QUALITY = "hero"
print = functools.partial(print, flush=True)  # lines appear as each run ends
PROVIDERS = ["openai", "fal", "replicate"]


def truth(catalog: mg.Catalog, wrong: dict[str, float]) -> dict[str, float]:
    """Each model's true pass rate: its declared prior, or the scenario's override."""
    return {m: wrong.get(m, declared_prior(catalog, m, "text")[0]) for m in catalog.models}


def run(policy: Policy, rates: dict[str, float], prompts: list[str]) -> dict[str, Any]:
    """Every job in order on fresh simulators and a fresh observed store; what it cost and
    how many images passed, per offer."""
    per_offer: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0, 0.0])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, simulate() as sim:
        for model, p in rates.items():
            sim.text_accuracy(model, p)
        store = ObservedStore(Path(tmp) / "observed.sqlite")
        with mg.Client(available=PROVIDERS, observed=store, policy=policy) as client:
            for i, prompt in enumerate(prompts):
                r = client.generate(prompt, quality=QUALITY, seed=7000 + i, check=["text"])
                row = per_offer[r.plan.offer.key if r.plan else "?"]
                row[0] += 1
                row[1] += sum(c.verdict == "pass" for c in r.checks if c.name == "text")
                row[2] += r.cost_usd or 0.0
    jobs = sum(int(r[0]) for r in per_offer.values())
    passed = sum(int(r[1]) for r in per_offer.values())
    cost = sum(r[2] for r in per_offer.values())
    return {"jobs": jobs, "passed": passed, "cost_usd": cost,
            "per_accepted": cost / passed if passed else float("inf"),
            "offers": {k: (int(v[0]), int(v[1])) for k, v in per_offer.items()},
            "wall_s": time.monotonic() - t0}


def picks(catalog: mg.Catalog) -> tuple[str, str]:
    """The static router's choice, and the model the check-fed router turns to once learning
    engages (cheapest price ÷ prior)."""
    with simulate():
        client = mg.Client(available=PROVIDERS, observed=False)
        # the jobs' own shape: a seed is given (offers that drop it lose a little)
        d = client.route('a shop sign that says "OPEN"', quality=QUALITY, seed=7000)
    assert d.choice is not None
    best = min((c for c in d.ranked if c.cost_per_image_usd),
               key=lambda c: c.cost_per_image_usd / declared_prior(catalog, c.model, "text")[0])
    return d.choice.model, best.model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100)
    args = ap.parse_args()
    catalog = mg.Catalog.default()
    english = [p.prompt for p in load_suite("text").prompts if p.lang == "en"]
    prompts = [english[i % len(english)] for i in range(args.jobs)]
    static = Policy({"learning": {"enabled": False}})
    learned = Policy()
    static_pick, learned_pick = picks(catalog)
    scenarios: dict[str, dict[str, float]] = {
        "scores right": {},
        f"static pick overrated ({static_pick} true rate 0.40)": {static_pick: 0.40},
        f"learned pick overrated ({learned_pick} true rate 0.10)": {learned_pick: 0.10}}
    print(f"outcome_routing.py — {args.jobs} quoted-text jobs on '{QUALITY}', one after another; "
          f"{platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}; learning: {learned.learning.model_dump()}")
    for name, wrong in scenarios.items():
        rates = truth(catalog, wrong)
        a = run(static, rates, prompts)
        b = run(learned, rates, prompts)
        print(f"\nScenario: {name}")
        print(f"  {'router':<11} {'accepted':>9} {'spent':>9} {'per accepted':>13}  offers used "
              f"(jobs, passed)")
        for label, res in (("static", a), ("check-fed", b)):
            used = ", ".join(f"{k} ({n}, {p})" for k, (n, p) in
                             sorted(res["offers"].items(), key=lambda kv: -kv[1][0]))
            print(f"  {label:<11} {res['passed']:>4}/{res['jobs']:<4} ${res['cost_usd']:>8.4f} "
                  f"${res['per_accepted']:>12.5f}  {used}")
        change = 1 - b["per_accepted"] / a["per_accepted"]
        verdict = "meets" if change >= 0.25 else "misses"
        how = f"{change:.0%} lower" if change >= 0 else f"{-change:.0%} higher"
        print(f"  check-fed cost per accepted image is {how} than static ({verdict} the ≥ 25 % "
              f"target); wall {a['wall_s']:.0f} s + {b['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
