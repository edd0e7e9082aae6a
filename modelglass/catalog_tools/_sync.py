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
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _clock
from ..catalog import Catalog, OfferView, default_catalog_dir
from ..catalog._overlay import default_overlay_path
from ..catalog._yaml import _parse, _Problems
from ..errors import CatalogError
from ._sync_guard import ApiError as _ApiError
from ._sync_guard import BoundedApi, Deadline, implausible, zero_refused
from ._sync_price import _same, price_from_unit
from ._sync_report import (
    FAL_API_DEFAULT,
    OPENAI_API_DEFAULT,
    REPLICATE_API_DEFAULT,
    SyncFinding,
    SyncReport,
    _fal_key,
)
from ._sync_schemas import sync_schemas

log = logging.getLogger("modelglass")

__all__ = ["SyncFinding", "SyncReport", "price_from_unit", "sync"]

#: fal's pricing endpoint takes at most this many endpoint ids a call.
FAL_PRICING_BATCH = 50
#: Pages of fal's model listing read at most (a guard against a listing that never ends).
FAL_MAX_PAGES = 40
_IMAGE_MODEL_HINTS = ("image", "dall-e")


# ------------------------------------------------------------------------------------------------
# The three providers
# ------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """One sync in progress: the report, the patches per offer, and what bounds and steers it."""

    report: SyncReport
    env: Mapping[str, str]
    deadline: Deadline
    accept: frozenset[str] = frozenset()
    patches: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: offers whose earlier synced entry stays as it was (a price held as suspicious)
    keep: set[str] = field(default_factory=set)

    def bearer_api(self, provider: str, key_env: str, url_env: str,
                   default_url: str) -> BoundedApi | None:
        """A bounded client for ``provider`` with its ``Bearer`` key from ``key_env`` (the base
        URL from ``url_env``, else ``default_url``); None, said as ``skipped``, without a key."""
        key = self.env.get(key_env)
        if not key:
            self.report.providers[provider] = f"skipped: no {key_env}"
            return None
        return BoundedApi(self.env.get(url_env) or default_url,
                          {"Authorization": f"Bearer {key}"}, self.deadline)

    def disable(self, provider: str, v: OfferView, why: str) -> None:
        """Take ``v`` out of routing from today, saying why (``unavailable``)."""
        self.report.findings.append(SyncFinding(provider, "unavailable", v.endpoint, v.key, why))
        self.patches[v.key] = {"disabled": True, "reason": why,
                               "disabled_on": self.report.as_of}


def _fal_pages(api: BoundedApi, path: str, params: dict[str, Any], items: str) -> list[Any]:
    """Every item of a paginated fal Platform API answer (at most FAL_MAX_PAGES pages)."""
    out: list[Any] = []
    cursor: str | None = None
    for _ in range(FAL_MAX_PAGES):
        _, body = api.get(path, {**params, **({"cursor": cursor} if cursor else {})})
        out.extend(i for i in (body or {}).get(items) or [] if isinstance(i, dict))
        cursor = (body or {}).get("next_cursor")
        if not cursor or not isinstance(cursor, str) or not (body or {}).get("has_more", True):
            break
    return out


def _fal_pricing(api: BoundedApi, endpoints: list[str]) -> dict[str, dict[str, Any]]:
    prices: dict[str, dict[str, Any]] = {}
    for i in range(0, len(endpoints), FAL_PRICING_BATCH):
        batch = endpoints[i:i + FAL_PRICING_BATCH]
        for p in _fal_pages(api, "/models/pricing", {"endpoint_id": ",".join(batch)}, "prices"):
            if isinstance(p.get("endpoint_id"), str):
                prices[p["endpoint_id"]] = p
    return prices


def _fal_status(m: dict[str, Any]) -> str:
    meta = m.get("metadata") if isinstance(m.get("metadata"), dict) else {}
    status = meta.get("status", m.get("status", "active"))  # type: ignore[union-attr]
    return status if isinstance(status, str) else "active"


def _fal_listing(api: BoundedApi, missing_from: set[str] | None = None) -> dict[str, str]:
    """endpoint → fal's status (``active``, ``deprecated``, …): the text-to-image listing, or
    (``missing_from``) those endpoints looked up by id whatever their category."""
    if missing_from is None:
        models = _fal_pages(api, "/models", {"category": "text-to-image", "limit": 50}, "models")
    else:
        models = []
        ids = sorted(missing_from)
        for i in range(0, len(ids), FAL_PRICING_BATCH):
            models += _fal_pages(api, "/models",
                                 {"endpoint_id": ",".join(ids[i:i + FAL_PRICING_BATCH])}, "models")
    return {m["endpoint_id"]: _fal_status(m) for m in models
            if isinstance(m.get("endpoint_id"), str)}


def _sync_fal(views: list[OfferView], run: _Run) -> None:
    key = _fal_key(run.env)
    base = run.env.get("MODELGLASS_FAL_API_URL") or FAL_API_DEFAULT
    api = BoundedApi(base, {"Authorization": f"Key {key}"} if key else {}, run.deadline)
    report = run.report
    try:
        by_endpoint: dict[str, list[OfferView]] = {}
        for v in views:
            by_endpoint.setdefault(v.endpoint, []).append(v)
        prices = _fal_pricing(api, list(by_endpoint)) if key else None
        if prices is None:
            report.findings.append(SyncFinding("fal", "unpriced", "*", detail="no FAL_KEY: "
                                               "prices not checked (the listing needs no key)"))
        listed = _fal_listing(api)
        elsewhere = _fal_listing(api, set(by_endpoint) - set(listed)) \
            if set(by_endpoint) - set(listed) else {}
        for endpoint, vs in by_endpoint.items():
            status = listed.get(endpoint) or elsewhere.get(endpoint)
            if _fal_lifecycle(vs, status, endpoint in listed, prices, run):
                continue
            if prices is not None:
                _fal_endpoint_prices(endpoint, vs, prices.get(endpoint), run)
        for endpoint in listed:
            if endpoint not in by_endpoint:
                report.findings.append(SyncFinding("fal", "seen", endpoint,
                                                   detail="listed by fal, not described"))
        report.providers["fal"] = "ok" if key else "ok (listing only: no FAL_KEY)"
    finally:
        api.close()


def _fal_lifecycle(vs: list[OfferView], status: str | None, in_listing: bool,
                   prices: dict[str, dict[str, Any]] | None, run: _Run) -> bool:
    """Disable offers fal no longer serves (True: done with them); report the others' status."""
    endpoint = vs[0].endpoint
    priced = prices is not None and endpoint in prices
    if status is None and not priced:
        why = (f"gone from fal: not in its model listing{' nor its pricing' if prices is not None else ''}"
               f" (sync {run.report.as_of})")
        for v in vs:
            run.disable("fal", v, why)
        return True
    if status not in (None, "active") or not in_listing:
        detail = (f"fal lists it as {status!r}" if status not in (None, "active") else
                  "not in fal's text-to-image listing (listed under another category)")
        for v in vs:
            run.report.findings.append(SyncFinding("fal", "unlisted", endpoint, v.key,
                                                   detail + "; still routed"))
    return False


def _fal_endpoint_prices(endpoint: str, vs: list[OfferView], got: dict[str, Any] | None,
                         run: _Run) -> None:
    distinct = {repr(v.offer.price.model_dump(exclude={"note"})) for v in vs}
    if got is not None and len(distinct) > 1:
        # One endpoint, several catalog offers priced apart (e.g. Ideogram's speed tiers):
        # fal's single unit price cannot say which one it is.
        for v in vs:
            run.report.findings.append(SyncFinding(
                "fal", "unmapped", endpoint, v.key, "fal gives one price for an endpoint the "
                "catalog prices per option; kept the catalog's",
                after=f"{got.get('unit_price')!r} per {got.get('unit')}"))
        return
    for v in vs:
        _fal_price(v, got, run)


def _fal_price(v: OfferView, got: dict[str, Any] | None, run: _Run) -> None:
    report = run.report
    if got is None:
        report.findings.append(SyncFinding("fal", "unpriced", v.endpoint, v.key,
                                           "fal's pricing API returned no price for it"))
        return
    shown = f"{got.get('unit_price')!r} per {got.get('unit')}"
    new, note = price_from_unit(v.offer.price, got.get("unit_price"),
                                str(got.get("unit", "")), str(got.get("currency", "USD")))
    if new is None:
        report.findings.append(SyncFinding("fal", "unmapped", v.endpoint, v.key, note,
                                           after=shown))
        run.keep.add(v.key)
        return
    before = v.offer.price.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    after = new.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    if zero_refused(v.offer.price, new):
        report.findings.append(SyncFinding("fal", "refused", v.endpoint, v.key, "$0 for an offer "
                                           "the catalog does not mark free: never written",
                                           before, after))
        run.keep.add(v.key)
        return
    why = implausible(v.offer.price, new)
    if why and v.key not in run.accept:
        report.findings.append(SyncFinding("fal", "held", v.endpoint, v.key,
                                           f"suspicious: {why}; write it with "
                                           f"`catalog sync --accept {v.key}`", before, after))
        run.keep.add(v.key)
        return
    same = _same(v.offer.price, new)
    detail = "; ".join(x for x in (note, f"accepted: {why}" if why else "") if x)
    report.findings.append(SyncFinding("fal", "confirmed" if same else "price", v.endpoint, v.key,
                                       detail, before, after))
    run.patches[v.key] = {"price": after}


def _sync_openai(views: list[OfferView], run: _Run) -> None:
    api = run.bearer_api("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", OPENAI_API_DEFAULT)
    if api is None:
        return
    report = run.report
    try:
        _, body = api.get("/models")
    finally:
        api.close()
    ids = {m.get("id") for m in (body or {}).get("data") or [] if isinstance(m, dict)}
    for v in views:
        if v.endpoint in ids:
            report.findings.append(SyncFinding("openai", "available", v.endpoint, v.key))
        else:
            run.disable("openai", v, "not listed by GET /v1/models for this key "
                        f"(sync {report.as_of})")
    described = {v.endpoint for v in views}
    for mid in sorted(i for i in ids if isinstance(i, str)):
        if mid not in described and any(h in mid for h in _IMAGE_MODEL_HINTS):
            report.findings.append(SyncFinding("openai", "seen", mid,
                                               detail="an image model this key can use, not described"))
    report.providers["openai"] = "ok"


def _sync_replicate(views: list[OfferView], run: _Run) -> None:
    api = run.bearer_api("replicate", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL",
                         REPLICATE_API_DEFAULT)
    if api is None:
        return
    report = run.report
    try:
        for v in views:
            ref = v.endpoint.split(":", 1)[0]
            if ref.count("/") != 1:
                continue
            status, body = api.get(f"/v1/models/{ref}")
            if status == 404:
                run.disable("replicate", v, "Replicate answers 404 for this model: gone or "
                            f"private (sync {report.as_of})")
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


def _write_overlay(path: Path, report: SyncReport, run: _Run, checked: set[str],
                   provider_of: Mapping[str, str]) -> None:
    import yaml

    data = _existing(path)
    offers: dict[str, Any] = dict(data.get("offers") or {})
    earlier: dict[str, Any] = {}
    # Entries from an earlier sync of a provider checked now are replaced (an offer back in the
    # provider's listing is so re-enabled), except a price held as suspicious, which stays as it
    # was; those of offers the catalog no longer has are dropped (they would not load). Yours
    # are kept.
    for key in list(offers):
        entry = offers[key]
        if isinstance(entry, dict) and entry.get("source") == "sync" and \
                provider_of.get(key, "") in checked | {""} and key not in run.keep:
            earlier[key] = offers.pop(key)
    for key, patch in run.patches.items():
        mine = offers.get(key)
        if isinstance(mine, dict) and mine.get("source") != "sync":
            report.findings.append(SyncFinding(provider_of.get(key, ""), "kept", "", key,
                                               f"your overlay entry (source {mine.get('source')!r})"
                                               " wins over the sync"))
            continue
        entry = dict(patch)
        if "price" in entry:
            entry["as_of"] = report.as_of
        before = earlier.get(key) or {}
        if entry.get("disabled") and before.get("disabled") and before.get("disabled_on"):
            entry["disabled_on"] = before["disabled_on"]  # disabled since the first sync that saw it
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
         timeout_s: float = 60.0, env: Mapping[str, str] | None = None,
         accept: Iterable[str] = ()) -> SyncReport:
    """Check the catalog against the providers' own APIs and write the overlay.

    ``catalog``: the catalog to check (default: the shipped one, without any overlay);
    ``providers``: which of fal, openai, replicate (default: all; one without a key is skipped);
    ``overlay``: the file to write (default: the user's overlay); ``write=False`` only reports.
    ``timeout_s``: one deadline for the whole sync, every provider and page together.
    ``accept``: offer keys whose price held as suspicious (see
    :mod:`~modelglass.catalog_tools._sync_guard`) is written anyway.
    A provider that fails is reported as ``error: …`` and leaves its overlay entries as they were.
    """
    env = os.environ if env is None else env
    cat = catalog or Catalog.load(default_catalog_dir())
    wanted = list(providers) if providers else list(_SYNCERS)
    unknown = [p for p in wanted if p not in _SYNCERS]
    if unknown:
        raise CatalogError(f"catalog sync knows fal, openai and replicate, not "
                           f"{', '.join(unknown)}")
    report = SyncReport(as_of=_clock.today(today))
    run = _Run(report, env, Deadline(timeout_s), frozenset(accept))
    checked: set[str] = set()
    for provider in wanted:
        views = [v for v in cat.offers() if v.provider == provider]
        mine = _Run(report, env, run.deadline, run.accept)
        try:
            _SYNCERS[provider](views, mine)
        except _ApiError as exc:
            report.providers[provider] = f"error: {exc}"
            continue
        if report.providers.get(provider, "").startswith("ok"):
            checked.add(provider)
            run.patches.update(mine.patches)
            run.keep |= mine.keep
    path = Path(overlay).expanduser() if overlay else default_overlay_path()
    report.overlay = str(path) if path else None
    sync_schemas([v for v in cat.offers() if v.provider in checked], report, env, run.deadline,
                 dest=path.parent / "schemas" if write and path is not None else None)
    if write and path is not None and checked:
        _write_overlay(path, report, run, checked, {v.key: v.provider for v in cat.offers()})
        report.written = True
    return report
