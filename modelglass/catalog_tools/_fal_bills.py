"""Fill pending fal bills from fal's Platform API billing events (``catalog verify`` calls this
when a key is set); the bills themselves are recorded by :mod:`modelglass.catalog._bills`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalog._bills import _WINDOW
from ..catalog._bills import num as _num
from ..catalog._observed import ObservedStore
from ._sync_guard import ApiError, BoundedApi, Deadline
from ._sync_report import FAL_API_DEFAULT, _fal_key

__all__ = ["fetch_fal_bills"]

FAL_BILLING_BATCH = 50


def _event_usd(event: Mapping[str, Any]) -> float | None:
    nano = _num(event.get("cost_estimate_nano_usd"))
    if nano is not None:
        return nano / 1e9
    units, price = _num(event.get("output_units")), _num(event.get("unit_price"))
    if units is None or price is None:
        return None
    discount = _num(event.get("percent_discount")) or 0.0
    return units * price * (1 - min(discount, 100.0) / 100)


def fetch_fal_bills(store: ObservedStore, env: Mapping[str, str], *,
                    timeout_s: float = 30.0) -> str:
    """Fill pending fal bills from fal's billing events; says what it did ("" when there was
    nothing to do). Never raises: a failing call is said in the answer."""
    pending = store.read("SELECT id, request_ids FROM bills WHERE provider = 'fal' AND "
                          "billed_usd IS NULL AND request_ids IS NOT NULL ORDER BY at DESC LIMIT ?",
                          (_WINDOW,))
    if not pending:
        return ""
    key = env.get("FAL_ADMIN_KEY") or _fal_key(env)
    if not key:
        return f"{len(pending)} fal bills pending: set FAL_ADMIN_KEY (an admin key) to read them"
    wanted = {rid for _, ids in pending for rid in ids.split(",") if rid}
    api = BoundedApi(env.get("MODELGLASS_FAL_API_URL") or FAL_API_DEFAULT,
                     {"Authorization": f"Key {key}"}, Deadline(timeout_s))
    costs: dict[str, float] = {}
    try:
        ids = sorted(wanted)
        for i in range(0, len(ids), FAL_BILLING_BATCH):
            _, body = api.get("/models/billing-events",
                              {"request_id": ",".join(ids[i:i + FAL_BILLING_BATCH]), "limit": 150})
            for ev in (body or {}).get("billing_events") or []:
                usd = _event_usd(ev) if isinstance(ev, dict) else None
                rid = ev.get("request_id") if isinstance(ev, dict) else None
                if usd is not None and isinstance(rid, str):
                    costs[rid] = costs.get(rid, 0.0) + usd
    except ApiError as exc:
        return f"fal billing events: {exc}"
    finally:
        api.close()
    filled = 0
    for row_id, ids_text in pending:
        ids = [r for r in ids_text.split(",") if r]
        if ids and all(r in costs for r in ids):
            total = sum(costs[r] for r in ids)
            store.write(lambda conn, t=total, r=row_id: conn.execute(
                "UPDATE bills SET billed_usd = ? WHERE id = ?", (t, r)))
            filled += 1
    return f"fal billing events: {filled} of {len(pending)} pending bills filled"
