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
planning and only plans the candidates whose ``call`` is read. A new shape is ranked
bound-first (:mod:`._bound`): offers visited by an upper bound on their total, planned only until
the best is proven (shapes that differ only in budget share their plans: planning does not read
it; a shared plan is never this request's ``call``, which is planned again when read); the rest of the decision (``ranked``, ``rejected``, ``explain()``) is ranked
on first read, identical to ranking every offer at once (:mod:`._rank`).

Modules: :mod:`._index` (per-catalog caches), :mod:`._reasons` (one function per constraint),
:mod:`._rank` (the exhaustive ranking and scoring), :mod:`._bound` (bound-first), this one (the
entry point, memo, availability, health and learning after the memo).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import _clock
from .._encoders import SHORTEST_WINDOW
from ..catalog._price import prompt_tokens
from ..errors import InvalidRequest
from ..plan import estimate_unfitted, plan_call
from ._bound import Ranking, bound_first
from ._decision import Rejection, RoutingDecision, Row
from ._index import _Index, _index, clear_cache
from ._latency import LatencySource, offer_latency
from ._learning import learned_ranking, request_check
from ._policy import Policy
from ._rank import _Context, _order, rank
from ._reasons import _budget_text, _latency_limit, _lifecycle_reason
from ._signals import Signals, prompt_signals

if TYPE_CHECKING:
    from ..catalog import Catalog, CostEstimate, OfferView
    from ..plan import ProviderCall
    from ..providers.base import Availability, Provider
    from ..request import ImageRequest
    from ._health import HealthBoard

__all__ = ["clear_cache", "route"]

Available = Callable[["OfferView"], "Availability"] | Iterable[str] | None

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

    def estimator(view: OfferView) -> CostEstimate | None:
        return estimate_unfitted(plan_request, view, provider=providers.get(view.provider))

    latency_limit, latency = _latencies(idx, request, policy, observed)
    key = _memo_key(idx, request, quality, signals, today, avail_key, policy, providers, latency)
    # What the steps before planning read: shapes that differ only in what planning reads
    # (size, n, budget, controls) share the bound-first order of their offers.
    screen_key = (quality, request.model, request.provider, request.commercial,
                  request.max_latency_s, request.negative_prompt is not None, signals.key, today,
                  avail_key, policy, tuple(latency) if latency is not None else None)
    calls: dict[str, ProviderCall] = {}
    ranked = _memoised_rank(
        idx, key, providers, calls,
        lambda: _Context(request, quality, axis, qtable, check, today, policy, planner, views,
                         latency, latency_limit, screen_key, estimator))
    common: dict[str, Any] = {"request": request, "quality": quality, "quality_axis": axis,
                                  "signals": signals, "weights": weights, "budget": budget,
                                  "planner": planner, "calls": calls, "policy": policy}
    if not ranked.is_complete and not _reranks(request, policy, health, observed):
        # The first row is proven; the rest of the decision is ranked when first read.
        decision = RoutingDecision(**common, first=ranked.first, notices=ranked.notices,
                                   deferred=lambda: ranked.full()[:2])
    else:
        decision = _reranked(ranked, request, policy, health, observed, catalog, common)
    decision.quality_defaulted = defaulted
    return decision


def _reranks(request: ImageRequest, policy: Policy, health: HealthBoard | None,
             observed: LatencySource | None) -> bool:
    """Whether the steps after the memo (health, learning) may change the ranking: a provider
    or offer cooling down, or an outcome check whose observations may reorder the rows."""
    if health is not None and policy.health.enabled and health.snapshot(policy.health):
        return True
    return (request_check(request) is not None and policy.learning.enabled
            and observed is not None and hasattr(observed, "check_rate"))


def _reranked(ranked: Ranking, request: ImageRequest, policy: Policy,
              health: HealthBoard | None, observed: LatencySource | None, catalog: Catalog,
              common: dict[str, Any]) -> RoutingDecision:
    """The decision from the full ranking, after health and learning had their say."""
    rows, rejected, notices, reserve = ranked.full()
    if health is not None and policy.health.enabled and rows:
        rows, rejected, notices = _health_fallback(rows, rejected, notices, reserve, health,
                                                   policy, request)
    # learning hook: where an outcome check applies and enough of them were observed, rank by
    # expected cost per accepted image (after the memo: observations change between calls)
    rows, ranking = learned_ranking(rows, request, policy.learning, observed, catalog)
    return RoutingDecision(**common, rows=rows, rejected=rejected, notices=notices,
                           ranking=ranking)


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
    """The request *shape* the ranking depends on (the prompt only through what reads it).

    The prompt enters through its signals and its length where a prompt limit reads it, through
    its token estimate where some offer is priced by tokens (that offer's cost depends on it),
    and whole where it may be longer than the shortest text encoder's window (the cut's wording
    quotes it). A shape remembered for one prompt never shows another prompt's cost or cut."""
    plen = len(request.prompt)
    tokens = prompt_tokens(request.prompt)[0] if idx.token_priced else None
    long_prompt = request.prompt if plen > SHORTEST_WINDOW else None
    key = (quality, request.model, request.provider, request.negative_prompt,
           request.steps, request.seed is None, request.size, request.aspect_ratio,
           request.print_size, request.dpi, request.n, request.sampler, request.strict, request.commercial, request.max_latency_s,
           repr(request.provider_options) if request.provider_options else None,
           plen if (idx.min_prompt_limit is not None and plen > idx.min_prompt_limit)
           or (request.strict and plen > SHORTEST_WINDOW) else 0,  # encoder cuts refuse strict
           tokens, long_prompt, signals.key, today, avail_key, policy,
           tuple(sorted((k, id(p)) for k, p in providers.items())),
           tuple(v for v, _ in latency) if latency is not None else None,
           request.cfg)  # last: unfitted estimates do not read it (shared without it)
    # The budget last and apart: planning does not read it (shapes that differ only in budget
    # share their plans, :meth:`~._index._Index.shared_plans`).
    return key, request.max_cost_usd


#: False routes every shape by the exhaustive path (every offer planned); the property test
#: compares the two (``tests/test_bound_first.py``).
BOUND_FIRST = True


def _memoised_rank(idx: _Index, key: tuple[Any, ...], providers: Mapping[str, Provider],
                   calls: dict[str, ProviderCall], make_ctx: Callable[[], _Context]) -> Ranking:
    """The ranking for ``key`` from the memo, else ranked now (filling ``calls``) and stored."""
    with idx.lock:
        hit = idx.memo.get(key)
        if hit is not None:
            idx.memo.move_to_end(key)
    if hit is not None:
        return hit[0]
    ctx = make_ctx()
    ctx.shared = idx.shared_plans(key[0], tuple(providers.values()))
    ctx.estimates = idx.shared_plans(key[0][:-1], tuple(providers.values()), idx.estimates)
    ranked = bound_first(idx, ctx, calls, providers) if BOUND_FIRST else \
        Ranking.complete(rank(idx, ctx, calls))
    with idx.lock:
        # The providers ride along so their ids in the key cannot be reused while cached.
        idx.memo[key] = (ranked, tuple(providers.values()))
        while len(idx.memo) > idx.memo_limit:
            idx.memo.popitem(last=False)
    return ranked


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
    model, provider = request.model, request.provider
    for i, f in enumerate(idx.facts):
        if (model is not None and f.model_id != model) \
                or (provider is not None and f.provider != provider) \
                or _lifecycle_reason(f, today):  # pinned out (_pin_reason, unworded) or retired
            continue
        a = available(idx.views[i])
        if not a.ok:
            out[i] = a.reason or f"provider {f.provider!r} is not available"
    return out

