"""What routing decided and why: :class:`RoutingDecision`, :class:`Candidate`, :class:`Rejection`.

A decision is data first (``choice``, ``ranked``, ``rejected``, ``signals``) and text second
(:meth:`RoutingDecision.explain`). ``ranked`` is the fallback order: the client tries
``ranked[0]`` and moves down the list only to offers that passed the same hard constraints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..catalog._view import OfferNamed
from ..errors import NoEligibleModel, StrictRefused
from ._signals import Signals

if TYPE_CHECKING:
    from ..catalog import OfferView, QualityAxis
    from ..plan import ProviderCall
    from ..request import ImageRequest

__all__ = ["CONSTRAINTS", "Candidate", "Rejection", "RoutingDecision", "Row"]

#: Hard constraints in the order they are checked; a rejection names the first one that failed.
CONSTRAINTS = ("pin", "lifecycle", "availability", "health", "policy", "licence", "minimum",
               "latency", "resolution", "strict", "geometry", "plan", "budget", "size")

_NEXT_STEP = {
    "pin": "unpin model=/provider= to let the router choose",
    "lifecycle": "use the named replacement",
    "availability": ("configure the provider (API key, client, local weights); without keys, "
                     "try it on the built-in simulators (CLI: generate --simulate) or route and "
                     "plan with available= (CLI: --assume-available fal,replicate,openai)"),
    "health": "wait for the cooldown, or change the policy's health: thresholds",
    "policy": "widen the policy's providers:/models: allow and deny lists",
    "licence": ("drop commercial=True (or the policy's require:) only if the image is not for "
                "commercial use"),
    "latency": "raise max_latency_s / limits.max_latency_p90_s, or allow unknown latency",
    "minimum": "use a lower quality axis, or add evidence for unknown scores to the catalog",
    "resolution": "ask for a smaller print, or provide an upscaler",
    "strict": "set strict=False to accept approximations, or change the controls",
    "geometry": "ask for a size the offers can make",
    "plan": "fix the request field the planner names",
    "budget": "raise max_cost_usd, or use a cheaper quality axis",
    "size": "ask for a size more offers make",
}


@dataclass(frozen=True)
class Rejection:
    """An offer that failed a hard constraint: which one, and why, in numbers."""

    offer_key: str
    constraint: str
    reason: str

    def __str__(self) -> str:
        return f"{self.offer_key}: {self.constraint}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"offer": self.offer_key, "constraint": self.constraint, "reason": self.reason}


class Text:
    """A row's reasons and flags before they are written out: :meth:`render` gives both, on the
    first read of either (only :meth:`RoutingDecision.explain` and ``to_dict()`` read them, so
    ranking and proving the best offer format no text)."""

    __slots__ = ("_args", "_done", "_render")

    def __init__(self, render: Callable[..., tuple[tuple[str, ...], tuple[str, ...]]],
                 *args: Any) -> None:
        self._render, self._args = render, args
        self._done: tuple[tuple[str, ...], tuple[str, ...]] | None = None

    def render(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The reasons and the flags (rendered once)."""
        if self._done is None:
            self._done = self._render(*self._args)
            self._args = ()
        return self._done


class _LazyText:
    """A :class:`Row` field holding a tuple of text, or a :class:`Text` to render on first read."""

    def __init__(self, which: int) -> None:
        self._which = which
        self._slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: object | None, owner: type | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()  # the field's default
        value = obj.__dict__[self._slot]
        if isinstance(value, Text):
            value = obj.__dict__[self._slot] = value.render()[self._which]
        return value  # type: ignore[no-any-return]

    def __set__(self, obj: object, value: tuple[str, ...] | Text) -> None:
        obj.__dict__[self._slot] = value

    def raw(self, obj: object) -> tuple[str, ...] | Text:
        """The stored value, unrendered."""
        return obj.__dict__[self._slot]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Row:
    """A passing offer's scores, independent of the prompt's words (shared between decisions
    for requests of the same shape). ``reasons`` and ``flags`` may be given as one
    :class:`Text`, rendered when first read."""

    offer: OfferView
    quality: float
    cost_usd: float | None
    cost_per_image_usd: float | None
    cost_score: float
    total: float
    reasons: _LazyText = _LazyText(0)
    flags: _LazyText = _LazyText(1)
    latency_s: float | None = None
    #: The pass rate and cost per accepted image this row was ranked on (routing that learns).
    learned: str = ""

    def sort_key(self) -> tuple[float, float, str]:
        # total desc, then cost asc (unknown last), then offer key: deterministic.
        cost = self.cost_per_image_usd if self.cost_per_image_usd is not None else float("inf")
        return (-round(self.total, 9), cost, self.offer.key)


@dataclass(frozen=True, eq=False)
class Candidate(Row, OfferNamed):
    """One offer that passed every hard constraint, with its scores and its plan: a
    :class:`Row` of the ranking and the request's plan on that offer.

    ``quality`` is the weighted capability score (0–10); ``cost_usd`` the estimated cost of the
    whole call (None: price unknown); ``total`` what the ranking sorts by; ``reasons`` how the
    total came about, for people. ``call`` is the :class:`~modelglass.plan.ProviderCall`.
    Compared and hashed by identity, like the decision it belongs to.
    """

    _call: ProviderCall | None = field(default=None, repr=False)
    _planner: Callable[[OfferView], ProviderCall] | None = field(default=None, repr=False)

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @classmethod
    def of(cls, row: Row, call: ProviderCall | None,
           planner: Callable[[OfferView], ProviderCall]) -> Candidate:
        """The candidate of ``row``, with its plan (or how to make it on first use)."""
        values = {name: getattr(row, name) for name in _ROW_FIELDS if name not in _TEXT}
        values.update({name: _TEXT[name].raw(row) for name in _TEXT})  # still unrendered
        return cls(**values, _call=call, _planner=planner)

    @property
    def call(self) -> ProviderCall:
        """The plan of this request on this offer (planned on first use when not yet planned)."""
        if self._call is None:
            assert self._planner is not None
            object.__setattr__(self, "_call", self._planner(self.offer))
        assert self._call is not None
        return self._call

    def summary(self) -> str:
        return (f"{self.key}: total {self.total:.3f}, quality {self.quality:.2f}/10, "
                f"{_usd(self.cost_usd)}")

    def to_dict(self) -> dict[str, Any]:
        row: Row = self  # (the text fields read as Row's: rendered tuples)
        return {"offer": self.key, "model": self.model, "provider": self.provider,
                "total": round(self.total, 6), "quality": round(self.quality, 4),
                "cost_usd": self.cost_usd, "cost_per_image_usd": self.cost_per_image_usd,
                "cost_score": round(self.cost_score, 6), "reasons": list(row.reasons),
                "flags": list(row.flags)}


_ROW_FIELDS = tuple(f.name for f in fields(Row))
_TEXT: dict[str, _LazyText] = {"reasons": Row.__dict__["reasons"], "flags": Row.__dict__["flags"]}


def _usd(v: float | None) -> str:
    if v is None:
        return "price unknown"
    return f"${v:.4f}" if v < 0.1 else f"${v:.3f}"


class RoutingDecision:
    """The ranked offers for one request, the rejected ones with reasons, and how it was scored.

    >>> decision = route(ImageRequest(prompt="a fox", quality="draft"), catalog)  # doctest: +SKIP
    >>> decision.choice.key, decision.choice.cost_usd                            # doctest: +SKIP
    ('flux-schnell@fal', 0.003)
    >>> print(decision.explain())                                                 # doctest: +SKIP
    """

    def __init__(self, *, request: ImageRequest, quality: str, quality_axis: QualityAxis,
                 signals: Signals, weights: dict[str, float], budget: str | None,
                 planner: Callable[[OfferView], ProviderCall],
                 rows: Sequence[Row] | None = None, rejected: Sequence[Rejection] | None = None,
                 calls: dict[str, ProviderCall] | None = None,
                 notices: Sequence[str] = (), policy: Any = None,
                 ranking: str | None = None, first: Row | None = None,
                 deferred: Callable[[], tuple[Sequence[Row], Sequence[Rejection]]] | None = None
                 ) -> None:
        self.request = request
        self.quality = quality
        self.quality_axis = quality_axis
        self.signals = signals
        self.weights = weights
        self.budget = budget
        self._planner = planner
        self._calls = calls or {}
        # Either the rows and rejections now, or the first row now and the rest from
        # ``deferred`` on first read (a cold ranking proves its first row without planning
        # every offer; see ``_bound``): the data is the same either way.
        self._deferred = deferred
        if deferred is None:
            self._rows = rows or ()
            self.rejected = list(rejected or ())
            first = self._rows[0] if self._rows else None
        self._first = first
        #: What the choice does differently from what was asked, stated before anything is sent
        #: (e.g. a size no eligible offer makes).
        self.notices: list[str] = list(notices)
        self.policy = policy
        #: How the ranking was ordered when not by total (routing that learns: expected cost
        #: per accepted image; see :mod:`._learning`); None: by total.
        self.ranking = ranking

    #: True when the request named no quality and the policy's default axis was used.
    quality_defaulted: bool = False

    @cached_property
    def _rows(self) -> Sequence[Row]:
        assert self._deferred is not None
        return self._deferred()[0]

    @cached_property
    def rejected(self) -> list[Rejection]:
        """Every offer that failed a hard constraint, with the constraint and why."""
        assert self._deferred is not None
        return list(self._deferred()[1])

    def _candidate(self, row: Row) -> Candidate:
        return Candidate.of(row, self._calls.get(row.offer.key), self._planner)

    @cached_property
    def ranked(self) -> list[Candidate]:
        """Every passing offer, best first: the fallback order."""
        if not self._rows:
            return []
        rest = [self._candidate(r) for r in self._rows[1:]]
        return [self.choice, *rest] if self.choice is not None else rest

    @cached_property
    def choice(self) -> Candidate | None:
        """The best passing offer, or None when every offer was rejected."""
        return self._candidate(self._first) if self._first is not None else None

    def require(self) -> Candidate:
        """The choice; raises :class:`NoEligibleModel` with every rejection when there is none."""
        if self.choice is not None:
            return self.choice
        counts = Counter(r.constraint for r in self.rejected)
        summary = ", ".join(f"{n} {c}" for c, n in _by_order(counts))
        steps = "; ".join(_NEXT_STEP[c] for c, _ in _by_order(counts) if c in _NEXT_STEP)
        message = (f"no offer meets the hard constraints for quality {self.quality!r} "
                   f"({len(self.rejected)} rejected: {summary or 'the catalog has no offers'})."
                   + (f" To widen the choice: {steps}." if steps else ""))
        rejected = {r.offer_key: f"{r.constraint}: {r.reason}" for r in self.rejected}
        lead = _lead(self.request, self.rejected)
        # Offers that were available and pinned, yet refused: only strict stood in the way?
        usable = [r for r in self.rejected if r.constraint not in ("pin", "availability")]
        if (self.request.strict and (self.request.model or self.request.provider) and usable
                and all(r.constraint == "strict" for r in usable)):
            # The pinned offer could serve the request, only not exactly as asked: change the
            # request (InvalidRequest), not the routing.
            raise StrictRefused(message, rejected, lead=lead, field=_strict_field(usable[0]))
        raise NoEligibleModel(message, rejected, lead=lead)

    def rejected_by(self, constraint: str) -> list[Rejection]:
        return [r for r in self.rejected if r.constraint == constraint]

    # -- rendering --------------------------------------------------------------------------------
    def explain(self, *, runners_up: int = 5, rejected_per_group: int = 4) -> str:
        """A report for people: the choice and why, the runners-up, the rejections by constraint."""
        ax = self.quality_axis
        total_w = sum(self.weights.values()) or 1.0
        weights = ", ".join(f"{a} {w / total_w:.2f}" for a, w in
                            sorted(self.weights.items(), key=lambda kv: (-kv[1], kv[0])) if w > 0)
        lines = [f"Routing for quality {self.quality!r}: {ax.description}".rstrip(": "),
                 f"  weights: {weights}",
                 f"  cost weight {ax.cost_weight:g} (a ${ax.cost_reference_usd:g}/image offer "
                 f"scores 0.5 on cost); ceiling: {self.budget or 'none'}"]
        if self.quality_defaulted:
            lines.insert(1, f"  quality: {self.quality} (default; pass quality= / --quality "
                            "to choose)")
        if ax.minimums:
            lines.append("  hard minimums: " + ", ".join(f"{a} ≥ {v:g}"
                                                          for a, v in ax.minimums.items()))
        if self.policy is not None and getattr(self.policy, "source", None):
            lines.append(f"  policy: {self.policy.name} ({self.policy.source})")
        for notice in self.notices:
            lines.insert(0, f"NOTE: {notice}")
        for s in self.signals.describe():
            lines.append(f"  signal: {s}")
        if self.ranking:
            lines.append(f"  ranking: {self.ranking}")
        lines.append("")
        choice = self.choice
        if choice is None:
            lines.append(f"No eligible offer: all {len(self.rejected)} offers were rejected.")
        else:
            lines.append(f"Choice: {choice.key} ({choice.offer.model.name}) — total "
                         f"{choice.total:.3f}, quality {choice.quality:.2f}/10, "
                                 f"cost {_usd(choice.cost_usd)}"
                         + (f" for {self.request.n} images" if self.request.n > 1 else ""))
            if len(self._rows) > 1 and not self.ranking:
                second = self._rows[1]
                lines.append(f"  · wins by {choice.total - second.total:.3f} over "
                             f"{second.offer.key} (quality {second.quality:.2f}, "
                             f"cost {_usd(second.cost_usd)})")
            chosen: Row = choice
            for r in chosen.reasons:
                lines.append(f"  · {r}")
            if chosen.flags:
                lines.append(f"  · flags: {'; '.join(chosen.flags)}")
            rest = self._rows[1:1 + runners_up]
            if rest:
                best = self._rows[0]
                lines.append("")
                lines.append(f"Runners-up ({len(self._rows) - 1} more passed; fallback order):")
                for i, row in enumerate(rest, start=2):
                    if self.ranking and row.learned:
                        lines.append(f"  {i}. {row.offer.key} — {row.learned}"
                                     + (f"  [{'; '.join(row.flags)}]" if row.flags else ""))
                        continue
                    lines.append(f"  {i}. {row.offer.key} — total {row.total:.3f} "
                                 f"({row.total - best.total:+.3f}), quality {row.quality:.2f}, "
                                 f"cost {_usd(row.cost_usd)}"
                                 + (f"  [{'; '.join(row.flags)}]" if row.flags else ""))
                if len(self._rows) - 1 > runners_up:
                    lines.append(f"  … and {len(self._rows) - 1 - runners_up} more")
        if self.rejected:
            lines.append("")
            lines.append(f"Rejected ({len(self.rejected)}):")
            groups: dict[str, list[Rejection]] = {}
            for rej in self.rejected:
                groups.setdefault(rej.constraint, []).append(rej)
            for constraint, _ in _by_order(Counter({c: len(v) for c, v in groups.items()})):
                group = groups[constraint]
                lines.append(f"  {constraint} ({len(group)}):")
                lines.extend(f"    - {rej.offer_key}: {rej.reason}"
                             for rej in group[:rejected_per_group])
                if len(group) > rejected_per_group:
                    lines.append(f"    … and {len(group) - rejected_per_group} more")
        flagged = [row for row in self._rows[:1 + runners_up] if row.flags]
        if flagged:
            lines.append("")
            k = getattr(getattr(self.policy, "scoring", None), "uncertainty_penalty", 1.0)
            lines.append("Flags: scores marked estimated are stated priors, not measurements; "
                         f"calibrated scores count as mean − {k:g}×SE (an unknown one: its "
                         f"prior's; with no prior, {ax.unknown_score:g}).")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (what ``--json`` prints)."""
        return {
            "quality": self.quality,
            "quality_default": self.quality_defaulted,
            "weights": {a: round(w, 6) for a, w in self.weights.items()},
            "cost_weight": self.quality_axis.cost_weight,
            "cost_reference_usd": self.quality_axis.cost_reference_usd,
            "budget": self.budget,
            "signals": self.signals.to_dict(),
            "notices": list(self.notices),
            "ranking": self.ranking,
            "choice": self.choice.to_dict() if self.choice else None,
            "ranked": [c.to_dict() for c in self.ranked],
            "rejected": [r.to_dict() for r in self.rejected],
        }

    def __repr__(self) -> str:
        chosen = self.choice.key if self.choice else None
        return (f"RoutingDecision(quality={self.quality!r}, choice={chosen!r}, "
                f"ranked={len(self._rows)}, rejected={len(self.rejected)})")


def _by_order(counts: Counter[str]) -> list[tuple[str, int]]:
    order = {c: i for i, c in enumerate(CONSTRAINTS)}
    return sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def _lead(request: ImageRequest, rejected: Sequence[Rejection]) -> str | None:
    """The first thing to try: where a pinned model is offered, or the one strict reason."""
    considered = [r for r in rejected if r.constraint != "pin"]
    strict = [r for r in considered if r.constraint == "strict"]
    if strict and len({r.reason.replace(r.offer_key, "") for r in strict}) == 1:
        who = strict[0].offer_key if len(strict) == 1 else _and([r.offer_key for r in strict])
        return f"strict=True refused {who}: {strict[0].reason}"
    if request.model and request.provider:
        elsewhere = [r.offer_key for r in rejected
                     if r.constraint == "pin" and r.offer_key.startswith(f"{request.model}@")]
        if elsewhere and not considered:
            where = _and([k.split("@", 1)[1] for k in elsewhere])
            return (f"{request.model} is offered on {where}, not on {request.provider}: pin one "
                    f"of those (provider={elsewhere[0].split('@', 1)[1]!r}) or drop provider=")
        if not elsewhere and not considered:
            return f"{request.model} has no offer in the catalog"
    unavailable = [r for r in considered if r.constraint == "availability"]
    if unavailable and all(r.constraint in ("availability", "lifecycle") for r in considered):
        reasons = list(dict.fromkeys(r.reason for r in unavailable))  # e.g. the key to set
        if len(reasons) <= 2:
            return "not available here: " + "; ".join(reasons)
    return None


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _strict_field(rejection: Rejection) -> str | None:
    for control in ("negative_prompt", "cfg", "steps", "seed", "size", "sampler", "n", "prompt"):
        if control in rejection.reason:
            return control
    return None
