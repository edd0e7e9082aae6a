"""Catalog queries: filter offers by scores, the controls they really handle, provider, licence
and lifecycle; sort by cost at a size or by quality on an axis.

Support is judged per *offer*, by planning a small probe request on it: an offer supports a
control when the planner (and the provider's payload builder) would send it, not when the model
could take it somewhere. FLUX.1 [dev] takes a negative prompt through true CFG, but its hosted
offers drop it, so ``supports=["negative_prompt"]`` keeps only ``flux-dev@local``.

>>> import modelglass as mg
>>> rows = mg.Catalog.default().query(axis="hero", where={"text_rendering": (">=", 8)},
...                                   sort="cost")                       # doctest: +SKIP
>>> rows[0].key, rows[0].cost_per_image_usd                              # doctest: +SKIP
"""

from __future__ import annotations

import math
import operator
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog._schema import AXES, Status
from ..errors import InvalidRequest
from ..plan import plan_call
from ..request import ImageRequest, parse_size
from ..result import FateKind

if TYPE_CHECKING:
    from ..catalog import Catalog, CostEstimate, OfferView, Score

__all__ = ["CONTROLS", "OfferRow", "parse_where", "query"]

#: Controls ``supports=`` understands, with the aliases people type.
CONTROLS = ("negative_prompt", "cfg", "steps", "seed", "sampler")
_ALIASES = {"negative": "negative_prompt", "negative-prompt": "negative_prompt",
            "guidance": "cfg", "guidance_scale": "cfg", "num_inference_steps": "steps",
            "scheduler": "sampler"}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "=": operator.eq, "!=": operator.ne}
_WHERE_RE = re.compile(r"^\s*([a-z_ ]+?)\s*(>=|<=|!=|==|=|>|<)\s*([-+0-9.eE]+)\s*$")
SORTS = ("cost", "quality", *AXES)


@dataclass(frozen=True)
class OfferRow:
    """One offer as a query sees it.

    ``quality`` is the weighted capability score on ``axis`` (None without an axis);
    ``cost`` the estimated cost of one image at ``size``; ``supports`` maps each control asked
    about to True (the offer sends it), False (it is dropped) or None (could not be planned);
    ``eligible``/``why_not`` say whether the router would consider the offer on ``axis``.
    """

    offer: OfferView
    axis: str | None
    size: str
    cost: CostEstimate
    quality: float | None = None
    eligible: bool = True
    why_not: str = ""
    supports: dict[str, bool | None] = field(default_factory=dict)
    scores: Mapping[str, Score] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        return self.offer.key

    @property
    def cost_per_image_usd(self) -> float | None:
        return self.cost.per_image_usd

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, numbers as numbers (None when unknown)."""
        v = self.offer
        scores = self.scores
        lc = v.model.lifecycle
        return {
            "offer": self.key, "model": v.model_id, "provider": v.provider,
            "name": v.model.name, "status": lc.status_on().value,
            "shutdown_on": lc.shutdown_on.isoformat() if lc.shutdown_on else None,
            "replacement": lc.replacement,
            "licence": v.model.licence.id, "commercial_use": v.model.licence.commercial_use,
            "axis": self.axis, "quality": None if self.quality is None else round(self.quality, 4),
            "eligible": self.eligible, "why_not": self.why_not or None,
            "size": self.size, "cost_per_image_usd": _round(self.cost.per_image_usd),
            "cost_basis": self.cost.basis, "cost_approximate": self.cost.approximate,
            "latency_p50_s": v.offer.latency.p50_s if v.offer.latency else None,
            "price_as_of": v.offer.as_of.isoformat(), "price_stale": v.price_stale,  # freshness
            "supports": dict(self.supports),
            "scores": {a: None if s.value is None else {"value": s.value, "estimated": s.estimated}
                       for a, s in scores.items()},
        }


def _round(v: float | None) -> float | None:
    # Prices are sums of binary fractions: 0.07500000000000001 reads as noise.
    return None if v is None else round(v, 6)


def parse_where(text: str | Iterable[str]) -> dict[str, tuple[str, float]]:
    """``"text_rendering>=8"`` (or several, comma-separated or as a list) → ``where=`` mapping."""
    items = [text] if isinstance(text, str) else list(text)
    out: dict[str, tuple[str, float]] = {}
    for item in items:
        for part in (p for p in item.split(",") if p.strip()):
            m = _WHERE_RE.match(part.strip().lower())
            if not m:
                raise InvalidRequest(f"cannot read the filter {part.strip()!r}: write it as "
                                     f"SCORE OP NUMBER, e.g. text_rendering>=8 (ops: >= <= > < == !=)",
                                     field="where")
            name, op, num = m.group(1).strip().replace(" ", "_"), m.group(2), m.group(3)
            try:
                out[name] = (op, float(num))
            except ValueError:
                raise InvalidRequest(f"{num!r} in {part.strip()!r} is not a number",
                                     field="where") from None
    return out


# -- support, judged by planning a probe -----------------------------------------------------------
_PROBES: weakref.WeakKeyDictionary[Catalog, dict[tuple[str, str], bool | None]] = \
    weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _probe_value(view: OfferView, control: str) -> Any:
    c = view.controls
    if control == "negative_prompt":
        return "blurry, low quality"
    if control == "cfg":
        g = c.guidance
        return g.default if g is not None and g.default is not None else 5.0
    if control == "steps":
        s = c.steps
        return int(s.default) if s is not None and s.default is not None else 20
    if control == "seed":
        return 7
    if control == "sampler":
        return (c.samplers or ["euler"])[0]
    raise AssertionError(control)


def offer_supports(catalog: Catalog, view: OfferView, control: str) -> bool | None:
    """True when ``view`` really sends ``control``; False when it drops it; None when the offer
    cannot be planned at all (a retired model)."""
    control = normalise_control(control)
    with _LOCK:
        memo = _PROBES.setdefault(catalog, {})
        if (view.key, control) in memo:
            return memo[(view.key, control)]
    result: bool | None
    try:
        req = ImageRequest(prompt="a probe", **{control: _probe_value(view, control)})
        fate = plan_call(req, view).fate(control)
        result = fate is not None and fate.kind is not FateKind.dropped
    except (InvalidRequest, ValueError):
        result = None
    with _LOCK:
        memo[(view.key, control)] = result
    return result


def normalise_control(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, _ALIASES.get(name.strip().lower(), key))
    if key not in CONTROLS:
        raise InvalidRequest(f"unknown control {name!r} for supports=; one of "
                             f"{', '.join(CONTROLS)}", field="supports")
    return key


# -- the query -------------------------------------------------------------------------------------
def _as_list(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [p.strip() for item in items for p in item.split(",") if p.strip()]


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    return {p.strip().lower() for item in items for p in item.split(",") if p.strip()}


def _check_conditions(conditions: Mapping[str, Any], axis: str | None) -> None:
    """:class:`InvalidRequest` (field ``where``) for a condition a query cannot judge."""
    for name, cond in conditions.items():
        if name not in (*AXES, "quality", "cost"):
            raise InvalidRequest(f"cannot filter on {name!r}: use a score ({', '.join(AXES)}), "
                                 "quality (with an axis) or cost", field="where")
        if (not isinstance(cond, tuple) or len(cond) != 2 or cond[0] not in _OPS
                or not isinstance(cond[1], int | float) or not math.isfinite(cond[1])):
            raise InvalidRequest(f"where[{name!r}] must be (op, number), e.g. ('>=', 8); "
                                 f"got {cond!r}", field="where")
        if name == "quality" and axis is None:
            raise InvalidRequest("filtering on quality needs an axis (axis='hero')", field="where")


def _sort_rows(rows: list[OfferRow], sort: str | None) -> None:
    """Sort ``rows`` in place: by cost (unknown last), quality, or a score (unknown last)."""
    if sort == "cost":
        rows.sort(key=lambda r: (r.cost.per_image_usd is None,
                                 r.cost.per_image_usd or 0.0, -(r.quality or 0.0), r.key))
    elif sort == "quality":
        rows.sort(key=lambda r: (-(r.quality or 0.0), r.cost.per_image_usd or math.inf, r.key))
    elif sort is not None:
        rows.sort(key=lambda r: (r.scores[sort].value is None,
                                 -(r.scores[sort].value or 0.0),
                                 r.cost.per_image_usd or math.inf, r.key))


def query(catalog: Catalog, *, axis: str | None = None,
          supports: Iterable[str] | str | None = None,
          where: Mapping[str, tuple[str, float]] | str | Iterable[str] | None = None,
          provider: str | Iterable[str] | None = None, licence: str | None = None,
          commercial: bool | None = None, lifecycle: str | Iterable[str] | None = None,
          sort: str | None = "cost", size: str | None = None,
          include_ineligible: bool = False) -> list[OfferRow]:
    """See :meth:`modelglass.catalog.Catalog.query`."""
    if axis is not None:
        catalog.quality(axis)  # raises InvalidRequest naming the axes
    wanted = list(dict.fromkeys(normalise_control(c) for c in _as_list(supports)))
    if where is not None and not isinstance(where, Mapping):
        where = parse_where(where)
    conditions = dict(where or {})
    _check_conditions(conditions, axis)
    if sort is not None and sort not in SORTS:
        raise InvalidRequest(f"cannot sort by {sort!r}; one of {', '.join(SORTS)}", field="sort")
    if sort == "quality" and axis is None:
        raise InvalidRequest("sort='quality' needs an axis (axis='hero')", field="sort")
    providers = _as_set(provider)
    if providers:
        unknown = providers - set(catalog.providers)
        if unknown:
            raise InvalidRequest(f"unknown provider {', '.join(sorted(unknown))}; providers: "
                                 f"{', '.join(catalog.providers)}", field="provider")
    statuses = _as_set(lifecycle)
    if statuses and statuses - {s.value for s in Status}:
        raise InvalidRequest(f"lifecycle must be one of {', '.join(s.value for s in Status)}",
                             field="lifecycle")

    size_given = size is not None
    if size is None:
        size = catalog.quality(axis).target_size if axis else "1024x1024"
    width, height = parse_size(size)
    routed = _routed(catalog, axis, size if size_given else None) if axis else {}

    rows: list[OfferRow] = []
    for view in catalog.offers():
        m = view.model
        if providers and view.provider not in providers:
            continue
        if statuses and m.lifecycle.status_on().value not in statuses:
            continue
        if licence and m.licence.id.lower() != licence.lower():
            continue
        if commercial is not None and (m.licence.commercial_use is True) != commercial:
            continue
        quality, eligible, why_not = None, True, ""
        if axis:
            quality, eligible, why_not = routed.get(view.key, (None, False, "not ranked"))
            if not eligible and not include_ineligible:
                continue
        cost = view.estimate_cost(width, height, 1, quality=axis)
        scores = catalog.scores(view.model_id)
        if not all(_passes(name, op, bound, scores, quality, cost.per_image_usd)
                   for name, (op, bound) in conditions.items()):
            continue
        sup = {c: offer_supports(catalog, view, c) for c in wanted}
        if wanted and not all(sup.values()):
            continue
        rows.append(OfferRow(view, axis, size, cost, quality, eligible, why_not, sup, scores))

    _sort_rows(rows, sort)
    return rows


def _passes(name: str, op: str, bound: float, scores: Mapping[str, Any], quality: float | None,
            cost: float | None) -> bool:
    if name == "quality":
        value = quality
    elif name == "cost":
        value = cost
    else:
        value = scores[name].value
    # Unknown never passes a filter: "text_rendering>=8" means "known to be at least 8".
    return value is not None and _OPS[op](value, bound)


def _routed(catalog: Catalog, axis: str, size: str | None) -> dict[str, tuple[float | None, bool, str]]:
    """What the router thinks of every offer on ``axis`` for a plain prompt (all providers)."""
    from ..routing import route

    req = ImageRequest(prompt="an image", quality=axis, size=size)
    decision = route(req, catalog, available=None)
    out: dict[str, tuple[float | None, bool, str]] = {}
    for cand in decision.ranked:
        out[cand.key] = (cand.quality, True, "")
    for rej in decision.rejected:
        out.setdefault(rej.offer_key, (None, False, f"{rej.constraint}: {rej.reason}"))
    return out
