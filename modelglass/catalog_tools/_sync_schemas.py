"""``catalog sync``, input schemas: refresh ``catalog/schemas`` from the providers' own APIs.

- **fal** (Platform API, ``$MODELGLASS_FAL_API_URL``): ``GET /models?endpoint_id=…&expand=
  openapi-3.0`` answers each endpoint's OpenAPI document; the input is the JSON body of its
  ``POST`` (``$ref`` s resolved from ``components.schemas``).
- **Replicate** (``$REPLICATE_BASE_URL``): ``GET /v1/models/{owner}/{name}/versions/{id}`` for a
  pinned version, else ``GET /v1/models/{owner}/{name}`` (its ``latest_version``): the
  ``openapi_schema``'s ``components.schemas.Input``.
- **OpenAI** publishes no per-model schema API: its stored schemas (from ``openai-openapi``) are
  kept as they are.

A schema that differs from the stored one is written, with ``source`` naming the API and
``as_of`` today, under ``schemas/`` next to the user's overlay (the shipped files are never
written); :func:`~modelglass.catalog._wire_schema.input_schema` reads that copy first. A field
the provider's schema does not list is never sent, so a fetched schema is stored closed
(``additionalProperties: false``) unless it says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog._wire_schema import _load, input_from_openapi, input_schema
from ..providers import PROVIDER_CLASSES, provider_class
from ._sync_guard import ApiError as _ApiError
from ._sync_guard import BoundedApi, Deadline
from ._sync_report import SyncFinding, SyncReport

if TYPE_CHECKING:
    from ..catalog import OfferView

__all__ = ["input_from_openapi", "schema_changes", "sync_schemas"]


def sync_schemas(views: list[OfferView], report: SyncReport, env: Mapping[str, str],
                 timeout_s: float | Deadline, *, dest: Path | None) -> None:
    """Refresh the stored input schema of every endpoint in ``views`` whose provider publishes
    them (its :meth:`~modelglass.providers.base.Provider.schema_api` and ``published_input``); a
    finding per endpoint (``schema`` changed, ``schema-same``, ``schema-unavailable``). A
    changed schema is written under ``dest`` (None: report only). ``timeout_s``: the sync's
    one :class:`~modelglass.catalog_tools._sync_guard.Deadline` (or seconds for a new one); answers are
    read under its byte cap, redirects refused."""
    deadline = timeout_s if isinstance(timeout_s, Deadline) else Deadline(timeout_s)

    done: set[tuple[str, str]] = set()
    apis: dict[str, Any] = {}
    try:
        for v in views:
            ref = v.endpoint.split(":", 1)
            key = (v.provider, ref[0])
            if v.provider not in PROVIDER_CLASSES or key in done:
                continue
            done.add(key)
            cls = provider_class(v.provider)
            if v.provider not in apis:
                where = cls.schema_api(env)
                if where is None:
                    continue
                apis[v.provider] = BoundedApi(*where, deadline)
            try:
                fetched, source = cls.published_input(apis[v.provider], ref[0],
                                                      ref[1] if len(ref) > 1 else None)
            except _ApiError as exc:
                report.findings.append(SyncFinding(v.provider, "schema-unavailable", v.endpoint,
                                                   v.key, str(exc)))
                continue
            if fetched is None:
                report.findings.append(SyncFinding(v.provider, "schema-unavailable", v.endpoint,
                                                   v.key, "the API gave no input schema"))
                continue
            _record(v, fetched, source, report, dest=dest)
    finally:
        for api in apis.values():
            api.close()


def schema_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What changed between two input schemas, field by field (empty: the same)."""
    a, b = dict(old.get("properties") or {}), dict(new.get("properties") or {})
    out = [f"+{k}" for k in sorted(set(b) - set(a))] + [f"-{k}" for k in sorted(set(a) - set(b))]
    keys = ("type", "enum", "minimum", "maximum", "anyOf", "multipleOf", "pattern")
    for k in sorted(set(a) & set(b)):
        if {x: a[k].get(x) for x in keys} != {x: b[k].get(x) for x in keys}:
            out.append(f"~{k}")
    if sorted(old.get("required") or []) != sorted(new.get("required") or []):
        out.append("~required")
    return out


def _record(v: OfferView, fetched: dict[str, Any], source: str, report: SyncReport, *,
            dest: Path | None) -> None:
    stored = input_schema(v.provider, v.endpoint)
    changes = schema_changes(stored.input if stored else {}, fetched)
    if stored is not None and not changes:
        report.findings.append(SyncFinding(v.provider, "schema-same", v.endpoint, v.key,
                                           f"as stored ({stored.as_of})"))
        return
    report.findings.append(SyncFinding(v.provider, "schema", v.endpoint, v.key,
                                       "fields " + " ".join(changes), before=stored.as_of
                                       if stored else None, after=str(report.as_of)))
    if dest is None:
        return
    path = dest / v.provider / (v.endpoint.split(":", 1)[0] + ".json")
    doc: dict[str, Any] = {"provider": v.provider, "endpoint": v.endpoint.split(":", 1)[0]}
    if ":" in v.endpoint:
        doc["version"] = v.endpoint.split(":", 1)[1]
    if stored is not None and stored.size_rules:
        doc["size_rules"] = stored.size_rules
    doc.update({"source": source, "as_of": str(report.as_of), "input": fetched})
    path.parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    _load.cache_clear()
