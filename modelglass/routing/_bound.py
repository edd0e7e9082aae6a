"""Bound-first ranking: a request shape not seen before plans only until its best offer is proven.

Planning an offer (payload, fates, geometry, cost) is what a cold ranking spends its time on.
Every other part of an offer's total is known before planning: its model's weighted quality and
signal adjustment, the deprecation penalty and the policy's preferences. Only two parts wait for
the plan, and both have a cheap upper bound:

- the cost score ``ref / (ref + cost per image)`` is at most that of the offer's *price floor*,
  the least its catalog price can come to for any request (a per-image price is itself; a
  per-megapixel price rounded up bills at least one megapixel; otherwise 0, i.e. free), and
  never more than ``max(that, unknown_cost_score)`` (an estimate can come out unknown);
- the fates only subtract (penalties are ≥ 0), except the negative-prompt bonus.

So the offers that pass the steps before planning are visited by that upper bound, best first,
and planned and scored one by one. An offer whose floor depends on the request (priced per
megapixel, tier, token or GPU-second) is first refined: its cost score is bounded by its
*unfitted* estimate (:func:`~modelglass.plan.estimate_unfitted`: the plan's prompt, steps,
geometry and tier without the payload, equal to the plan's estimate where no published schema
can move the size, never above it) and it goes back in the queue; it is planned only when it
comes out on top again; once the next bound falls below the best total so far (by
more than the policy's ``tie_tolerance`` and a rounding margin), no offer left can win, and the
first row is proven. The rest of the decision (every ranked row, every rejection with its reason)
is the exhaustive :func:`~._rank.rank`, run on first use, reusing the plans already made; so a
decision's data is identical whichever path made it (``tests/test_bound_first.py`` checks it on
thousands of random requests). Where the bound cannot hold (a policy with a negative penalty), or
the walk plans every offer anyway, the exhaustive path runs at once.
"""

from __future__ import annotations

import heapq
import threading
from typing import TYPE_CHECKING

from ..catalog._schema import PriceKind, Status
from ._decision import Rejection, Row
from ._index import _Index
from ._rank import Ranked, Screened, _Context, _order, _score, plan_offer, rank, screen
from ._scoring import cost_score
from ._sizing import size_gap

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..catalog import OfferView
    from ..plan import ProviderCall
    from ..providers.base import Provider

__all__ = ["Ranking", "bound_first", "price_floor"]

#: How far below the best total the next bound must fall to stop: far above the float error of
#: summing a total in another order (~1e-16), and above ``Row.sort_key``'s rounding to 1e-9.
_MARGIN = 1e-8


class Ranking:
    """One request shape's ranking: the first row (and notices) now, the full
    :data:`~._rank.Ranked` on first use (then kept)."""

    __slots__ = ("_calls", "_ctx", "_full", "_idx", "_lock", "first", "notices")

    def __init__(self, first: Row | None, notices: tuple[str, ...], *, full: Ranked | None = None,
                 idx: _Index | None = None, ctx: _Context | None = None,
                 calls: dict[str, ProviderCall] | None = None) -> None:
        self.first, self.notices = first, notices
        self._full, self._idx, self._ctx, self._calls = full, idx, ctx, calls
        self._lock = threading.Lock()

    @classmethod
    def complete(cls, full: Ranked) -> Ranking:
        """A ranking already computed in full."""
        rows, _, notices, _ = full
        return cls(rows[0] if rows else None, notices, full=full)

    @property
    def is_complete(self) -> bool:
        return self._full is not None

    def full(self) -> Ranked:
        """Rows, rejections, notices and the size reserve, as :func:`~._rank.rank` gives them."""
        if self._full is None:
            with self._lock:
                if self._full is None:
                    assert self._idx is not None and self._ctx is not None
                    self._full = rank(self._idx, self._ctx, self._calls or {})
                    self._idx = self._ctx = self._calls = None  # the plans are no longer needed
        return self._full


def bound_first(idx: _Index, ctx: _Context, calls: dict[str, ProviderCall],
                providers: Mapping[str, Provider]) -> Ranking:
    """The ranking of ``ctx``'s request, its first row proven with as few plans as the bounds
    allow (see the module docstring); ``calls`` gets the plans made."""
    scoring = ctx.policy.scoring
    if min(scoring.approximated_penalty, scoring.dropped_penalty, scoring.negative_penalty) < 0:
        return Ranking.complete(rank(idx, ctx, calls))  # a fate may add: no bound
    order = _screened(idx, ctx, providers)
    stop = _MARGIN if ctx.policy.tie_break == ("cost", "offer") and \
        ctx.policy.tie_tolerance == 0 else ctx.policy.tie_tolerance + 2 * _MARGIN
    rows: list[Row] = []  # planned passing offers that make the size asked (all, without size=)
    best = float("-inf")
    cw, ref, scoring = ctx.axis.cost_weight, ctx.axis.cost_reference_usd, ctx.policy.scoring
    # A max-heap on the bound (catalog order among equals); the sorted order already is one.
    heap = [(-bound, i, pre, base, refine) for bound, i, pre, base, refine in order]
    while heap:
        neg, i, pre, base, refine = heapq.heappop(heap)
        if rows and -neg < best - stop:
            first = _order(rows, ctx.policy)[0]
            return Ranking(first, (), idx=idx, ctx=ctx, calls=calls)
        if refine and ctx.estimator is not None and i not in ctx.staged and i not in ctx.shared:
            # Refine a size-, steps- or tier-priced offer's cost score with its unfitted
            # estimate (the plan's, or less) before paying for a plan not made yet; back on
            # the heap.
            if i in ctx.estimates:  # kept for the plan shape less its cfg
                est = ctx.estimates[i]
            else:
                est = ctx.estimates[i] = ctx.estimator(ctx.views[i])
            if est is not None:
                cs = cost_score(est.per_image_usd, ref, scoring)
                heapq.heappush(heap, (-(base + cw * cs), i, pre, base, False))
                continue
        call = plan_offer(i, idx.facts[i], ctx)
        if isinstance(call, Rejection):
            continue
        if i not in ctx.reused:
            calls[idx.facts[i].key] = call
        row = _score(idx.facts[i], call, pre, ctx)
        if ctx.want_px is not None and size_gap(ctx.want_px, call) is not None:
            continue  # ranks only when no offer makes the size: the exhaustive path decides
        rows.append(row)
        best = max(best, row.total)
    # Every offer was planned (or none makes the size): the exhaustive path, on the same plans.
    return Ranking.complete(rank(idx, ctx, calls))


#: Bound-first orders kept per catalog (one per screening key: quality, pins, availability, ...).
_ORDERS = 64


#: One offer on the bound-first walk: its bound, index, screening, the bound less its cost
#: term, and whether the cost term may be refined (its floor depends on size, steps or tier).
_Step = tuple[float, int, Screened, float, bool]


def _screened(idx: _Index, ctx: _Context, providers: Mapping[str, Provider]) -> list[_Step]:
    """:func:`_by_bound`, memoised per ``ctx.screen_key`` and the providers that estimate
    their own costs (nothing else the steps before planning or the bounds read)."""
    own = frozenset(name for name, p in providers.items() if _estimates_itself(p))
    if ctx.screen_key is None:
        return _by_bound(idx, ctx, own)
    key = (ctx.screen_key, own)
    with idx.lock:
        hit = idx.orders.get(key)
        if hit is not None:
            idx.orders.move_to_end(key)
            return hit
    order = _by_bound(idx, ctx, own)
    with idx.lock:
        idx.orders[key] = order
        while len(idx.orders) > _ORDERS:
            idx.orders.popitem(last=False)
    return order


def _by_bound(idx: _Index, ctx: _Context, own: frozenset[str]) -> list[_Step]:
    """The offers that pass the steps before planning, with an upper bound on their total, the
    highest bound first (catalog order among equal bounds)."""
    policy, axis, scoring = ctx.policy, ctx.axis, ctx.policy.scoring
    cw, ref = axis.cost_weight, axis.cost_reference_usd
    fates = max(0.0, scoring.negative_bonus) if ctx.negative else 0.0
    unknown = scoring.unknown_cost_score
    if idx.floors is None:
        idx.floors = [price_floor(v) for v in idx.views]
    floors = idx.floors
    out: list[_Step] = []
    for i, f in enumerate(idx.facts):
        pre = screen(i, f, ctx)
        if isinstance(pre, Rejection):
            continue
        mq = pre[0]
        floor = 0.0 if f.provider in own else floors[i]
        cs = unknown if floor is None else max(ref / (ref + floor), unknown)
        base = (1.0 - cw) * mq.quality / 10.0 + mq.adjustment + fates
        if f.status is Status.deprecated:
            base -= scoring.deprecated_penalty
        base += policy.providers.prefer.get(f.provider, 0.0) + \
            policy.models.prefer.get(f.model_id, 0.0)
        kind = idx.views[i].offer.price.kind
        out.append((base + cw * cs, i, pre, base,
                    cw > 0 and (kind not in _EXACT_FLOOR or f.provider in own)))
    out.sort(key=lambda t: -t[0])
    return out


#: Price kinds whose floor is the estimate for every request (nothing to refine).
_EXACT_FLOOR = frozenset({PriceKind.per_image, PriceKind.unknown})


def _estimates_itself(provider: Provider) -> bool:
    """Whether a provider overrides the catalog's cost estimate (its floor is then unknown: 0)."""
    method = getattr(type(provider), "cost_estimate", None)
    return getattr(method, "__qualname__", "") != "Provider.cost_estimate"


def price_floor(view: OfferView) -> float | None:
    """The least per-image estimate the offer's catalog price can give for any request (0 when
    it depends on size, steps or tokens); None when the price is unknown (every estimate is)."""
    price = view.offer.price
    kind = price.kind
    if kind is PriceKind.unknown:
        return None
    if kind in (PriceKind.per_image, PriceKind.first_megapixel):
        extra = price.usd_per_extra_megapixel if kind is PriceKind.first_megapixel else 0.0
        return price.usd if price.usd is not None and price.usd >= 0 and (extra or 0) >= 0 \
            else 0.0
    if kind is PriceKind.per_image_resolution and price.usd is not None \
            and price.resolution_multipliers:
        low = price.usd * min(price.resolution_multipliers.values())
        return low if low >= 0 else 0.0
    if kind is PriceKind.per_megapixel and price.round_up_megapixels \
            and price.usd_per_megapixel is not None:
        return max(price.usd_per_megapixel, 0.0)  # billed megapixels round up to at least 1
    return 0.0
