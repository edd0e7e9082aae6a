"""Latency as routing judges it: observed p90 where the store has measured it, else the catalog.

Order of evidence for an offer's p90 latency:

1. the observed p90 from a :class:`LatencySource` (``ObservedStore.default()`` of
   ``modelglass.catalog._observed`` when present), measured on real calls;
2. the catalog's ``latency.p95_s`` (an upper bound of p90);
3. the catalog's ``latency.p50_s`` (the only figure most offers publish; the reason says so);
4. none: unknown, which a latency limit rejects unless the policy says ``unknown_latency: allow``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..catalog import OfferView

__all__ = ["DEFAULT_OBSERVED", "LatencySource", "default_observed", "offer_latency"]

log = logging.getLogger("modelglass")


class LatencySource(Protocol):
    """Measured latencies by offer key (``"flux-dev@fal"``); None where nothing was measured."""

    def latency_p90(self, offer_key: str) -> float | None: ...


def offer_latency(view: OfferView, observed: LatencySource | None) -> tuple[float | None, str]:
    """The offer's p90 latency in seconds as best known, and the basis in words."""
    if observed is not None:
        try:
            value = observed.latency_p90(view.key)
        except Exception as exc:  # noqa: BLE001 - a broken store must not break routing
            log.warning("observed latency for %s unreadable: %s", view.key, exc)
            value = None
        if value is not None:
            return float(value), f"observed p90 {value:.1f} s"
    lat = view.offer.latency
    if lat is not None and lat.p95_s is not None:
        return lat.p95_s, f"catalog p95 {lat.p95_s:g} s (no observed p90)"
    if lat is not None and lat.p50_s is not None:
        return lat.p50_s, f"catalog p50 {lat.p50_s:g} s (no observed or published p90)"
    return None, "latency unknown (not observed, not in the catalog)"


_STORES: dict[tuple[str | None, str | None], LatencySource | None] = {}


def default_observed() -> LatencySource | None:
    """The process's observed-latency store, when the catalog has one; else None. One store
    per configuration (``MODELGLASS_OBSERVED_DB``, ``MODELGLASS_OBSERVE``), opened once."""
    key = (os.environ.get("MODELGLASS_OBSERVED_DB"), os.environ.get("MODELGLASS_OBSERVE"))
    if key in _STORES:
        return _STORES[key]
    try:
        from ..catalog._observed import ObservedStore
    except ImportError:
        return None
    store: LatencySource | None
    try:
        store = ObservedStore.default()
    except Exception as exc:  # noqa: BLE001 - unreadable store: route on the catalog's figures
        log.warning("observed latency store unavailable: %s", exc)
        store = None
    _STORES[key] = store
    return store


class _DefaultObserved:
    """The default store, looked up on first use (routing without a latency limit never asks)."""

    def latency_p90(self, offer_key: str) -> float | None:
        store = default_observed()
        return store.latency_p90(offer_key) if store is not None else None

    def check_rate(self, offer_key: str, check: str = "text",
                   prompt_class: str | None = None) -> tuple[int, int]:
        """Observed ``(passed, total)`` of ``check`` (routing that learns; see ._learning)."""
        store = default_observed()
        rate = getattr(store, "check_rate", None)
        return rate(offer_key, check=check, prompt_class=prompt_class) if rate else (0, 0)


#: What clients pass to ``route(observed=...)``: the process's observed-latency store, if any.
DEFAULT_OBSERVED: LatencySource = _DefaultObserved()
