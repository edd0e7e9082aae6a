"""``route()``: rank every offer in the catalog for one request, and say why. Pure: no I/O.

Per offer, in order (the first failure is the rejection's constraint):

1. ``pin``: ``request.model`` / ``request.provider`` restrict the candidates;
2. ``lifecycle``: retired models, and deprecated ones whose ``shutdown_on`` has passed, are out;
3. ``availability``: the provider (or, via a callable, the offer) must be usable from here;
4. ``health``: the provider (or offer) is cooling down after repeated failures (applied after the
   memo, from the :class:`~._health.HealthBoard` the caller passes; never memoised);
5. ``policy``: the policy's provider / model ``allow`` and ``deny`` lists;
6. ``licence``: ``commercial=True`` or the policy's ``require:`` needs a verified licence fact;
7. ``minimum``: the quality axis's hard minimums (an unknown score fails, saying so);
8. ``latency``: ``max_latency_s`` (request) / ``limits.max_latency_p90_s`` (policy) against the
   observed p90 where measured, else the catalog's figure (see :mod:`._latency`);
9. ``resolution``: the axis's ``min_megapixels`` (print), unless ``Policy.upscale_available``;
10. ``strict`` / ``geometry`` / ``plan``: :func:`~modelglass.plan.plan_call` refuses the request
    (strict mode, an impossible size, or another planning problem, with the planner's message);
11. ``budget``: the plan's estimate against ``max_cost_usd`` (or the axis's per-image ceiling,
    or the policy's ``limits.max_cost_usd``); an unknown price cannot pass a ceiling;
12. ``size``: with ``size=`` given, offers that cannot make it (within :data:`SIZE_TOLERANCE`)
    are out when any other eligible offer can; when none can, they all stay and the decision
    states the approximation up front (``decision.notices``).

Passing offers are scored (see :mod:`._scoring`) and sorted: total desc, then the policy's
``tie_break`` keys (default: cost asc, offer key). Where an outcome check applies and enough
checks were observed, they are ranked instead by expected cost per accepted image (see
:mod:`._learning`; applied after the memo, like health).

Speed: the catalog's per-offer facts and each model's weighted quality are computed once per
catalog and axis. The ranking itself depends on the prompt only through its signals (and its
length against prompt limits), so it is memoised per request *shape*; a repeat shape skips
planning and only plans the candidates whose ``call`` is read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import _clock
from .._encoders import SHORTEST_WINDOW
from ..catalog._schema import Status
from ..errors import InvalidRequest
from ..plan import plan_call
from ..result import FateKind
from ._decision import Rejection, RoutingDecision, Row
from ._latency import LatencySource, offer_latency
from ._learning import learned_ranking
from ._policy import Policy
from ._scoring import ModelQuality, Scoring, cost_score, model_quality, signal_weights
from ._signals import Signals, prompt_signals
from ._sizing import size_gap

if TYPE_CHECKING:
    from ..catalog import Catalog, OfferView, QualityAxis
    from ..plan import ProviderCall
    from ..providers.base import Availability, Provider
    from ..request import ImageRequest
    from ._health import HealthBoard

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
        "open_weights",
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
        self.open_weights = m.licence.open_weights
        self.licence_id = m.licence.id
        self.max_mp = view.geometry.max_mp()


class _Index:
    """Per-catalog caches: offer facts, model quality per axis/signals, and the ranking memo."""

    def __init__(self, catalog: Catalog) -> None:
        self.views = catalog.offers(include_retired=True)
        # overlay hook (catalog helper): offers a catalog overlay disabled, named in rejections
        self.disabled = dict(getattr(getattr(catalog, "overlay", None), "disabled", {}) or {})
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
            weights = signal_weights(axis, signals, policy.scoring)
            table = {mid: model_quality(catalog.scores(mid), axis, weights, signals,
                                        policy.scoring)
                     for mid in catalog.models}
            hit = self.quality[key] = (weights, table)
        return hit

    def views_for(self, catalog: Catalog, policy: Policy, name: str,
                  axis: QualityAxis) -> tuple[list[OfferView], str]:
        """The offers as the planner should see them under ``policy`` for axis ``name``, and
        the quality name to plan with: a policy axis plans as the shipped axis it extends (its
        price tier) with the policy's target size and dpi."""
        if name not in policy.spec.axes:
            return self.views, name
        key = ("views", policy, name)
        hit = self.quality.get(key)
        if hit is None:
            root = policy.root_axis(name, catalog)
            axes = {**catalog.quality_axes, root: axis, name: axis}
            views = [dataclasses.replace(v, quality_axes=axes) for v in self.views]
            hit = self.quality[key] = (views, root)  # type: ignore[assignment]
        return hit  # type: ignore[return-value]


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
          policy: Policy | None = None, health: HealthBoard | None = None,
          observed: LatencySource | None = None) -> RoutingDecision:
    """Rank the catalog's offers for ``request`` by its quality axis; explain every rejection.

    ``available``: the provider ids usable here, or a per-offer callable returning
    :class:`~modelglass.providers.base.Availability`; None counts every provider as available.
    ``today`` decides which deprecated models have shut down (default: ``$MODELGLASS_TODAY``,
    else the system date; see :mod:`modelglass._clock`).
    ``providers``: provider instances whose cost estimates and payloads the plans should use.
    ``policy``: the routing rules (default: :meth:`Policy.default`, the shipped policy file).
    ``health``: a :class:`~._health.HealthBoard` whose cooling providers/offers are skipped
    (None: health is not consulted). ``observed``: measured latencies (``latency_p90(key)``)
    that latency limits prefer over the catalog's figures.

    >>> import modelglass as mg
    >>> d = route(mg.ImageRequest(prompt="a fox", quality="draft"), mg.Catalog.default(),
    ...           available={"fal"})                                  # doctest: +SKIP
    >>> d.choice.key                                                   # doctest: +SKIP
    'flux-schnell@fal'
    """
    policy = policy or Policy.default()
    policy.check(catalog)
    today = _clock.today(today)
    providers = providers or {}
    request, defaulted = _with_default_quality(request, policy)
    quality = str(getattr(request.quality, "value", request.quality))
    axis = policy.quality_axis(quality, catalog)
    signals = prompt_signals(request.prompt, request.negative_prompt)
    idx = _index(catalog)
    _check_pins(request, catalog, idx)
    weights, qtable = idx.model_quality(catalog, quality, axis, signals, policy)
    avail_key, check = _availability(idx, request, today, available)

    budget = _budget_text(request, axis, quality, policy)
    views, plan_quality = idx.views_for(catalog, policy, quality, axis)
    plan_request = request if plan_quality == quality else \
        request.model_copy(update={"quality": plan_quality})

    def planner(view: OfferView) -> ProviderCall:
        return plan_call(plan_request, view, provider=providers.get(view.provider), today=today)

    latency_limit, latency = _latencies(idx, request, policy, observed)
    key = _memo_key(idx, request, quality, signals, today, avail_key, policy, providers, latency)
    calls: dict[str, ProviderCall] = {}
    rows, rejected, notices, reserve = _memoised_rank(
        idx, key, providers, calls,
        lambda: _Context(request, quality, axis, qtable, check, today, policy, planner, views,
                         latency, latency_limit))
    if health is not None and policy.health.enabled and rows:
        rows, rejected, notices = _health_fallback(rows, rejected, notices, reserve, health,
                                                   policy, request)
    # learning hook: where an outcome check applies and enough of them were observed, rank by
    # expected cost per accepted image (after the memo: observations change between calls)
    rows, ranking = learned_ranking(rows, request, policy.learning, observed, catalog)
    decision = RoutingDecision(request=request, quality=quality, quality_axis=axis,
                               signals=signals, weights=weights, rows=rows, rejected=rejected,
                               budget=budget, planner=planner, calls=calls, notices=notices,
                               policy=policy, ranking=ranking)
    decision.quality_defaulted = defaulted
    return decision


def _check_pins(request: ImageRequest, catalog: Catalog, idx: _Index) -> None:
    """Refuse a pinned model or provider the catalog does not know (before any ranking)."""
    if request.model is not None and request.model not in catalog.models:
        catalog.model(request.model)  # raises CatalogError with suggestions
    if request.provider is not None and request.provider not in idx.providers:
        raise InvalidRequest(f"no offer in the catalog is served by provider "
                             f"{request.provider!r}; providers: {', '.join(sorted(idx.providers))}",
                             field="provider")


def _availability(idx: _Index, request: ImageRequest, today: dt.date, available: Available
                  ) -> tuple[Any, Callable[[int], str | None]]:
    """The memo key part for ``available`` and the per-offer check (index -> refusal or None)."""
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
    return avail_key, check


def _latencies(idx: _Index, request: ImageRequest, policy: Policy,
               observed: LatencySource | None
               ) -> tuple[float | None, list[tuple[float | None, str]] | None]:
    """The latency limit, and each offer's latency where a limit or the tie-break reads it."""
    latency_limit = _latency_limit(request, policy)
    latency: list[tuple[float | None, str]] | None = None
    if latency_limit is not None or "latency" in policy.tie_break:
        latency = [offer_latency(v, observed) for v in idx.views]
    return latency_limit, latency


def _memo_key(idx: _Index, request: ImageRequest, quality: str, signals: Signals,
              today: dt.date, avail_key: Any, policy: Policy,
              providers: Mapping[str, Provider],
              latency: list[tuple[float | None, str]] | None) -> tuple[Any, ...]:
    """The request *shape* the ranking depends on (the prompt only through signals/length)."""
    plen = len(request.prompt)
    key = (quality, request.model, request.provider, request.negative_prompt, request.cfg,
           request.steps, request.seed is None, request.size, request.aspect_ratio,
           request.print_size, request.dpi, request.n, request.sampler, request.max_cost_usd,
           request.strict, request.commercial, request.max_latency_s,
           repr(request.provider_options) if request.provider_options else None,
           plen if (idx.min_prompt_limit is not None and plen > idx.min_prompt_limit)
           or (request.strict and plen > SHORTEST_WINDOW) else 0,  # encoder cuts refuse strict
           signals.key, today, avail_key, policy,
           tuple(sorted((k, id(p)) for k, p in providers.items())),
           tuple(v for v, _ in latency) if latency is not None else None)
    return key


def _memoised_rank(idx: _Index, key: tuple[Any, ...], providers: Mapping[str, Provider],
                   calls: dict[str, ProviderCall], make_ctx: Callable[[], _Context]
                   ) -> tuple[list[Row], list[Rejection], tuple[str, ...], list[tuple[Row, str]]]:
    """The ranking for ``key`` from the memo, else ranked now (filling ``calls``) and stored."""
    with idx.lock:
        hit = idx.memo.get(key)
        if hit is not None:
            idx.memo.move_to_end(key)
    if hit is not None:
        rows, rejected, (notices, reserve, _) = hit
    else:
        ctx = make_ctx()
        rows, rejected, notices, reserve = _rank(idx, ctx, calls)
        with idx.lock:
            # The providers ride along so their ids in the key cannot be reused while cached.
            idx.memo[key] = (rows, rejected, (notices, reserve, tuple(providers.values())))
            while len(idx.memo) > idx.memo_limit:
                idx.memo.popitem(last=False)
    return rows, rejected, notices, reserve


def _health_fallback(rows: list[Row], rejected: list[Rejection], notices: tuple[str, ...],
                     reserve: list[tuple[Row, str]], health: HealthBoard, policy: Policy,
                     request: ImageRequest
                     ) -> tuple[list[Row], list[Rejection], tuple[str, ...]]:
    """Skip cooling offers; when that empties the ranking, fall back to the size reserve."""
    rows, rejected = _apply_health(rows, rejected, health, policy)
    if not rows and reserve:
        # Every offer that makes the size is cooling down: fall back to those that do not
        # make it, and say so first (a cooled offer never sends a job).
        kept, _ = _apply_health([r for r, _ in reserve], [], health, policy)
        if kept:
            gaps = {r.offer.key: g for r, g in reserve}
            back = {r.offer.key for r in kept}
            rejected = [r for r in rejected
                        if not (r.constraint == "size" and r.offer_key in back)]
            rows = _order(kept, policy)
            notices = (f"size {request.size} approximated: the offers that make it are "
                       f"cooling down; {rows[0].offer.key} {gaps[rows[0].offer.key]}",)
    return rows, rejected, notices


def _with_default_quality(request: ImageRequest, policy: Policy) -> tuple[ImageRequest, bool]:
    """``request`` with the policy's default quality when it names none (and whether it did)."""
    if "quality" in request.model_fields_set:
        return request, False
    name = policy.default_quality
    if str(getattr(request.quality, "value", request.quality)) != name:
        from ..request import Quality

        quality: Quality | str = Quality(name) if name in Quality.__members__ else name
        request = request.model_copy(update={"quality": quality})
    return request, True


def _latency_limit(request: ImageRequest, policy: Policy) -> float | None:
    limits = [v for v in (request.max_latency_s,
                          policy.limits.max_latency_p90_s) if v is not None]
    return min(limits) if limits else None


def _apply_health(rows: list[Row], rejected: list[Rejection], health: HealthBoard,
                  policy: Policy) -> tuple[list[Row], list[Rejection]]:
    """Move offers whose provider (or offer) is cooling down from the ranking to the rejected."""
    kept: list[Row] = []
    out = list(rejected)
    for row in rows:
        why = health.cooling(row.offer.key, row.offer.provider, policy.health)
        if why:
            out.append(Rejection(row.offer.key, "health", why))
        else:
            kept.append(row)
    return kept, out


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


def _licence_reason(f: _Facts, why: str) -> str | None:
    if f.commercial is True:
        return None
    if f.commercial is False:
        return f"licence {f.licence_id} does not allow commercial use ({why})"
    return (f"commercial use under licence {f.licence_id} is unverified; {why} needs a "
            "verified yes")


def _open_weights_reason(f: _Facts) -> str | None:
    if f.open_weights is True:
        return None
    fact = "closed weights" if f.open_weights is False else "open weights unverified"
    return f"{fact} under licence {f.licence_id} (the policy requires open_weights: true)"


def _names_reason(f: _Facts, policy: Policy) -> str | None:
    where = f" ({policy.source})" if policy.source else ""
    for rules, name, kind in ((policy.providers, f.provider, "provider"),
                              (policy.models, f.model_id, "model")):
        if name in rules.deny:
            return f"the policy denies {kind} {name!r}{where}"
        if rules.allow is not None and name not in rules.allow:
            return (f"{kind} {name!r} is not in the policy's allow list "
                    f"({', '.join(rules.allow) or 'empty'}){where}")
    return None


def _ceiling(request: ImageRequest, axis: QualityAxis, quality: str,
             policy: Policy) -> tuple[float, str] | None:
    """The per-image ceiling when the request gives none: the lower of the axis's and the
    policy's ``limits.max_cost_usd``, and where it comes from."""
    options = []
    if axis.max_cost_usd is not None:
        options.append((axis.max_cost_usd, f"the {quality} axis default"))
    if policy.limits.max_cost_usd is not None:
        options.append((policy.limits.max_cost_usd, "the policy's limits.max_cost_usd"))
    return min(options) if options else None


def _budget_text(request: ImageRequest, axis: QualityAxis, quality: str,
                 policy: Policy) -> str | None:
    if request.max_cost_usd is not None:
        return f"max_cost_usd ${request.max_cost_usd:g} per call"
    ceiling = _ceiling(request, axis, quality, policy)
    if ceiling is not None:
        return f"${ceiling[0]:g}/image ({ceiling[1]}; max_cost_usd overrides)"
    return None


def _budget_reason(call: ProviderCall, request: ImageRequest, axis: QualityAxis,
                   quality: str, policy: Policy) -> str | None:
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
    ceiling = _ceiling(request, axis, quality, policy)
    if ceiling is not None:
        limit, where = ceiling
        if est.per_image_usd is None:
            return (f"price unknown; cannot be checked against max_cost_usd ${limit:g} "
                    f"({where}, per image)")
        if est.per_image_usd > limit + 1e-12:
            label = (f"the {quality} axis ceiling" if where.endswith("axis default") else
                     "the policy's limits.max_cost_usd ceiling")
            return (f"estimated ${est.per_image_usd:.4f}/image exceeds {label} "
                    f"${limit:g}/image ({est.basis}); pass max_cost_usd to override")
    return None


def _latency_reason(value: float | None, basis: str, limit: float,
                    policy: Policy) -> str | None:
    if value is None:
        if policy.limits.unknown_latency == "allow":
            return None
        return (f"{basis}; cannot be checked against the latency limit {limit:g} s "
                "(the policy's limits.unknown_latency: allow lets such offers through)")
    if value > limit + 1e-9:
        return f"{basis} > limit {limit:g} s"
    return None


class _Context:
    """What one ranking reads (bundled so the memo miss path takes one argument)."""

    __slots__ = ("axis", "check", "latency", "latency_limit", "planner", "policy", "qtable",
                 "quality", "request", "today", "views")

    def __init__(self, request: ImageRequest, quality: str, axis: QualityAxis,
                 qtable: dict[str, ModelQuality], check: Callable[[int], str | None],
                 today: dt.date, policy: Policy, planner: Callable[[OfferView], ProviderCall],
                 views: list[OfferView], latency: list[tuple[float | None, str]] | None,
                 latency_limit: float | None) -> None:
        self.request, self.quality, self.axis, self.qtable = request, quality, axis, qtable
        self.check, self.today, self.policy, self.planner = check, today, policy, planner
        self.views, self.latency, self.latency_limit = views, latency, latency_limit


def _rank(idx: _Index, ctx: _Context,
          calls: dict[str, ProviderCall]
          ) -> tuple[list[Row], list[Rejection], tuple[str, ...], list[tuple[Row, str]]]:
    """Rows (ranked), rejections, notices, and the reserve: offers rejected only for the size,
    with what they make instead (used when every offer that makes the size is cooling down)."""
    request, axis, policy = ctx.request, ctx.axis, ctx.policy
    rows: list[Row] = []
    approx: list[tuple[Row, str]] = []  # passing offers that cannot make the requested size
    rejected: list[Rejection] = []
    reject = rejected.append
    min_mp = axis.min_megapixels
    commercial_why = ("commercial=True requested" if request.commercial else
                      "the policy requires commercial_use: true"
                      if policy.require.commercial_use else None)
    open_weights = policy.require.open_weights is True
    negative = request.negative_prompt is not None
    want_px = request.pixel_size() if request.size else None
    for i, f in enumerate(idx.facts):
        refused = _screen(i, f, ctx, commercial_why, open_weights)
        if refused is not None:
            reject(refused)
            continue
        out = _admit(i, f, ctx, min_mp)
        if isinstance(out, Rejection):
            reject(out)
            continue
        call, mq, below, short_mp, lat = out
        calls[f.key] = call
        row = _score(f, call, mq, ctx, negative, short_mp, below, lat[0])
        gap = size_gap(want_px, call) if want_px is not None else None
        if gap is not None:
            approx.append((row, gap))
        else:
            rows.append(row)
    return _settle(idx, request, policy, rows, approx, rejected, calls)


def _screen(i: int, f: _Facts, ctx: _Context, commercial_why: str | None,
            open_weights: bool) -> Rejection | None:
    """Steps 1-6 (pin, lifecycle, availability, policy, licence): the first failure, or None."""
    request, policy = ctx.request, ctx.policy
    why = _pin_reason(f, request)
    if why:
        return Rejection(f.key, "pin", why)
    why = _lifecycle_reason(f, ctx.today)
    if why:
        return Rejection(f.key, "lifecycle", why)
    why = ctx.check(i)
    if why:
        return Rejection(f.key, "availability", why)
    why = _names_reason(f, policy)
    if why:
        return Rejection(f.key, "policy", why)
    if commercial_why:
        why = _licence_reason(f, commercial_why)
        if why:
            return Rejection(f.key, "licence", why)
    if open_weights:
        why = _open_weights_reason(f)
        if why:
            return Rejection(f.key, "licence", why)
    return None


_Admitted = tuple["ProviderCall", ModelQuality, "str | None", "str | None",
                  "tuple[float | None, str]"]


def _admit(i: int, f: _Facts, ctx: _Context, min_mp: float | None) -> Rejection | _Admitted:
    """Steps 7-11 (minimum, latency, resolution, plan, budget): the first failure, else the
    call, the model's quality, the pinned-below note, the short-resolution note and latency."""
    request, axis, quality, policy = ctx.request, ctx.axis, ctx.quality, ctx.policy
    mq = ctx.qtable[f.model_id]
    below = None
    if mq.failed_minimums:
        if request.model is None:
            return Rejection(f.key, "minimum", mq.failed_minimums)
        # The user named this model: the axis minimums inform, they do not overrule a pin.
        below = mq.failed_minimums
    lat = ctx.latency[i] if ctx.latency is not None else (None, "")
    if ctx.latency_limit is not None:
        why = _latency_reason(lat[0], lat[1], ctx.latency_limit, policy)
        if why:
            return Rejection(f.key, "latency", why)
    short_mp = None
    if min_mp is not None and (f.max_mp is None or f.max_mp < min_mp - 1e-9):
        shown = "unknown" if f.max_mp is None else f"{f.max_mp:.2f} MP"
        short_mp = f"largest output {shown} < {min_mp:g} MP the {quality} axis needs"
        if policy.upscale_available is None:
            return Rejection(f.key, "resolution", short_mp + " (no upscaler configured)")
    view = ctx.views[i]
    try:
        call = ctx.planner(view)
    except InvalidRequest as exc:
        constraint = _plan_constraint(exc, request)
        return Rejection(f.key, constraint, str(exc))
    if short_mp is not None:
        assert policy.upscale_available is not None
        if not policy.upscale_available(call):
            return Rejection(f.key, "resolution", short_mp + " and no upscale step fits")
    why = _budget_reason(call, request, axis, quality, policy)
    if why:
        return Rejection(f.key, "budget", why)
    return call, mq, below, short_mp, lat


def _settle(idx: _Index, request: ImageRequest, policy: Policy, rows: list[Row],
            approx: list[tuple[Row, str]], rejected: list[Rejection],
            calls: dict[str, ProviderCall]
            ) -> tuple[list[Row], list[Rejection], tuple[str, ...], list[tuple[Row, str]]]:
    """Step 12 (size), the order, the size notice and the overlay's disabled offers."""
    reject = rejected.append
    notices: tuple[str, ...] = ()
    reserve: list[tuple[Row, str]] = []
    if approx and rows:
        reserve = approx
        for row, gap in approx:
            reject(Rejection(row.offer.key, "size", f"{gap}; {len(rows)} eligible offer(s) make "
                                                    f"{request.size} as asked"))
            calls.pop(row.offer.key, None)
    elif approx:
        rows = [row for row, _ in approx]
    rows = _order(rows, policy)
    gaps = {r.offer.key: g for r, g in approx}
    if rows and rows[0].offer.key in gaps and not any(r.offer.key not in gaps for r in rows):
        gap = gaps[rows[0].offer.key]
        notices = (f"size {request.size} approximated: no eligible offer makes it within "
                   f"tolerance; {rows[0].offer.key} {gap}",)
    rejected += [Rejection(key, "overlay", f"disabled by your catalog overlay ({why})")
                 for key, why in idx.disabled.items()]
    return rows, rejected, notices, reserve


def _order(rows: list[Row], policy: Policy) -> list[Row]:
    """Total desc; totals within ``tie_tolerance`` of a group's best are ordered by the policy's
    ``tie_break`` keys, then by offer key."""
    rows = sorted(rows, key=Row.sort_key)
    keys = policy.tie_break
    if keys == ("cost", "offer") and policy.tie_tolerance == 0:
        return rows  # Row.sort_key is exactly that order

    def tie_key(r: Row) -> tuple[Any, ...]:
        out: list[Any] = []
        for k in keys:
            if k == "cost":
                out.append(r.cost_per_image_usd if r.cost_per_image_usd is not None
                           else float("inf"))
            elif k == "quality":
                out.append(-r.quality)
            elif k == "latency":
                out.append(r.latency_s if r.latency_s is not None else float("inf"))
            else:
                out.append(r.offer.key)
        out.append(r.offer.key)
        return tuple(out)

    tol = policy.tie_tolerance + 1e-9
    ordered: list[Row] = []
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and rows[i].total - rows[j].total <= tol:
            j += 1
        ordered.extend(sorted(rows[i:j], key=tie_key))
        i = j
    return ordered


def _score(f: _Facts, call: ProviderCall, mq: ModelQuality, ctx: _Context, negative: bool,
           short_mp: str | None, below: str | None, latency_s: float | None) -> Row:
    axis, quality, policy = ctx.axis, ctx.quality, ctx.policy
    scoring: Scoring = policy.scoring
    cw, ref = axis.cost_weight, axis.cost_reference_usd
    est = call.estimate
    per = est.per_image_usd
    cs = cost_score(per, ref, scoring)
    total = (1.0 - cw) * mq.quality / 10.0 + cw * cs + mq.adjustment
    reasons = [f"quality {mq.quality:.2f}/10 on the {quality} weights",
               (f"cost {est.basis}{' (approximate)' if est.approximate else ''} → cost score "
                f"{cs:.2f}" if per is not None else
                f"price unknown → cost score {cs:g} (unknown is never free)")]
    reasons.extend(mq.notes)
    for fate in call.fates:
        if fate.control == "negative_prompt" and negative:
            if fate.faithful:
                total += scoring.negative_bonus
                reasons.append(f"negative prompt {fate.kind.value} (+{scoring.negative_bonus:g})")
            elif fate.kind is FateKind.dropped:
                total -= scoring.negative_penalty
                reasons.append(f"negative prompt dropped: {fate.reason} "
                               f"(−{scoring.negative_penalty:g})")
            else:
                total -= scoring.approximated_penalty
                reasons.append(f"{fate} (−{scoring.approximated_penalty:g})")
        elif fate.kind is FateKind.approximated:
            total -= scoring.approximated_penalty
            reasons.append(f"{fate} (−{scoring.approximated_penalty:g})")
        elif fate.kind is FateKind.dropped:
            total -= scoring.dropped_penalty
            reasons.append(f"{fate} (−{scoring.dropped_penalty:g})")
    if f.status is Status.deprecated:
        total -= scoring.deprecated_penalty
        when = f", shuts down {f.shutdown_on.isoformat()}" if f.shutdown_on else ""
        use = f"; replacement {f.replacement}" if f.replacement else ""
        reasons.append(f"deprecated{when}{use} (−{scoring.deprecated_penalty:g})")
    for rules, name, kind in ((policy.providers, f.provider, "provider"),
                              (policy.models, f.model_id, "model")):
        bonus = rules.prefer.get(name)
        if bonus:
            total += bonus
            reasons.append(f"policy prefers {kind} {name} ({bonus:+g})")
    if short_mp is not None:
        reasons.append(short_mp + "; passes with an upscale step")
    flags: list[str] = []
    if below is not None:
        flags.append(f"below the {quality} minimums ({below}); kept because the model was pinned")
    if mq.estimated_axes:
        flags.append("estimated: " + ", ".join(mq.estimated_axes))
    if mq.flat_unknown_axes:
        flags.append(f"unknown (counted as {axis.unknown_score:g}): "
                     + ", ".join(mq.flat_unknown_axes))
    prior_only = [a for a in mq.unknown_axes if a not in mq.flat_unknown_axes]
    if prior_only:
        flags.append("unknown (no evidence, counted as prior − SE): " + ", ".join(prior_only))
    if mq.uncertain_axes:
        flags.append("uncertain: " + ", ".join(mq.uncertain_axes))
    if per is None:
        flags.append("price unknown")
    elif est.approximate:
        flags.append("approximate price")
    if per is not None and call.offer.price_stale:  # freshness hook (catalog helper)
        flags.append(f"price as of {call.offer.offer.as_of}, "
                     f"{call.offer.price_age_days()} days old: stale (modelglass catalog sync)")
    return Row(offer=call.offer, quality=mq.quality, cost_usd=est.usd, cost_per_image_usd=per,
               cost_score=cs, total=total, reasons=tuple(reasons), flags=tuple(flags),
               latency_s=latency_s)
