"""What a ``catalog sync`` found (:class:`SyncFinding`, :class:`SyncReport`) and where it asks:
the providers' API addresses and the fal key, shared by the price sync (``_sync.py``), the schema
sync (``_sync_schemas.py``) and the bill reader (``_fal_bills.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..providers.fal import PLATFORM_API as FAL_API_DEFAULT
from ..providers.fal import FalProvider
from ..providers.replicate import API as REPLICATE_API_DEFAULT

__all__ = ["FAL_API_DEFAULT", "OPENAI_API_DEFAULT", "REPLICATE_API_DEFAULT", "SyncFinding",
           "SyncReport"]

OPENAI_API_DEFAULT = "https://api.openai.com/v1"


@dataclass(frozen=True)
class SyncFinding:
    """One thing a sync found. ``what``: ``price`` (changed), ``confirmed`` (same price, date
    refreshed), ``unmapped`` (a price the catalog's kind cannot take), ``unpriced`` (the provider
    gave no price), ``unavailable`` (disabled: the key cannot use it / it is gone), ``available``,
    ``seen`` (listed, not described; never routed), ``unlisted`` (described, but not in the
    provider's active listing; still routed), ``kept`` (your own overlay entry wins)."""

    provider: str
    what: str
    endpoint: str
    offer: str | None = None
    detail: str = ""
    before: Any = None
    after: Any = None


@dataclass
class SyncReport:
    """What ``sync`` did: per provider ``ok`` / ``skipped: …`` / ``error: …``, and findings."""

    as_of: dt.date
    providers: dict[str, str] = field(default_factory=dict)
    findings: list[SyncFinding] = field(default_factory=list)
    overlay: str | None = None
    written: bool = False

    @property
    def errors(self) -> dict[str, str]:
        return {p: s for p, s in self.providers.items() if s.startswith("error")}

    def of(self, what: str) -> list[SyncFinding]:
        return [f for f in self.findings if f.what == what]

    def to_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "providers": self.providers,
                "overlay": self.overlay, "written": self.written,
                "findings": [{"provider": f.provider, "what": f.what, "endpoint": f.endpoint,
                              "offer": f.offer, "detail": f.detail, "before": f.before,
                              "after": f.after} for f in self.findings]}


def _fal_key(env: Mapping[str, str]) -> str | None:
    """fal's key in ``env``, as the provider reads it (``FAL_KEY``, else ``FAL_KEY_ID:SECRET``)."""
    return FalProvider.key_in(env)
