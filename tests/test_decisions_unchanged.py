"""The guard for refactors (issue 19): routing decisions and planned payloads stay as they were.

A seeded generator makes :data:`COUNT` random requests (prompt kinds, qualities, sizes / aspect
ratios / print sizes, n, seeds, negative prompts, cfg / steps, samplers, ceilings, pins, provider
sets, strict) and routes each through the public API on the shipped catalog and policy, on the
pinned date; each request is also planned directly on two random offers. Every outcome is reduced
to a compact record (choice, ranked keys, rejected keys with their constraint, and for each plan
the payload, fates, chunks and estimate, or the error's type and field) whose SHA-256 prefix is
compared with ``tests/data/decisions.sha``, one line per request.

No observed latencies and no health board take part (``tests/conftest.py`` turns the observed
store off and the health board is not passed); drawn seeds are masked.

A change that is MEANT to change decisions (catalog data, ranking rules) regenerates the file on
purpose, and the diff of the digests shows how many requests moved::

    MODELGLASS_CATALOG_OVERLAY= MODELGLASS_TODAY=2026-12-06 python tests/test_decisions_unchanged.py --regenerate
    python tests/test_decisions_unchanged.py --show 17     # request 17 and its record, as JSON
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TODAY = dt.date(2026, 12, 6)
SEED = 19
COUNT = 1500  # ~3 s on the 2-core dev machine; the golden file holds one line per request
GOLDEN = Path(__file__).parent / "data" / "decisions.sha"

_PROMPTS = (
    "a fox in the snow",
    "a storefront sign that says 'GRAND OPENING' in neon",
    "three cats sitting left of a red sofa",
    "a poster reading “SUMMER SALE” with two dogs in the foreground",
    "portrait photo, 85mm, soft light",
    "an isometric city " * 40,  # long: prompt limits and encoder windows
    "a watercolour lighthouse at dusk, “Cape Light” written below",
)
_QUALITIES = ("draft", "thumbnail", "hero", "print", None)
_SIZES = ("1024x1024", "1536x1024", "1024x1536", "512x512", "2048x2048", "1920x1080", "768x1344",
          "4096x4096")
_ASPECTS = ("1:1", "3:2", "2:3", "16:9", "9:16", "4:5", "21:9")
_PRINTS = ("8x10in", "A4", "20x30cm", "4x6in")
_PROVIDER_SETS = (None, ("fal",), ("openai",), ("replicate",), ("fal", "replicate"),
                  ("fal", "openai", "replicate"), ("local",), ())
_SAMPLERS = (None, "euler", "dpmpp_2m_karras", "lcm")


def _maybe(r: random.Random, p: float, value: Any) -> Any:
    return value if r.random() < p else None


def _case(r: random.Random, models: list[str], providers: list[str]) -> dict[str, Any]:
    """One request's fields and routing context, drawn from ``r``."""
    kw: dict[str, Any] = {"prompt": r.choice(_PROMPTS)}
    quality = r.choice(_QUALITIES)
    if quality is not None:
        kw["quality"] = quality
    geometry = r.random()
    if geometry < 0.3:
        kw["size"] = r.choice(_SIZES)
    elif geometry < 0.5:
        kw["aspect_ratio"] = r.choice(_ASPECTS)
    elif geometry < 0.6:
        kw["print_size"] = r.choice(_PRINTS)
        if r.random() < 0.5:
            kw["dpi"] = r.choice((150, 300))
    extra = {
        "n": r.choice((1, 1, 1, 2, 4, 9)),
        "seed": _maybe(r, 0.4, r.choice((0, 7, 2**31 + 5, 2**32 - 1))),
        "negative_prompt": _maybe(r, 0.3, "blurry, watermark"),
        "cfg": _maybe(r, 0.3, r.choice((0.5, 1.0, 3.5, 7.0, 30.0))),
        "steps": _maybe(r, 0.3, r.choice((1, 4, 28, 80))),
        "sampler": r.choice(_SAMPLERS) if r.random() < 0.15 else None,
        "max_cost_usd": _maybe(r, 0.15, r.choice((0.001, 0.01, 0.05, 0.5))),
        "strict": r.random() < 0.15,
        "commercial": r.random() < 0.1,
        "model": _maybe(r, 0.1, r.choice(models)),
        "provider": _maybe(r, 0.08, r.choice(providers)),
    }
    kw.update({k: v for k, v in extra.items() if v not in (None, False)})
    pset = r.choice(_PROVIDER_SETS)
    return {"request": kw, "available": list(pset) if pset is not None else None,
            "plan_on": [r.randrange(1 << 30) for _ in range(2)]}


def _cases(count: int = COUNT) -> Iterator[dict[str, Any]]:
    import modelglass as mg

    catalog = mg.Catalog.default()
    models = sorted(catalog.models)
    providers = sorted({o.provider for o in catalog.offers()})
    r = random.Random(SEED)
    for _ in range(count):
        yield _case(r, models, providers)


def _error(e: Exception) -> dict[str, Any]:
    return {"error": type(e).__name__, "field": getattr(e, "field", None)}


def _call_record(call: Any) -> dict[str, Any]:
    """What a plan sends and promises; a drawn seed (random by design) is masked."""
    drawn = set(call.planned.seeds or ()) if call.seed_drawn else set()

    def mask(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: mask(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [mask(x) for x in v]
        if isinstance(v, int) and not isinstance(v, bool) and v in drawn:
            return "<drawn seed>"
        return v

    d = call.to_dict()
    return {"offer": d["offer"], "payload": mask(d["payload"]), "size": d["size"],
            "chunks": d["chunks"], "seeds": mask(d["seeds"]), "fates": d["fates"],
            "estimate": d["estimate"], "upscale": d["upscale"], "notes": d["notes"]}


def record(case: dict[str, Any]) -> dict[str, Any]:
    """The compact outcome of one case: the decision and a few plans."""
    import modelglass as mg
    from modelglass.plan import plan_call
    from modelglass.routing import route

    catalog = mg.Catalog.default()
    try:
        request = mg.ImageRequest(**case["request"])
    except Exception as e:  # noqa: BLE001 - an invalid request is an outcome too
        return {"request": _error(e)}
    out: dict[str, Any] = {}
    try:
        decision = route(request, catalog, available=case["available"], today=TODAY)
    except Exception as e:  # noqa: BLE001
        out["route"] = _error(e)
    else:
        out["choice"] = decision.choice.key if decision.choice else None
        out["ranked"] = [(c.key, round(c.total, 9)) for c in decision.ranked]
        out["rejected"] = [(r.offer_key, r.constraint) for r in decision.rejected]
        out["notices"] = decision.notices
        if decision.choice is not None:
            out["call"] = _call_record(decision.choice.call)
    offers = catalog.offers(include_retired=False)
    plans = []
    for pick in case["plan_on"]:
        offer = offers[pick % len(offers)]
        try:
            plans.append(_call_record(plan_call(request, offer, today=TODAY)))
        except Exception as e:  # noqa: BLE001
            plans.append({"offer": offer.key, **_error(e)})
    out["plans"] = plans
    return out


def digest(rec: dict[str, Any]) -> str:
    text = json.dumps(rec, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current() -> list[str]:
    from modelglass.routing import clear_cache

    clear_cache()  # every shape planned cold, as a refactor of the ranking would
    return [digest(record(case)) for case in _cases()]


def test_decisions_and_payloads_unchanged() -> None:
    golden = GOLDEN.read_text().split()
    now = current()
    assert len(golden) == len(now) == COUNT
    moved = [i for i, (a, b) in enumerate(zip(golden, now, strict=True)) if a != b]
    assert not moved, (
        f"{len(moved)} of {COUNT} decisions or payloads changed (first: requests {moved[:10]}). "
        "See one with `python tests/test_decisions_unchanged.py --show N`; if the change is "
        "intended, regenerate with `--regenerate` (see the module docstring) and say so.")


def test_the_cases_cover_what_they_claim() -> None:
    """The generator reaches pins, strict, every geometry kind, and both outcomes."""
    cases = list(_cases(300))
    fields = {k for c in cases for k in c["request"]}
    assert {"size", "aspect_ratio", "print_size", "model", "provider", "strict", "seed",
            "negative_prompt", "cfg", "steps", "sampler", "max_cost_usd"} <= fields
    records = [record(c) for c in cases[:60]]
    assert any(r.get("choice") for r in records)
    assert any("route" in r or r.get("choice") is None for r in records)
    assert any("error" in p for r in records for p in r["plans"])


def _main(argv: list[str]) -> None:
    os.environ.setdefault("MODELGLASS_CATALOG_OVERLAY", "")
    os.environ.setdefault("MODELGLASS_OBSERVE", "0")
    os.environ.setdefault("MODELGLASS_TODAY", TODAY.isoformat())
    if argv[:1] == ["--regenerate"]:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("\n".join(current()) + "\n")
        print(f"wrote {COUNT} digests to {GOLDEN}")
    elif argv[:1] == ["--show"] and len(argv) == 2:
        case = list(_cases(int(argv[1]) + 1))[-1]
        print(json.dumps({"case": case, "record": record(case)}, indent=1, default=str))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    _main(sys.argv[1:])
