"""Quotes against the bill: what each provider says a job was billed, where it says it.

Every delivered result records, next to its quote (the plan's estimate), a bill line in the
observed store (table ``bills``), from the provider's own account of the job:

- **OpenAI**: the reply's ``usage`` (image-output, text and image-input tokens) priced at the
  catalog's token rates (as synced into your overlay). OpenAI publishes no per-job charge, so a
  change of its rates is seen only once the rates are updated; a change in tokens per image is
  seen at once.
- **fal**: the Platform API's billing events (``GET /v1/models/billing-events?request_id=…``,
  an admin key: ``FAL_ADMIN_KEY``, else ``FAL_KEY``) — per request, the output units billed, the
  unit price and ``cost_estimate_nano_usd``. Recorded as pending with the request ids and filled
  in by :func:`modelglass.catalog_tools._fal_bills.fetch_fal_bills` (``catalog verify`` calls it when a key is set).
- **Replicate**: for an offer billed by time (its price sets ``usd_per_second``, the hardware's
  rate from replicate.com/pricing), ``metrics.predict_time`` × that rate; for an official model
  billed per output, the per-output price × the outputs delivered (Replicate reports no charge,
  so only a change in outputs per job is seen).

``catalog verify`` compares quote and bill per offer (median ratio, n, last seen) and calls a
ratio more than :data:`BILL_TOLERANCE` (5 %) away from 1 drift.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._observed import ObservedStore

log = logging.getLogger("modelglass")

__all__ = ["BILL_TOLERANCE", "BillSummary", "bill_summary", "record_bill"]

#: A median bill ÷ quote further than this from 1 is drift.
BILL_TOLERANCE = 0.05
_WINDOW = 200


@dataclass(frozen=True)
class BillSummary:
    """Bills of one offer: median billed ÷ quoted, how many, the newest, where they came from."""

    ratio: float | None
    n: int
    pending: int
    last_seen: float | None
    sources: tuple[str, ...]


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) and x >= 0 else None


def _line(result: Any) -> tuple[float | None, str, str | None] | None:
    """(billed USD or None while pending, source, request ids) for one result, or None."""
    plan = result.plan
    provider = plan.offer.provider
    extra = getattr(result, "extra", None) or {}
    if provider == "openai":
        if result.cost_is_estimate or _num(result.cost_usd) is None:
            return None
        return result.cost_usd, "openai usage × the catalog's token rates", None
    if provider == "fal":
        ids = [str(i) for i in extra.get("request_ids") or [] if i]
        return (None, "fal billing events", ",".join(ids)) if ids else None
    if provider == "replicate":
        price = plan.offer.offer.price
        if price.usd_per_second:
            times = [_num((t or {}).get("replicate_predict_time"))
                     for t in extra.get("provider_timings") or []]
            if not times or any(t is None for t in times):
                return None
            secs = sum(t for t in times if t is not None)
            return (secs * price.usd_per_second,
                    f"replicate metrics.predict_time × ${price.usd_per_second:g}/s", None)
        if ":" not in plan.offer.endpoint and price.kind.value == "per_image" and price.usd:
            return (price.usd * len(result.images),
                    "replicate per-output price × outputs delivered", None)
    return None


def record_bill(store: ObservedStore, result: Any) -> None:
    """Record the bill line of one delivered result next to its quote (see the module doc)."""
    plan = getattr(result, "plan", None)
    if plan is None or _num(plan.estimate.usd) is None:
        return
    line = _line(result)
    if line is None:
        return
    billed, source, ids = line
    key, provider, quoted = plan.offer.key, plan.offer.provider, plan.estimate.usd
    store._write(lambda conn: conn.execute(
        "INSERT INTO bills (at, offer, provider, quoted_usd, billed_usd, source, request_ids) "
        "VALUES (?,?,?,?,?,?,?)", (time.time(), key, provider, quoted, billed, source, ids)))


def bill_summary(store: ObservedStore, offer_key: str) -> BillSummary:
    """Median billed ÷ quoted over the recent bills of ``offer_key``."""
    rows = store._read("SELECT at, quoted_usd, billed_usd, source FROM bills WHERE offer = ? "
                       "ORDER BY at DESC LIMIT ?", (offer_key, _WINDOW))
    done = [(at, q, b, s) for at, q, b, s in rows if b is not None and q]
    ratios = [b / q for _, q, b, _ in done]
    return BillSummary(ratio=statistics.median(ratios) if ratios else None, n=len(done),
                       pending=sum(1 for r in rows if r[2] is None),
                       last_seen=max((r[0] for r in done), default=None),
                       sources=tuple(sorted({s for *_, s in done})))
