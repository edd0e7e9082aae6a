"""``catalog verify``: the catalog's declarations against what the observed store saw.

Per offer with observations:

- **price**: the median of provider-reported cost ÷ the catalog's estimate for the same call;
  drift when it is off by more than ``price_tolerance`` (10 %).
- **bill**: the quote against what the provider says it billed (:mod:`._bills`: OpenAI usage ×
  the synced rates, fal's billing events, Replicate's ``predict_time`` × the hardware rate or its
  per-output price): median ratio, n, last seen; drift beyond ``bill_tolerance`` (5 %). An offer
  with no bill says "no data", never "ok".
- **latency**: the median observed latency against the catalog's ``latency.p50_s``; drift when
  more than ``latency_factor`` (2×) away either way.
- **failures**: the failure rate over recent attempts (at least ``min_events``); drift above
  ``max_failure_rate`` (25 %).
- **sizes**: a planned size the provider answered with another size; drift (the geometry is wrong).
- **pass rates**: an observed outcome-check pass rate (20 checks or more) that contradicts the
  declared score (see :func:`~._pass_rate.contradictions`).
- **seed**: the same request and seed gave different images on an offer that declares seeds.
- **controls** (``--live`` only): a changed guidance or step count with the same seed gave the
  same image on an offer that declares that control.

``live_probe`` sends, per offer, the cheapest valid request (quality ``draft``, the smallest size
the offer can make, one image), the same request again (seed reproducibility) and one each with
another guidance value and another step count, under a hard spend cap: a :class:`~modelglass.Budget` of ``max_spend_usd`` on the
probing client, and no probe whose upper-bound estimate does not fit what is left. An offer with
an unknown price is never probed (its spend cannot be bounded).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..budget import Budget
from ..catalog import Catalog, OfferView
from ..catalog._bills import BILL_TOLERANCE, bill_summary
from ..catalog._observed import ObservedStore
from ..catalog._pass_rate import contradictions
from ..client import Client
from ..errors import ModelglassError
from ..providers import PROVIDER_CLASSES, Provider, provider_class
from ..request import ImageRequest
from ._fal_bills import fetch_fal_bills

log = logging.getLogger("modelglass")

__all__ = ["Check", "Probe", "VerifyReport", "live_probe", "verify"]

Status = Literal["ok", "drift", "no data", "info"]
PROBE_PROMPT = "a small red cube on a white table, studio light"
PROBE_SEED = 1234


@dataclass(frozen=True)
class Check:
    """One comparison: ``status`` is ``ok``, ``drift``, ``no data`` or ``info``."""

    offer: str
    check: str
    status: Status
    declared: Any = None
    observed: Any = None
    detail: str = ""


@dataclass(frozen=True)
class Probe:
    """One live request: what it was for, what it cost, and what came back (or why not)."""

    offer: str
    purpose: str
    cost_usd: float | None = None
    sha256: str | None = None
    size: str | None = None
    skipped: str | None = None
    error: str | None = None


@dataclass
class VerifyReport:
    """Every check, every probe, and the spend."""

    checks: list[Check] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    spent_usd: float = 0.0
    max_spend_usd: float | None = None
    #: what the verification did besides comparing (fal bills read, a simulation's changes)
    notes: list[str] = field(default_factory=list)

    @property
    def drift(self) -> list[Check]:
        return [c for c in self.checks if c.status == "drift"]

    @property
    def ok(self) -> bool:
        return not self.drift

    @property
    def compared(self) -> list[Check]:
        """Checks that compared something (``ok`` or ``drift``): none means no data, not fine."""
        return [c for c in self.checks if c.status in ("ok", "drift")]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "compared": len(self.compared), "notes": self.notes,
                "spent_usd": round(self.spent_usd, 6),
                "max_spend_usd": self.max_spend_usd,
                "checks": [vars(c) for c in self.checks],
                "probes": [vars(p) for p in self.probes]}


def _selected(catalog: Catalog, offers: Iterable[str] | None,
              providers: Iterable[str] | None) -> list[OfferView]:
    views = catalog.offers()
    if offers:
        wanted = set(offers)
        views = [v for v in views if v.key in wanted or v.model_id in wanted]
    if providers:
        chosen = set(providers)
        views = [v for v in views if v.provider in chosen]
    return views


def verify(catalog: Catalog | None = None, store: ObservedStore | None = None, *,
           offers: Iterable[str] | None = None, providers: Iterable[str] | None = None,
           price_tolerance: float = 0.10, latency_factor: float = 2.0,
           max_failure_rate: float = 0.25, min_events: int = 5,
           bill_tolerance: float | None = None,
           env: Mapping[str, str] | None = None) -> VerifyReport:
    """Compare every selected offer's declarations and quotes with the observed store.

    ``env``: where to find a fal admin key to read pending fal bills (fal's billing events, the
    only network call; None: no call).
    """
    cat = catalog or Catalog.default()
    store = store or ObservedStore.default()
    report = VerifyReport()
    if env is not None:
        note = fetch_fal_bills(store, env)
        if note:
            report.notes.append(note)
    tol = BILL_TOLERANCE if bill_tolerance is None else bill_tolerance
    for view in _selected(cat, offers, providers):
        report.checks.extend(_checks(view, store, price_tolerance, latency_factor,
                                     max_failure_rate, min_events))
        report.checks.append(_bill_check(view, store, tol))
        # outcome checks: an observed pass rate that contradicts the declared score
        report.checks.extend(Check(view.key, *f) for f in contradictions(view, cat, store))
    return report


def _bill_check(view: OfferView, store: ObservedStore, tolerance: float) -> Check:
    import datetime as dt

    s = bill_summary(store, view.key)
    if s.ratio is None:
        why = (provider_class(view.provider).no_bill if view.provider in PROVIDER_CLASSES
               else Provider.no_bill)
        if s.pending:
            why = f"{s.pending} bill(s) pending; " + why
        return Check(view.key, "bill", "no data", detail=why)
    seen = dt.datetime.fromtimestamp(s.last_seen or 0, dt.UTC).strftime("%Y-%m-%d %H:%M")
    status: Status = "drift" if abs(s.ratio - 1) > tolerance else "ok"
    return Check(view.key, "bill", status, 1.0, round(s.ratio, 4),
                 f"billed {s.ratio:.3f}× the quote (median of {s.n}, last seen {seen} UTC; "
                 f"{', '.join(s.sources)})")


def _checks(view: OfferView, store: ObservedStore, price_tolerance: float,
            latency_factor: float, max_failure_rate: float, min_events: int) -> list[Check]:
    key = view.key
    obs = store.observations(key)
    if obs.results == 0 and obs.failures == 0:
        return [Check(key, "observations", "no data", detail="never observed")]
    out: list[Check] = []

    ratios = store.cost_ratios(key)
    if ratios:
        ratio = statistics.median(ratios)
        status: Status = "drift" if abs(ratio - 1) > price_tolerance else "ok"
        out.append(Check(key, "price", status, 1.0, round(ratio, 4),
                         f"provider-reported cost is {ratio:.2f}× the catalog's estimate "
                         f"(median of {len(ratios)})"))
    else:
        out.append(Check(key, "price", "no data", detail="no provider-reported cost"))

    lat = store.latencies(key)
    declared = view.offer.latency.p50_s if view.offer.latency else None
    if lat and declared:
        med = statistics.median(lat)
        far = med > declared * latency_factor or med < declared / latency_factor
        out.append(Check(key, "latency", "drift" if far else "ok", declared, round(med, 3),
                         f"median {med:.1f} s over {len(lat)} results vs declared p50 "
                         f"{declared:g} s"))
    elif lat:
        out.append(Check(key, "latency", "info", None, round(statistics.median(lat), 3),
                         "the catalog declares no latency"))

    events = obs.results + obs.failures
    if obs.failure_rate is not None and events >= min_events:
        status = "drift" if obs.failure_rate > max_failure_rate else "ok"
        out.append(Check(key, "failures", status, max_failure_rate, round(obs.failure_rate, 3),
                         f"{obs.failures} of {events} attempts failed "
                         f"({', '.join(f'{t} ×{n}' for t, n in obs.error_types.items()) or 'none'})"))

    if obs.size_changes:
        out.append(Check(key, "sizes", "drift", list(obs.size_changes), obs.size_changes,
                         "asked for " + ", ".join(f"{a} got {b}" for a, b in
                                                  obs.size_changes.items())))
    elif obs.sizes:
        out.append(Check(key, "sizes", "ok", None, list(obs.sizes)))

    if obs.seed_groups:
        declares = view.controls.seed
        if obs.seed_mismatches and declares:
            out.append(Check(key, "seed", "drift", True, False,
                             f"{obs.seed_mismatches} of {obs.seed_groups} repeated requests with "
                             "the same seed gave different images"))
        elif obs.seed_mismatches == 0 and declares is not True:
            out.append(Check(key, "seed", "info", declares, True,
                             "same seed, same image: the offer appears to honour seeds"))
        else:
            out.append(Check(key, "seed", "ok", declares, not obs.seed_mismatches))
    return out


# ------------------------------------------------------------------------------------------------
# Live probes
# ------------------------------------------------------------------------------------------------
def _smallest_size(view: OfferView) -> str:
    g = view.geometry
    fixed = list(g.sizes or []) + list((g.aspect_ratios or {}).values())
    if fixed:
        return min(fixed, key=lambda s: int(s.split("x")[0]) * int(s.split("x")[1]))
    side = max(g.min_side or 512, 512)
    if g.multiple_of:
        side = -(-side // g.multiple_of) * g.multiple_of
    return f"{side}x{side}"


def live_probe(catalog: Catalog | None = None, store: ObservedStore | None = None, *,
               max_spend_usd: float, offers: Iterable[str] | None = None,
               providers: Iterable[str] | None = None, client: Any = None,
               **checks: Any) -> VerifyReport:
    """Probe the selected offers for real, under ``max_spend_usd``, then :func:`verify` them.

    Only offers whose provider is available here (a key, or a GPU and weights) are probed.
    """
    cat = catalog or Catalog.default()
    store = store or ObservedStore.default()
    if not store.enabled:  # observing is off: keep the probes' observations for this run only
        store = ObservedStore(":memory:")
    budget = Budget(max_spend_usd)
    own = client is None
    client = client or Client(catalog=cat, budget=budget)
    if client.budget is None:
        client.budget = budget
    client.observed = store
    report = VerifyReport(max_spend_usd=max_spend_usd)
    views = _selected(cat, offers, providers)
    seen_pairs: set[tuple[str, str]] = set()
    try:
        for view in views:
            pair = (view.model_id, view.provider)
            if pair in seen_pairs:
                continue  # the router picks among offers of one model on one provider
            seen_pairs.add(pair)
            if view.model.lifecycle.status_on().value == "retired":
                report.probes.append(Probe(view.key, "base", skipped="retired"))
                continue
            if not client.availability(view.provider).ok:
                report.probes.append(Probe(view.key, "base", skipped=f"{view.provider} is not "
                                           "available here (no key / no GPU)"))
                continue
            report.checks.extend(_probe_offer(client, view, budget, report))
    finally:
        if own:
            client.close()
    report.spent_usd = budget.spent
    probed = {p.offer for p in report.probes if p.sha256}
    after = verify(cat, store, offers=sorted(probed), **checks) if probed else VerifyReport()
    report.checks = after.checks + report.checks
    return report


def _probe_offer(client: Any, view: OfferView, budget: Any, report: VerifyReport) -> list[Check]:
    size = _smallest_size(view)
    base = {"prompt": PROBE_PROMPT, "model": view.model_id, "provider": view.provider,
            "quality": "draft", "size": size, "n": 1}
    g = view.controls.guidance
    seeds = view.controls.seed is not False
    runs: list[tuple[str, dict[str, Any]]] = [("base", {"seed": PROBE_SEED} if seeds else {})]
    if seeds:
        runs.append(("same seed", {"seed": PROBE_SEED}))
    if g is not None and g.kind.value != "none" and g.min is not None and g.max is not None \
            and g.max > g.min:
        runs.append(("other guidance", {"seed": PROBE_SEED, "cfg": g.min if g.default != g.min
                                        else g.max}))
    st = view.controls.steps
    if st is not None and st.min is not None and st.max is not None and st.max > st.min:
        other = int(st.min) if st.default != st.min else int(st.max)
        runs.append(("other steps", {"seed": PROBE_SEED, "steps": other}))
    shas: dict[str, str] = {}
    for purpose, extra in runs:
        request = {**base, **extra}
        try:
            # Planned on this very offer (no routing): the estimate's bound decides, and the
            # spend cap, not the draft axis's per-image ceiling, bounds the probe.
            call = client.plan_offer(ImageRequest(**request), view.key)
        except ModelglassError as exc:
            report.probes.append(Probe(view.key, purpose, skipped=f"cannot plan: {exc}"))
            break
        bound = call.estimate.max_usd
        if bound is None:
            report.probes.append(Probe(view.key, purpose, skipped="price unknown: the spend "
                                       "cannot be bounded"))
            break
        if bound > budget.remaining + 1e-12:
            report.probes.append(Probe(view.key, purpose, skipped=f"up to ${bound:.4f} does not "
                                       f"fit the ${budget.remaining:.4f} left of --max-spend"))
            break
        try:
            result = client.generate(**request, max_cost_usd=max(budget.remaining, 1e-9))
        except ModelglassError as exc:
            report.probes.append(Probe(view.key, purpose, error=f"{type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0]}"))
            break
        img = result.images[0]
        shas[purpose] = img.sha256
        report.probes.append(Probe(result.plan.offer.key if result.plan else view.key, purpose,
                                   result.cost_usd, img.sha256, f"{img.width}x{img.height}"))
    out: list[Check] = []
    for control in ("guidance", "steps"):
        probe = f"other {control}"
        if probe in shas and "base" in shas:
            same = shas[probe] == shas["base"]
            out.append(Check(view.key, f"controls: {control}", "drift" if same else "ok",
                             f"{control} changes the image", "unchanged" if same else "changed",
                             f"another {control} value with the same seed gave "
                             + (f"the same image: {control} appears ignored" if same else
                                "a different image")))
    return out
