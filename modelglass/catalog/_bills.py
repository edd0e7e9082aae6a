"""Quotes against the bill: what each provider says a job was billed, where it says it.

Every delivered result records, next to its quote (the plan's estimate), a bill line in the
observed store (table ``bills``), from the provider's own account of the job: its
:meth:`~modelglass.providers.base.Provider.bill_line` (the token usage priced at the catalog's
rates, a run time × the hardware's rate, a per-output price × the outputs delivered, or request
ids whose billing events are read later, pending until then, by ``catalog verify``). The catalog
never imports the providers: :func:`register_bill_line` is filled from above
(:mod:`modelglass.catalog_tools`, when ``modelglass`` is imported), as ``Catalog.query`` is.

``catalog verify`` compares quote and bill per offer (median ratio, n, last seen) and calls a
ratio more than :data:`BILL_TOLERANCE` (5 %) away from 1 drift.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._observed import ObservedStore

log = logging.getLogger("modelglass")

__all__ = ["BILL_TOLERANCE", "BillLine", "BillSummary", "bill_summary", "num", "record_bill",
           "register_bill_line"]

#: One result's bill: (billed USD, or None while pending; where the figure comes from; the
#: provider's request ids to read it by, comma-separated, or None).
BillLine = tuple[float | None, str, str | None]
#: provider id → how its results are billed (see :func:`register_bill_line`).
_BILL_LINES: dict[str, Callable[[Any], BillLine | None]] = {}

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


def num(x: Any) -> float | None:
    """``x`` as a finite, non-negative float, else None (what a provider's reply says is read
    only through this)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) and x >= 0 else None


def register_bill_line(provider: str, line: Callable[[Any], BillLine | None]) -> None:
    """Set how results of ``provider`` are billed: ``line(result)`` answers its
    :data:`BillLine`, or None for no bill. A provider registered by no one has no bills."""
    _BILL_LINES[provider] = line


def _line(result: Any) -> BillLine | None:
    line = _BILL_LINES.get(result.plan.offer.provider)
    return line(result) if line is not None else None


def record_bill(store: ObservedStore, result: Any) -> None:
    """Record the bill line of one delivered result next to its quote (see the module doc)."""
    plan = getattr(result, "plan", None)
    if plan is None or num(plan.estimate.usd) is None:
        return
    line = _line(result)
    if line is None:
        return
    billed, source, ids = line
    key, provider, quoted = plan.offer.key, plan.offer.provider, plan.estimate.usd
    store.write(lambda conn: conn.execute(
        "INSERT INTO bills (at, offer, provider, quoted_usd, billed_usd, source, request_ids) "
        "VALUES (?,?,?,?,?,?,?)", (time.time(), key, provider, quoted, billed, source, ids)))


def bill_summary(store: ObservedStore, offer_key: str) -> BillSummary:
    """Median billed ÷ quoted over the recent bills of ``offer_key``."""
    rows = store.read("SELECT at, quoted_usd, billed_usd, source FROM bills WHERE offer = ? "
                       "ORDER BY at DESC LIMIT ?", (offer_key, _WINDOW))
    done = [(at, q, b, s) for at, q, b, s in rows if b is not None and q]
    ratios = [b / q for _, q, b, _ in done]
    return BillSummary(ratio=statistics.median(ratios) if ratios else None, n=len(done),
                       pending=sum(1 for r in rows if r[2] is None),
                       last_seen=max((r[0] for r in done), default=None),
                       sources=tuple(sorted({s for *_, s in done})))
