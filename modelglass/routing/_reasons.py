"""The reasons routing rejects an offer, one function per hard constraint (see
:func:`~._route.route` for their order), and the budget and latency limits they judge by."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from ..catalog._schema import Status
from ..errors import InvalidRequest
from ._policy import Policy

if TYPE_CHECKING:
    from ..catalog import QualityAxis
    from ..plan import ProviderCall
    from ..request import ImageRequest
    from ._index import _Facts


def _latency_limit(request: ImageRequest, policy: Policy) -> float | None:
    limits = [v for v in (request.max_latency_s,
                          policy.limits.max_latency_p90_s) if v is not None]
    return min(limits) if limits else None


def _pin_reason(f: _Facts, request: ImageRequest) -> str | None:
    if request.model is not None and f.model_id != request.model:
        return f"request pins model={request.model!r}"
    if request.provider is not None and f.provider != request.provider:
        return f"request pins provider={request.provider!r}"
    return None


def _lifecycle_reason(f: _Facts, today: dt.date) -> str | None:
    if f.status is Status.active:
        return None
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
    for rules, name, kind in ((policy.providers, f.provider, "provider"),
                              (policy.models, f.model_id, "model")):
        if name in rules.deny:
            return f"the policy denies {kind} {name!r}{_where(policy)}"
        if rules.allow is not None and name not in rules.allow:
            return (f"{kind} {name!r} is not in the policy's allow list "
                    f"({', '.join(rules.allow) or 'empty'}){_where(policy)}")
    return None


def _where(policy: Policy) -> str:
    return f" ({policy.source})" if policy.source else ""


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

