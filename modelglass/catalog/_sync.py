"""``catalog sync``: ask the providers what they serve and charge, and write the user's overlay.

- **fal** (Platform API, ``$MODELGLASS_FAL_API_URL``, default ``https://api.fal.ai/v1``):
  ``GET /models/pricing?endpoint_id=a,b,…`` (at most 50 ids a call; the account's own prices,
  discounts included) for every fal endpoint the catalog describes, and ``GET /models`` (the
  text-to-image listing, paginated) for endpoints the catalog does not describe.
- **OpenAI** (``$OPENAI_BASE_URL``, default ``https://api.openai.com/v1``): ``GET /models``:
  which image models this key can use. A catalog model the key cannot use is disabled.
- **Replicate** (``$REPLICATE_BASE_URL``, default ``https://api.replicate.com``):
  ``GET /v1/models/{owner}/{name}`` for each catalog model: it exists (and its latest version),
  or it is gone (404) and is disabled.

The result is written to the overlay (:func:`~modelglass.catalog._overlay.default_overlay_path`)
with ``as_of`` (today) and ``source: sync``; the shipped files are never written. Overlay entries
whose source is not ``sync`` are the user's and are kept as they are. Endpoints a provider lists
that the catalog does not describe are written under ``seen:`` and are never routed.

Keys come from the environment (``FAL_KEY``, ``OPENAI_API_KEY``, ``REPLICATE_API_TOKEN``); a
provider without a key is skipped (fal's model listing needs none). No key is ever logged or written.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _clock
from ..errors import CatalogError

if TYPE_CHECKING:
    from . import Catalog, OfferView
    from ._schema import Price

log = logging.getLogger("modelglass")

__all__ = ["SyncFinding", "SyncReport", "price_from_unit", "sync"]

FAL_API_DEFAULT = "https://api.fal.ai/v1"
OPENAI_API_DEFAULT = "https://api.openai.com/v1"
REPLICATE_API_DEFAULT = "https://api.replicate.com"
#: fal's pricing endpoint takes at most this many endpoint ids a call.
FAL_PRICING_BATCH = 50
#: Pages of fal's model listing read at most (a guard against a listing that never ends).
FAL_MAX_PAGES = 40
_IMAGE_MODEL_HINTS = ("image", "dall-e")


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


# ------------------------------------------------------------------------------------------------
# Mapping a provider's unit price onto a catalog price
# ------------------------------------------------------------------------------------------------
def _unit(name: str) -> str | None:
    u = name.strip().lower().replace(" ", "_")
    if u in ("image", "images", "per_image", "output_image"):
        return "image"
    if u in ("megapixel", "megapixels", "mp", "per_megapixel"):
        return "megapixel"
    return None


def price_from_unit(current: Price, unit_price: float, unit: str,
                    currency: str = "USD") -> tuple[Price | None, str]:
    """The catalog price updated to a provider's ``unit_price`` per ``unit``, and a note.

    The catalog keeps its structure (rounding, extra-megapixel rate, resolution multipliers),
    scaled by the ratio of the new unit price to the old one: an account discount applies to the
    whole formula. None when the unit or currency cannot be mapped onto the catalog's kind.

    >>> from modelglass.catalog import Price
    >>> new, _ = price_from_unit(Price(kind="first_megapixel", usd=0.03,
    ...                                usd_per_extra_megapixel=0.015), 0.024, "megapixels")
    >>> round(new.usd, 6), round(new.usd_per_extra_megapixel, 6)
    (0.024, 0.012)
    """
    from ._schema import Price, PriceKind

    if currency.upper() != "USD":
        return None, f"priced in {currency}; the catalog prices in USD"
    if not (isinstance(unit_price, (int, float)) and math.isfinite(unit_price) and unit_price >= 0):
        return None, f"unit price {unit_price!r} is not a finite number ≥ 0"
    u = _unit(unit)
    if u is None:
        return None, f"billing unit {unit!r} does not map onto a catalog price kind"
    kind = current.kind
    data = current.model_dump(exclude_none=True)

    def scaled(base: float | None, fields: Iterable[str]) -> Price:
        ratio = unit_price / base if base else 1.0
        out = dict(data)
        for f in fields:
            if out.get(f) is not None:
                out[f] = out[f] * ratio
        return Price.model_validate(out)

    if kind is PriceKind.per_image and u == "image":
        return Price.model_validate({**data, "usd": unit_price}), ""
    if kind is PriceKind.per_megapixel and u == "megapixel":
        return Price.model_validate({**data, "usd_per_megapixel": unit_price}), ""
    if kind is PriceKind.first_megapixel and u == "megapixel":
        new = scaled(current.usd, ["usd_per_extra_megapixel"])
        return Price.model_validate({**new.model_dump(exclude_none=True), "usd": unit_price}), \
            "extra-megapixel rate scaled by the same ratio"
    if kind is PriceKind.per_image_resolution and u == "image":
        return Price.model_validate({**data, "usd": unit_price}), ""
    if kind in (PriceKind.unknown, PriceKind.per_image, PriceKind.per_megapixel):
        note = "billing unit changed" if kind is not PriceKind.unknown else "was unknown"
        if u == "image":
            return Price(kind=PriceKind.per_image, usd=unit_price), note
        return Price(kind=PriceKind.per_megapixel, usd_per_megapixel=unit_price,
                     round_up_megapixels=True), note + "; megapixels rounded up (fal bills whole MP)"
    return None, (f"a price per {u} does not map onto the catalog's {kind.value} price; "
                  "kept the catalog's")


def _same(a: Price, b: Price) -> bool:
    da, db = a.model_dump(exclude_none=True), b.model_dump(exclude_none=True)
    if set(da) != set(db):
        return False
    for k, va in da.items():
        vb = db[k]
        if isinstance(va, float) and isinstance(vb, (int, float)):
            if not math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif va != vb:
            return False
    return True


# ------------------------------------------------------------------------------------------------
# The three providers
# ------------------------------------------------------------------------------------------------
class _Api:
    """A small httpx wrapper: JSON GETs with the provider's auth; errors as text, never keys."""

    def __init__(self, base: str, headers: Mapping[str, str], timeout_s: float) -> None:
        import httpx

        self.base = base.rstrip("/")
        self.client = httpx.Client(headers=dict(headers), timeout=timeout_s,
                                   follow_redirects=False)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        import httpx

        try:
            r = self.client.get(self.base + path, params=params)
        except httpx.HTTPError as exc:
            raise _ApiError(f"{type(exc).__name__} calling {self.base}{path}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code != 404 and (r.status_code >= 400 or body is None):
            raise _ApiError(f"HTTP {r.status_code} from {self.base}{path}"
                            + (f": {str(body)[:200]}" if body is not None else ""))
        if r.status_code != 404 and not isinstance(body, dict):
            raise _ApiError(f"unexpected reply from {self.base}{path}: a JSON object was "
                            f"expected, got {type(body).__name__}")
        return r.status_code, body

    def close(self) -> None:
        self.client.close()


class _ApiError(Exception):
    pass


def _fal_key(env: Mapping[str, str]) -> str | None:
    if env.get("FAL_KEY"):
        return env["FAL_KEY"]
    if env.get("FAL_KEY_ID") and env.get("FAL_KEY_SECRET"):
        return f"{env['FAL_KEY_ID']}:{env['FAL_KEY_SECRET']}"
    return None


def _sync_fal(views: list[OfferView], report: SyncReport, patches: dict[str, dict[str, Any]],
              env: Mapping[str, str], timeout_s: float) -> None:
    key = _fal_key(env)
    base = env.get("MODELGLASS_FAL_API_URL") or FAL_API_DEFAULT
    api = _Api(base, {"Authorization": f"Key {key}"} if key else {}, timeout_s)
    try:
        if key:
            by_endpoint: dict[str, list[OfferView]] = {}
            for v in views:
                by_endpoint.setdefault(v.endpoint, []).append(v)
            ids = list(by_endpoint)
            prices: dict[str, dict[str, Any]] = {}
            for i in range(0, len(ids), FAL_PRICING_BATCH):
                batch = ids[i:i + FAL_PRICING_BATCH]
                cursor: str | None = None
                for _ in range(FAL_MAX_PAGES):
                    params: dict[str, Any] = {"endpoint_id": ",".join(batch)}
                    if cursor:
                        params["cursor"] = cursor
                    _, body = api.get("/models/pricing", params)
                    for p in (body or {}).get("prices") or []:
                        if isinstance(p, dict) and isinstance(p.get("endpoint_id"), str):
                            prices[p["endpoint_id"]] = p
                    cursor = (body or {}).get("next_cursor")
                    if not cursor:
                        break
            for endpoint, vs in by_endpoint.items():
                got = prices.get(endpoint)
                distinct = {repr(v.offer.price.model_dump(exclude={"note"})) for v in vs}
                if got is not None and len(distinct) > 1:
                    # One endpoint, several catalog offers priced apart (e.g. Ideogram's speed
                    # tiers): fal's single unit price cannot say which one it is.
                    for v in vs:
                        report.findings.append(SyncFinding(
                            "fal", "unmapped", endpoint, v.key, "fal gives one price for an "
                            "endpoint the catalog prices per option; kept the catalog's",
                            after=f"{got.get('unit_price')} per {got.get('unit')}"))
                    continue
                for v in vs:
                    _fal_price(v, got, report, patches)
        else:
            report.findings.append(SyncFinding("fal", "unpriced", "*", detail="no FAL_KEY: "
                                               "prices not checked (the listing needs no key)"))
        described = {v.endpoint for v in views}
        listed: list[str] = []
        cursor = None
        for _ in range(FAL_MAX_PAGES):
            params = {"category": "text-to-image", "status": "active", "limit": 50}
            if cursor:
                params["cursor"] = cursor
            _, body = api.get("/models", params)
            for m in (body or {}).get("models") or []:
                if isinstance(m, dict) and isinstance(m.get("endpoint_id"), str):
                    listed.append(m["endpoint_id"])
            cursor = (body or {}).get("next_cursor")
            if not cursor or not (body or {}).get("has_more", True):
                break
        for endpoint in listed:
            if endpoint not in described:
                report.findings.append(SyncFinding("fal", "seen", endpoint,
                                                   detail="listed by fal, not described"))
        if listed:
            active = set(listed)
            for v in views:
                if v.endpoint not in active:
                    report.findings.append(SyncFinding(
                        "fal", "unlisted", v.endpoint, v.key, "not in fal's active text-to-image "
                        "listing (deprecated, or listed under another category); still routed"))
        report.providers["fal"] = "ok" if key else "ok (listing only: no FAL_KEY)"
    finally:
        api.close()


def _fal_price(v: OfferView, got: dict[str, Any] | None, report: SyncReport,
               patches: dict[str, dict[str, Any]]) -> None:
    if got is None:
        report.findings.append(SyncFinding("fal", "unpriced", v.endpoint, v.key,
                                           "fal's pricing API returned no price for it"))
        return
    new, note = price_from_unit(v.offer.price, got.get("unit_price"),  # type: ignore[arg-type]
                                str(got.get("unit", "")), str(got.get("currency", "USD")))
    if new is None:
        report.findings.append(SyncFinding("fal", "unmapped", v.endpoint, v.key, note,
                                           after=f"{got.get('unit_price')} per {got.get('unit')}"))
        return
    before = v.offer.price.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    after = new.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    same = _same(v.offer.price, new)
    report.findings.append(SyncFinding("fal", "confirmed" if same else "price", v.endpoint, v.key,
                                       note, before, after))
    patches[v.key] = {"price": after}


def _sync_openai(views: list[OfferView], report: SyncReport, patches: dict[str, dict[str, Any]],
                 env: Mapping[str, str], timeout_s: float) -> None:
    key = env.get("OPENAI_API_KEY")
    if not key:
        report.providers["openai"] = "skipped: no OPENAI_API_KEY"
        return
    api = _Api(env.get("OPENAI_BASE_URL") or OPENAI_API_DEFAULT,
               {"Authorization": f"Bearer {key}"}, timeout_s)
    try:
        _, body = api.get("/models")
    finally:
        api.close()
    ids = {m.get("id") for m in (body or {}).get("data") or [] if isinstance(m, dict)}
    for v in views:
        if v.endpoint in ids:
            report.findings.append(SyncFinding("openai", "available", v.endpoint, v.key))
        else:
            why = "not listed by GET /v1/models for this key"
            report.findings.append(SyncFinding("openai", "unavailable", v.endpoint, v.key, why))
            patches[v.key] = {"disabled": True, "reason": why}
    described = {v.endpoint for v in views}
    for mid in sorted(i for i in ids if isinstance(i, str)):
        if mid not in described and any(h in mid for h in _IMAGE_MODEL_HINTS):
            report.findings.append(SyncFinding("openai", "seen", mid,
                                               detail="an image model this key can use, not described"))
    report.providers["openai"] = "ok"


def _sync_replicate(views: list[OfferView], report: SyncReport,
                    patches: dict[str, dict[str, Any]], env: Mapping[str, str],
                    timeout_s: float) -> None:
    token = env.get("REPLICATE_API_TOKEN")
    if not token:
        report.providers["replicate"] = "skipped: no REPLICATE_API_TOKEN"
        return
    api = _Api((env.get("REPLICATE_BASE_URL") or REPLICATE_API_DEFAULT),
               {"Authorization": f"Bearer {token}"}, timeout_s)
    try:
        for v in views:
            ref = v.endpoint.split(":", 1)[0]
            if ref.count("/") != 1:
                continue
            status, body = api.get(f"/v1/models/{ref}")
            if status == 404:
                why = "Replicate answers 404 for this model: gone or private"
                report.findings.append(SyncFinding("replicate", "unavailable", v.endpoint, v.key,
                                                   why))
                patches[v.key] = {"disabled": True, "reason": why}
                continue
            latest = ((body or {}).get("latest_version") or {}).get("id")
            pinned = v.endpoint.split(":", 1)[1] if ":" in v.endpoint else None
            detail = f"latest version {latest}" if latest else ""
            if pinned and latest and pinned != latest:
                detail = f"pinned to version {pinned[:12]}…; a newer one exists ({latest[:12]}…)"
            report.findings.append(SyncFinding("replicate", "available", v.endpoint, v.key,
                                               detail, after=latest))
    finally:
        api.close()
    report.providers["replicate"] = "ok"


_SYNCERS = {"fal": _sync_fal, "openai": _sync_openai, "replicate": _sync_replicate}


# ------------------------------------------------------------------------------------------------
# Writing the overlay
# ------------------------------------------------------------------------------------------------
def _existing(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    from ._load import _parse, _Problems

    problems = _Problems()
    doc = _parse(path, problems)
    if problems or doc is None:
        raise CatalogError(f"cannot update the overlay {path}: fix it first",
                           problems=[*problems, f"{path}:1: fix the overlay first; "
                                     "`catalog sync` rewrites it"])
    if doc.data is None:
        return {}
    if not isinstance(doc.data, dict):
        raise CatalogError(f"{path}:1: an overlay is a mapping; fix or remove the file")
    return doc.data


def _write_overlay(path: Path, report: SyncReport, patches: dict[str, dict[str, Any]],
                   checked: set[str], provider_of: Mapping[str, str]) -> None:
    import yaml

    data = _existing(path)
    offers: dict[str, Any] = dict(data.get("offers") or {})
    # Entries from an earlier sync of a provider checked now are replaced, and those of offers
    # the catalog no longer has are dropped (they would not load); yours are kept.
    for key in list(offers):
        entry = offers[key]
        if isinstance(entry, dict) and entry.get("source") == "sync" and \
                provider_of.get(key, "") in checked | {""}:
            del offers[key]
    for key, patch in patches.items():
        mine = offers.get(key)
        if isinstance(mine, dict) and mine.get("source") != "sync":
            report.findings.append(SyncFinding(provider_of.get(key, ""), "kept", "", key,
                                               f"your overlay entry (source {mine.get('source')!r})"
                                               " wins over the sync"))
            continue
        entry = dict(patch)
        if "price" in entry:
            entry["as_of"] = report.as_of
        entry["source"] = "sync"
        offers[key] = entry
    seen = {p: list(v) for p, v in (data.get("seen") or {}).items() if p not in checked}
    for f in report.of("seen"):
        seen.setdefault(f.provider, []).append(f.endpoint)
    out: dict[str, Any] = {k: v for k, v in data.items() if k not in ("offers", "seen")}
    if offers:
        out["offers"] = dict(sorted(offers.items()))
    if seen:
        out["seen"] = {p: sorted(set(v)) for p, v in sorted(seen.items())}
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# modelglass catalog overlay. `modelglass catalog sync` ({report.as_of}) rewrites\n"
              "# the entries with `source: sync`; other entries are yours and are kept (comments\n"
              "# are not). `modelglass catalog diff` shows what this file changes.\n")
    tmp = path.with_name(path.name + ".tmp")
    class _NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text = yaml.dump(out, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=100)
    tmp.write_text(header + text, encoding="utf-8")
    os.replace(tmp, path)


def sync(catalog: Catalog | None = None, *, providers: Iterable[str] | None = None,
         overlay: str | Path | None = None, write: bool = True, today: dt.date | None = None,
         timeout_s: float = 30.0, env: Mapping[str, str] | None = None) -> SyncReport:
    """Check the catalog against the providers' own APIs and write the overlay.

    ``catalog``: the catalog to check (default: the shipped one, without any overlay);
    ``providers``: which of fal, openai, replicate (default: all; one without a key is skipped);
    ``overlay``: the file to write (default: the user's overlay); ``write=False`` only reports.
    A provider that fails is reported as ``error: …`` and leaves its overlay entries as they were.
    """
    from . import Catalog, default_catalog_dir
    from ._overlay import default_overlay_path

    env = os.environ if env is None else env
    cat = catalog or Catalog.load(default_catalog_dir())
    wanted = list(providers) if providers else list(_SYNCERS)
    unknown = [p for p in wanted if p not in _SYNCERS]
    if unknown:
        raise CatalogError(f"catalog sync knows fal, openai and replicate, not "
                           f"{', '.join(unknown)}")
    report = SyncReport(as_of=_clock.today(today))
    patches: dict[str, dict[str, Any]] = {}
    checked: set[str] = set()
    for provider in wanted:
        views = [v for v in cat.offers() if v.provider == provider]
        mine: dict[str, dict[str, Any]] = {}
        try:
            _SYNCERS[provider](views, report, mine, env, timeout_s)
        except _ApiError as exc:
            report.providers[provider] = f"error: {exc}"
            continue
        if report.providers.get(provider, "").startswith("ok"):
            checked.add(provider)
            patches.update(mine)
    path = Path(overlay).expanduser() if overlay else default_overlay_path()
    report.overlay = str(path) if path else None
    from ._sync_schemas import sync_schemas  # input schemas, written next to the overlay

    sync_schemas([v for v in cat.offers() if v.provider in checked], report, env, timeout_s,
                 dest=path.parent / "schemas" if write and path is not None else None)
    if write and path is not None and checked:
        _write_overlay(path, report, patches, checked, {v.key: v.provider for v in cat.offers()})
        report.written = True
    return report
