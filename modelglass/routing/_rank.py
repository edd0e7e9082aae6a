"""Ranking one request shape: every offer through the hard constraints in order (see
:func:`~._route.route`), the passing ones scored and ordered. :func:`rank` is the exhaustive path
(every offer planned); :mod:`._bound` plans only until the best offer is proven and defers the
rest to this one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..catalog._schema import Status
from ..errors import InvalidRequest
from ..result import FateKind
from ._decision import Rejection, Row, Text
from ._index import _Facts, _Index
from ._policy import Policy
from ._reasons import (
    _budget_reason,
    _latency_reason,
    _licence_reason,
    _lifecycle_reason,
    _names_reason,
    _open_weights_reason,
    _pin_reason,
    _plan_constraint,
)
from ._scoring import ModelQuality, Scoring, cost_score
from ._sizing import size_gap

if TYPE_CHECKING:
    from ..catalog import CostEstimate, OfferView, QualityAxis
    from ..plan import ProviderCall
    from ..request import ImageRequest

class _Context:
    """What one ranking reads (bundled so the memo miss path takes one argument), and the plans
    made so far (``staged``: offer index → call or rejection; planning is deterministic, so the
    exhaustive path reuses what the bound-first path planned)."""

    __slots__ = (
        "axis",
        "check",
        "commercial_why",
        "estimates",
        "estimator",
        "latency",
        "latency_limit",
        "min_mp",
        "negative",
        "open_weights",
        "planner",
        "policy",
        "qtable",
        "quality",
        "request",
        "reused",
        "screen_key",
        "shared",
        "staged",
        "today",
        "views",
        "want_px",
    )

    def __init__(self, request: ImageRequest, quality: str, axis: QualityAxis,
                 qtable: dict[str, ModelQuality], check: Callable[[int], str | None],
                 today: dt.date, policy: Policy, planner: Callable[[OfferView], ProviderCall],
                 views: list[OfferView], latency: list[tuple[float | None, str]] | None,
                 latency_limit: float | None, screen_key: Any = None,
                 estimator: Callable[[OfferView], CostEstimate | None] | None = None) -> None:
        self.request, self.quality, self.axis, self.qtable = request, quality, axis, qtable
        self.check, self.today, self.policy, self.planner = check, today, policy, planner
        self.views, self.latency, self.latency_limit = views, latency, latency_limit
        self.staged: dict[int, ProviderCall | Rejection] = {}
        #: The planner's outputs shared with shapes that differ only in budget (offer index ->
        #: call or refusal), and the offers whose call came from there: planned for another
        #: request of the same plan shape (its prompt, its drawn seed), so never handed out as
        #: this request's call (the decision plans those again when read).
        self.shared: dict[int, Any] = {}
        #: Offer index -> its unfitted estimate, shared with shapes that differ only in budget
        #: or ``cfg`` (neither enters :func:`~modelglass.plan.estimate_unfitted`).
        self.estimates: dict[int, CostEstimate | None] = {}
        self.reused: set[int] = set()
        #: What the steps before planning depend on (see :func:`~._bound.bound_first`).
        self.screen_key = screen_key
        #: The plan's estimate, or less, before the payload (:func:`~modelglass.plan.estimate_unfitted`).
        self.estimator = estimator
        self.min_mp = axis.min_megapixels
        self.commercial_why = ("commercial=True requested" if request.commercial else
                               "the policy requires commercial_use: true"
                               if policy.require.commercial_use else None)
        self.open_weights = policy.require.open_weights is True
        self.negative = request.negative_prompt is not None
        self.want_px = request.pixel_size() if request.size else None


#: What one ranking yields: rows (ranked), rejections, notices, and the reserve: offers rejected
#: only for the size, with what they make instead (used when every offer that makes the size is
#: cooling down).
Ranked = tuple[list[Row], list[Rejection], tuple[str, ...], list[tuple[Row, str]]]

#: What an offer that passed steps 1-9 carries into planning: the model's quality, the
#: pinned-below note, the short-resolution note and its latency.
Screened = tuple[ModelQuality, "str | None", "str | None", "tuple[float | None, str]"]


def rank(idx: _Index, ctx: _Context, calls: dict[str, ProviderCall]) -> Ranked:
    """The exhaustive path: every offer through every step, in catalog order (see
    :func:`~._route.route`); ``calls`` gets the plan of every passing offer."""
    rows: list[Row] = []
    approx: list[tuple[Row, str]] = []  # passing offers that cannot make the requested size
    rejected: list[Rejection] = []
    reject = rejected.append
    for i, f in enumerate(idx.facts):
        pre = screen(i, f, ctx)
        if isinstance(pre, Rejection):
            reject(pre)
            continue
        out = plan_offer(i, f, ctx)
        if isinstance(out, Rejection):
            reject(out)
            continue
        if i not in ctx.reused:
            calls[f.key] = out
        row = _score(f, out, pre, ctx)
        gap = size_gap(ctx.want_px, out) if ctx.want_px is not None else None
        if gap is not None:
            approx.append((row, gap))
        else:
            rows.append(row)
    return _settle(idx, ctx.request, ctx.policy, rows, approx, rejected, calls)


def screen(i: int, f: _Facts, ctx: _Context) -> Rejection | Screened:
    """Steps 1-9 (everything before planning): the first failure, else what planning needs."""
    refused = _screen(i, f, ctx)
    if refused is not None:
        return refused
    return _admit(i, f, ctx)


def _screen(i: int, f: _Facts, ctx: _Context) -> Rejection | None:
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
    if ctx.commercial_why:
        why = _licence_reason(f, ctx.commercial_why)
        if why:
            return Rejection(f.key, "licence", why)
    if ctx.open_weights:
        why = _open_weights_reason(f)
        if why:
            return Rejection(f.key, "licence", why)
    return None


def _admit(i: int, f: _Facts, ctx: _Context) -> Rejection | Screened:
    """Steps 7-9 (minimum, latency, resolution without an upscaler): the first failure, else
    the model's quality, the pinned-below note, the short-resolution note and latency."""
    request, quality, policy, min_mp = ctx.request, ctx.quality, ctx.policy, ctx.min_mp
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
    return mq, below, short_mp, lat


def plan_offer(i: int, f: _Facts, ctx: _Context) -> ProviderCall | Rejection:
    """Steps 10-11 (plan, upscale fit, budget) for an offer that passed :func:`screen`: its
    call, or the first failure. Planned once per ranking (``ctx.staged``)."""
    hit = ctx.staged.get(i)
    if hit is None:
        hit = ctx.staged[i] = _plan_offer(i, f, ctx.views[i], ctx)
    return hit


def _plan_offer(i: int, f: _Facts, view: OfferView, ctx: _Context) -> ProviderCall | Rejection:
    request, policy = ctx.request, ctx.policy
    raw = ctx.shared.get(i)
    if raw is None:
        try:
            raw = ctx.planner(view)
        except InvalidRequest as exc:
            raw = Rejection(f.key, _plan_constraint(exc, request), str(exc))
        ctx.shared[i] = raw
    else:
        ctx.reused.add(i)
    if isinstance(raw, Rejection):
        return raw
    call = raw
    min_mp = ctx.min_mp
    if min_mp is not None and (f.max_mp is None or f.max_mp < min_mp - 1e-9):
        assert policy.upscale_available is not None
        if not policy.upscale_available(call):
            shown = "unknown" if f.max_mp is None else f"{f.max_mp:.2f} MP"
            return Rejection(f.key, "resolution", f"largest output {shown} < {min_mp:g} MP the "
                             f"{ctx.quality} axis needs and no upscale step fits")
    why = _budget_reason(call, request, ctx.axis, ctx.quality, policy)
    if why:
        return Rejection(f.key, "budget", why)
    return call


def _settle(idx: _Index, request: ImageRequest, policy: Policy, rows: list[Row],
            approx: list[tuple[Row, str]], rejected: list[Rejection],
            calls: dict[str, ProviderCall]) -> Ranked:
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


def _score(f: _Facts, call: ProviderCall, pre: Screened, ctx: _Context) -> Row:
    """Step 12's input: the passing offer's total, and the reasons and flags that explain it
    (written out only when read: :func:`_text`)."""
    mq, _, _, (latency_s, _) = pre
    axis, policy, negative = ctx.axis, ctx.policy, ctx.negative
    scoring: Scoring = policy.scoring
    cw = axis.cost_weight
    est = call.estimate
    per = est.per_image_usd
    cs = cost_score(per, axis.cost_reference_usd, scoring)
    total = (1.0 - cw) * mq.quality / 10.0 + cw * cs + mq.adjustment
    for fate in call.fates:
        if fate.control == "negative_prompt" and negative:
            if fate.faithful:
                total += scoring.negative_bonus
            elif fate.kind is FateKind.dropped:
                total -= scoring.negative_penalty
            else:
                total -= scoring.approximated_penalty
        elif fate.kind is FateKind.approximated:
            total -= scoring.approximated_penalty
        elif fate.kind is FateKind.dropped:
            total -= scoring.dropped_penalty
    if f.status is Status.deprecated:
        total -= scoring.deprecated_penalty
    for rules, name in ((policy.providers, f.provider), (policy.models, f.model_id)):
        bonus = rules.prefer.get(name)
        if bonus:
            total += bonus
    text = Text(_text, f, call.fates, est, call.offer, pre, axis, ctx.quality, policy, negative,
                cs)
    return Row(offer=call.offer, quality=mq.quality, cost_usd=est.usd, cost_per_image_usd=per,
               cost_score=cs, total=total, reasons=text, flags=text, latency_s=latency_s)


def _text(f: _Facts, fates: Any, est: CostEstimate, offer: OfferView, pre: Screened,
          axis: QualityAxis, quality: str, policy: Policy, negative: bool,
          cs: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The reasons and flags of :func:`_score`'s row, in the order its terms were added."""
    mq, below, short_mp, _ = pre
    scoring: Scoring = policy.scoring
    per = est.per_image_usd
    reasons = [f"quality {mq.quality:.2f}/10 on the {quality} weights",
               (f"cost {est.basis}{' (approximate)' if est.approximate else ''} → cost score "
                f"{cs:.2f}" if per is not None else
                f"price unknown → cost score {cs:g} (unknown is never free)")]
    reasons.extend(mq.notes)
    for fate in fates:
        if fate.control == "negative_prompt" and negative:
            if fate.faithful:
                reasons.append(f"negative prompt {fate.kind.value} (+{scoring.negative_bonus:g})")
            elif fate.kind is FateKind.dropped:
                reasons.append(f"negative prompt dropped: {fate.reason} "
                               f"(−{scoring.negative_penalty:g})")
            else:
                reasons.append(f"{fate} (−{scoring.approximated_penalty:g})")
        elif fate.kind is FateKind.approximated:
            reasons.append(f"{fate} (−{scoring.approximated_penalty:g})")
        elif fate.kind is FateKind.dropped:
            reasons.append(f"{fate} (−{scoring.dropped_penalty:g})")
    if f.status is Status.deprecated:
        when = f", shuts down {f.shutdown_on.isoformat()}" if f.shutdown_on else ""
        use = f"; replacement {f.replacement}" if f.replacement else ""
        reasons.append(f"deprecated{when}{use} (−{scoring.deprecated_penalty:g})")
    for rules, name, kind in ((policy.providers, f.provider, "provider"),
                              (policy.models, f.model_id, "model")):
        bonus = rules.prefer.get(name)
        if bonus:
            reasons.append(f"policy prefers {kind} {name} ({bonus:+g})")
    if short_mp is not None:
        reasons.append(short_mp + "; passes with an upscale step")
    return tuple(reasons), _flags(mq, below, axis, quality, est, offer)


def _flags(mq: ModelQuality, below: str | None, axis: QualityAxis, quality: str,
           est: CostEstimate, offer: OfferView) -> tuple[str, ...]:
    per = est.per_image_usd
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
    if per is not None and offer.price_stale:  # freshness hook (catalog helper)
        flags.append(f"price as of {offer.offer.as_of}, "
                     f"{offer.price_age_days()} days old: stale (modelglass catalog sync)")
    return tuple(flags)
