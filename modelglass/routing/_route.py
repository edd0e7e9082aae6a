"""``route()``: rank every offer in the catalog for one request, and say why. Pure: no I/O.

Per offer, in order (the first failure is the rejection's constraint):

1. ``pin``: ``request.model`` / ``request.provider`` restrict the candidates;
2. ``lifecycle``: retired models, and deprecated ones whose ``shutdown_on`` has passed, are out;
3. ``availability``: the provider (or, via a callable, the offer) must be usable from here;
4. ``licence``: ``commercial=True`` needs ``commercial_use: true`` (unverified does not pass);
5. ``minimum``: the quality axis's hard minimums (an unknown score fails, saying so);
6. ``resolution``: the axis's ``min_megapixels`` (print), unless ``Policy.upscale_available``;
7. ``strict`` / ``geometry`` / ``plan``: :func:`~modelglass.plan.plan_call` refuses the request
   (strict mode, an impossible size, or another planning problem, with the planner's message);
8. ``budget``: the plan's estimate against ``max_cost_usd`` (or the axis's per-image ceiling);
   an unknown price cannot pass a ceiling.

Passing offers are scored (see :mod:`._policy`) and sorted: total desc, cost asc, offer key.

Speed: the catalog's per-offer facts and each model's weighted quality are computed once per
catalog and axis. The ranking itself depends on the prompt only through its signals (and its
length against prompt limits), so it is memoised per request *shape*; a repeat shape skips
planning and only plans the candidates whose ``call`` is read.
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..catalog._schema import Status
from ..errors import InvalidRequest
from ..plan import plan_call
from ..result import FateKind
from ._decision import Rejection, RoutingDecision, Row
from ._policy import DEFAULT_POLICY, ModelQuality, Policy, cost_score, model_quality, signal_weights
from ._signals import Signals, prompt_signals

if TYPE_CHECKING:
    from ..catalog import Catalog, OfferView, QualityAxis
    from ..plan import ProviderCall
    from ..providers.base import Availability, Provider
    from ..request import ImageRequest

__all__ = ["clear_cache", "route"]

Available = Callable[["OfferView"], "Availability"] | Iterable[str] | None

#: Rows kept in the memo per catalog, summed over entries (bounds memory on huge catalogs).
_MEMO_ROWS = 200_000


class _Facts:
    """What routing reads of one offer, flattened once per catalog (no pydantic in the loop)."""

    __slots__ = (
        "commercial",
        "key",
        "licence_id",
        "max_mp",
        "model_id",
        "provider",
        "replacement",
        "shutdown_on",
        "status",
    )

    def __init__(self, view: OfferView) -> None:
        m = view.model
        self.key = view.key
        self.model_id = view.model_id
        self.provider = view.provider
        self.status = m.lifecycle.status
        self.shutdown_on = m.lifecycle.shutdown_on
        self.replacement = m.lifecycle.replacement
        self.commercial = m.licence.commercial_use
        self.licence_id = m.licence.id
        self.max_mp = view.geometry.max_mp()


class _Index:
    """Per-catalog caches: offer facts, model quality per axis/signals, and the ranking memo."""

    def __init__(self, catalog: Catalog) -> None:
        self.views = catalog.offers(include_retired=True)
        self.facts = [_Facts(v) for v in self.views]
        self.providers = frozenset(f.provider for f in self.facts)
        limits = [v.controls.max_prompt_chars for v in self.views if v.controls.max_prompt_chars]
        self.min_prompt_limit = min(limits) if limits else None
        self.quality: dict[tuple[Any, ...], tuple[dict[str, float], dict[str, ModelQuality]]] = {}
        self.memo: OrderedDict[tuple[Any, ...], tuple[list[Row], list[Rejection], Any]] = \
            OrderedDict()
        self.memo_limit = max(4, _MEMO_ROWS // max(1, len(self.views)))
        self.lock = threading.Lock()

    def model_quality(self, catalog: Catalog, name: str, axis: QualityAxis, signals: Signals,
                      policy: Policy) -> tuple[dict[str, float], dict[str, ModelQuality]]:
        key = (name, signals.key, policy)
        hit = self.quality.get(key)
        if hit is None:
            weights = signal_weights(axis, signals, policy)
            table = {mid: model_quality(catalog.scores(mid), axis, weights, signals, policy)
                     for mid in catalog.models}
            hit = self.quality[key] = (weights, table)
        return hit


_INDEXES: weakref.WeakKeyDictionary[Catalog, _Index] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


def _index(catalog: Catalog) -> _Index:
    idx = _INDEXES.get(catalog)
    if idx is None:
        with _INDEX_LOCK:
            idx = _INDEXES.get(catalog)
            if idx is None:
                idx = _INDEXES[catalog] = _Index(catalog)
    return idx


def clear_cache(catalog: Catalog | None = None) -> None:
    """Forget the routing caches (of one catalog, or all): the next route() plans every offer."""
    if catalog is None:
        _INDEXES.clear()
    else:
        _INDEXES.pop(catalog, None)


def route(request: ImageRequest, catalog: Catalog, *, available: Available = None,
          today: dt.date | None = None, providers: Mapping[str, Provider] | None = None,
          policy: Policy | None = None) -> RoutingDecision:
    """Rank the catalog's offers for ``request`` by its quality axis; explain every rejection.

    ``available``: the provider ids usable here, or a per-offer callable returning
    :class:`~modelglass.providers.base.Availability`; None counts every provider as available.
    ``today`` decides which deprecated models have shut down (default: the system date).
    ``providers``: provider instances whose cost estimates and payloads the plans should use.

    >>> import modelglass as mg
    >>> d = route(mg.ImageRequest(prompt="a fox", quality="draft"), mg.Catalog.default(),
    ...           available={"fal"})                                  # doctest: +SKIP
    >>> d.choice.key                                                   # doctest: +SKIP
    'flux-schnell@fal'
    """
    policy = policy or DEFAULT_POLICY
    today = today or dt.date.today()
    providers = providers or {}
    quality = str(getattr(request.quality, "value", request.quality))
    axis = catalog.quality(quality)
    signals = prompt_signals(request.prompt, request.negative_prompt)
    idx = _index(catalog)
    if request.model is not None and request.model not in catalog.models:
        catalog.model(request.model)  # raises CatalogError with suggestions
    if request.provider is not None and request.provider not in idx.providers:
        raise InvalidRequest(f"no offer in the catalog is served by provider "
                             f"{request.provider!r}; providers: {', '.join(sorted(idx.providers))}",
                             field="provider")
    weights, qtable = idx.model_quality(catalog, quality, axis, signals, policy)

    if available is None:
        avail_key: Any = None
        check: Callable[[int], str | None] = _always
    elif callable(available):
        unavailable = _ask_each(idx, request, today, available)
        avail_key = ("offers", tuple(sorted(unavailable.items())))
        check = unavailable.get
    else:
        names = frozenset(available)
        avail_key = ("providers", names)
        shown = ", ".join(sorted(names)) or "none"
        check = _provider_check(idx, names, shown)

    budget = _budget_text(request, axis, quality)

    def planner(view: OfferView) -> ProviderCall:
        return plan_call(request, view, provider=providers.get(view.provider))

    plen = len(request.prompt)
    key = (quality, request.model, request.provider, request.negative_prompt, request.cfg,
           request.steps, request.seed is None, request.size, request.aspect_ratio,
           request.print_size, request.dpi, request.n, request.sampler, request.max_cost_usd,
           request.strict, request.commercial,
           repr(request.provider_options) if request.provider_options else None,
           plen if idx.min_prompt_limit is not None and plen > idx.min_prompt_limit else 0,
           signals.key, today, avail_key, policy,
           tuple(sorted((k, id(p)) for k, p in providers.items())))
    with idx.lock:
        hit = idx.memo.get(key)
        if hit is not None:
            idx.memo.move_to_end(key)
    calls: dict[str, ProviderCall] = {}
    if hit is not None:
        rows, rejected, _ = hit
    else:
        rows, rejected = _rank(idx, request, quality, axis, qtable, check, today, policy,
                               planner, calls)
        with idx.lock:
            # The providers ride along so their ids in the key cannot be reused while cached.
            idx.memo[key] = (rows, rejected, tuple(providers.values()))
            while len(idx.memo) > idx.memo_limit:
                idx.memo.popitem(last=False)
    return RoutingDecision(request=request, quality=quality, quality_axis=axis, signals=signals,
                           weights=weights, rows=rows, rejected=rejected, budget=budget,
                           planner=planner, calls=calls)


def _always(_: int) -> str | None:
    return None


def _provider_check(idx: _Index, names: frozenset[str], shown: str) -> Callable[[int], str | None]:
    facts = idx.facts

    def check(i: int) -> str | None:
        p = facts[i].provider
        if p in names:
            return None
        return f"provider {p!r} is not available here (available: {shown})"

    return check


def _ask_each(idx: _Index, request: ImageRequest, today: dt.date,
              available: Callable[[OfferView], Availability]) -> dict[int, str]:
    """Ask the callable about every offer that survives pins and lifecycle; keep the refusals."""
    out: dict[int, str] = {}
    for i, f in enumerate(idx.facts):
        if _pin_reason(f, request) or _lifecycle_reason(f, today):
            continue
        a = available(idx.views[i])
        if not a.ok:
            out[i] = a.reason or f"provider {f.provider!r} is not available"
    return out


def _pin_reason(f: _Facts, request: ImageRequest) -> str | None:
    if request.model is not None and f.model_id != request.model:
        return f"request pins model={request.model!r}"
    if request.provider is not None and f.provider != request.provider:
        return f"request pins provider={request.provider!r}"
    return None


def _lifecycle_reason(f: _Facts, today: dt.date) -> str | None:
    use = f"; use {f.replacement}" if f.replacement else "; no replacement is named"
    if f.status is Status.retired:
        when = f" on {f.shutdown_on.isoformat()}" if f.shutdown_on else ""
        return f"{f.model_id} retired{when}{use}"
    if f.status is Status.deprecated and f.shutdown_on is not None and f.shutdown_on <= today:
        return (f"{f.model_id} retired on {f.shutdown_on.isoformat()} (deprecated, shutdown date "
                f"passed as of {today.isoformat()}){use}")
    return None


_GEOMETRY_FIELDS = frozenset({"size", "aspect_ratio", "print_size", "dpi"})


def _plan_constraint(exc: InvalidRequest, request: ImageRequest) -> str:
    """Which constraint a planner refusal is: strict mode, geometry, or another plan problem."""
    if request.strict and str(exc).startswith("strict"):
        return "strict"
    if exc.field in _GEOMETRY_FIELDS or exc.field is None and "size" in str(exc):
        return "geometry"
    return "plan"


def _licence_reason(f: _Facts) -> str | None:
    if f.commercial is True:
        return None
    if f.commercial is False:
        return f"licence {f.licence_id} does not allow commercial use (commercial=True requested)"
    return (f"commercial use under licence {f.licence_id} is unverified; commercial=True needs a "
            "verified yes")


def _budget_text(request: ImageRequest, axis: QualityAxis, quality: str) -> str | None:
    if request.max_cost_usd is not None:
        return f"max_cost_usd ${request.max_cost_usd:g} per call"
    if axis.max_cost_usd is not None:
        return f"${axis.max_cost_usd:g}/image ({quality} axis default; max_cost_usd overrides)"
    return None


def _budget_reason(call: ProviderCall, request: ImageRequest, axis: QualityAxis,
                   quality: str) -> str | None:
    est = call.estimate
    if request.max_cost_usd is not None:
        limit = request.max_cost_usd
        if est.usd is None:
            return f"price unknown; cannot be checked against max_cost_usd ${limit:g}"
        if est.usd > limit + 1e-12:
            images = f" for {request.n} images" if request.n > 1 else ""
            return (f"estimated ${est.usd:.4f}{images} exceeds max_cost_usd ${limit:g} "
                    f"({est.basis})")
        return None
    if axis.max_cost_usd is not None:
        limit = axis.max_cost_usd
        if est.per_image_usd is None:
            return (f"price unknown; cannot be checked against max_cost_usd ${limit:g} "
                    f"(the {quality} axis default, per image)")
        if est.per_image_usd > limit + 1e-12:
            return (f"estimated ${est.per_image_usd:.4f}/image exceeds the {quality} axis ceiling "
                    f"${limit:g}/image ({est.basis}); pass max_cost_usd to override")
    return None


def _rank(idx: _Index, request: ImageRequest, quality: str, axis: QualityAxis,
          qtable: dict[str, ModelQuality], check: Callable[[int], str | None], today: dt.date,
          policy: Policy, planner: Callable[[OfferView], ProviderCall],
          calls: dict[str, ProviderCall]) -> tuple[list[Row], list[Rejection]]:
    rows: list[Row] = []
    rejected: list[Rejection] = []
    reject = rejected.append
    cw = axis.cost_weight
    ref = axis.cost_reference_usd
    min_mp = axis.min_megapixels
    commercial = request.commercial
    negative = request.negative_prompt is not None
    for i, f in enumerate(idx.facts):
        why = _pin_reason(f, request)
        if why:
            reject(Rejection(f.key, "pin", why))
            continue
        why = _lifecycle_reason(f, today)
        if why:
            reject(Rejection(f.key, "lifecycle", why))
            continue
        why = check(i)
        if why:
            reject(Rejection(f.key, "availability", why))
            continue
        if commercial:
            why = _licence_reason(f)
            if why:
                reject(Rejection(f.key, "licence", why))
                continue
        mq = qtable[f.model_id]
        below = None
        if mq.failed_minimums:
            if request.model is None:
                reject(Rejection(f.key, "minimum", mq.failed_minimums))
                continue
            # The user named this model: the axis minimums inform, they do not overrule a pin.
            below = mq.failed_minimums
        short_mp = None
        if min_mp is not None and (f.max_mp is None or f.max_mp < min_mp - 1e-9):
            shown = "unknown" if f.max_mp is None else f"{f.max_mp:.2f} MP"
            short_mp = f"largest output {shown} < {min_mp:g} MP the {quality} axis needs"
            if policy.upscale_available is None:
                reject(Rejection(f.key, "resolution", short_mp + " (no upscaler configured)"))
                continue
        view = idx.views[i]
        try:
            call = planner(view)
        except InvalidRequest as exc:
            constraint = _plan_constraint(exc, request)
            reject(Rejection(f.key, constraint, str(exc)))
            continue
        if short_mp is not None:
            assert policy.upscale_available is not None
            if not policy.upscale_available(call):
                reject(Rejection(f.key, "resolution", short_mp + " and no upscale step fits"))
                continue
        why = _budget_reason(call, request, axis, quality)
        if why:
            reject(Rejection(f.key, "budget", why))
            continue
        calls[f.key] = call
        rows.append(_score(f, call, mq, cw, ref, quality, policy, negative, short_mp, axis,
                           below))
    rows.sort(key=Row.sort_key)
    return rows, rejected


def _score(f: _Facts, call: ProviderCall, mq: ModelQuality, cw: float, ref: float, quality: str,
           policy: Policy, negative: bool, short_mp: str | None, axis: QualityAxis,
           below: str | None = None) -> Row:
    est = call.estimate
    per = est.per_image_usd
    cs = cost_score(per, ref, policy)
    total = (1.0 - cw) * mq.quality / 10.0 + cw * cs + mq.adjustment
    reasons = [f"quality {mq.quality:.2f}/10 on the {quality} weights",
               (f"cost {est.basis}{' (approximate)' if est.approximate else ''} → cost score "
                f"{cs:.2f}" if per is not None else
                f"price unknown → cost score {cs:g} (unknown is never free)")]
    reasons.extend(mq.notes)
    for fate in call.fates:
        if fate.control == "negative_prompt" and negative:
            if fate.faithful:
                total += policy.negative_bonus
                reasons.append(f"negative prompt {fate.kind.value} (+{policy.negative_bonus:g})")
            elif fate.kind is FateKind.dropped:
                total -= policy.negative_penalty
                reasons.append(f"negative prompt dropped: {fate.reason} "
                               f"(−{policy.negative_penalty:g})")
            else:
                total -= policy.approximated_penalty
                reasons.append(f"{fate} (−{policy.approximated_penalty:g})")
        elif fate.kind is FateKind.approximated:
            total -= policy.approximated_penalty
            reasons.append(f"{fate} (−{policy.approximated_penalty:g})")
        elif fate.kind is FateKind.dropped:
            total -= policy.dropped_penalty
            reasons.append(f"{fate} (−{policy.dropped_penalty:g})")
    if f.status is Status.deprecated:
        total -= policy.deprecated_penalty
        when = f", shuts down {f.shutdown_on.isoformat()}" if f.shutdown_on else ""
        use = f"; replacement {f.replacement}" if f.replacement else ""
        reasons.append(f"deprecated{when}{use} (−{policy.deprecated_penalty:g})")
    if short_mp is not None:
        reasons.append(short_mp + "; passes with an upscale step")
    flags: list[str] = []
    if below is not None:
        flags.append(f"below the {quality} minimums ({below}); kept because the model was pinned")
    if mq.estimated_axes:
        flags.append("estimated: " + ", ".join(mq.estimated_axes))
    if mq.unknown_axes:
        flags.append(f"unknown (counted as {axis.unknown_score:g}): " + ", ".join(mq.unknown_axes))
    if per is None:
        flags.append("price unknown")
    elif est.approximate:
        flags.append("approximate price")
    return Row(offer=call.offer, quality=mq.quality, cost_usd=est.usd, cost_per_image_usd=per,
               cost_score=cs, total=total, reasons=tuple(reasons), flags=tuple(flags))
