"""The JSON view of an :class:`~modelglass.result.ImageResult` (``ImageResult.to_dict()``):
everything that explains the result, numbers as numbers, no image bytes and no secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import ImageResult

__all__ = ["result_dict"]


def _usd(v: float | None) -> float | None:
    # Sums of binary fractions print as 0.07500000000000001: a micro-dollar is precise enough.
    return None if v is None else round(v, 6)


def result_dict(result: ImageResult) -> dict[str, Any]:
    """See :meth:`ImageResult.to_dict`."""
    decision = result.decision
    images = []
    for img in result.images:
        meta = img.metadata or {}
        images.append({"index": img.index, "width": img.width, "height": img.height,
                       "mime": img.mime, "sha256": img.sha256, "bytes": len(img.data),
                       "seed": meta.get("seed", img.seed), "simulated": img.simulated,
                       "c2pa": img.c2pa})
    missing = [m.to_dict() for m in getattr(result, "missing", None) or []]
    return {
        "model": result.model, "provider": result.provider,
        "offer": result.plan.offer.key if result.plan is not None else None,
        "cost_usd": _usd(result.cost_usd), "cost_is_estimate": result.cost_is_estimate,
        "latency_s": round(result.latency_s, 4), "simulated": result.simulated,
        "job_id": getattr(result, "job_id", None),
        "partial": bool(getattr(result, "partial", False)), "missing": missing,
        "images": images,
        "fates": [f.to_dict() for f in result.fates],
        "attempts": [a.to_dict() for a in result.attempts],
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
        "ranked": [c.offer.key for c in decision.ranked[:5]] if decision is not None else [],
        "plan": result.plan.to_dict() if result.plan is not None else None,
        "checks": [c.to_dict() for c in getattr(result, "checks", None) or []],
        "rejected": [{"sha256": img.sha256, "seed": img.seed,
                      "offer": (img.metadata or {}).get("offer"),
                      "checks": (img.metadata or {}).get("checks", [])}
                     for img in getattr(result, "rejected", None) or []],
    }
