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

from ..catalog._wire_schema import _load, input_schema
from ._sync_guard import ApiError as _ApiError
from ._sync_guard import BoundedApi, Deadline
from ._sync_report import (
    FAL_API_DEFAULT,
    REPLICATE_API_DEFAULT,
    SyncFinding,
    SyncReport,
    _fal_key,
)

if TYPE_CHECKING:
    from ..catalog import OfferView

__all__ = ["input_from_openapi", "schema_changes", "sync_schemas"]


def sync_schemas(views: list[OfferView], report: SyncReport, env: Mapping[str, str],
                 timeout_s: float | Deadline, *, dest: Path | None) -> None:
    """Refresh the stored input schema of every fal and Replicate endpoint in ``views``; a
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
            if v.provider not in ("fal", "replicate") or key in done:
                continue
            done.add(key)
            if v.provider not in apis:
                if v.provider == "fal":
                    fal_key = _fal_key(env)
                    apis["fal"] = BoundedApi(env.get("MODELGLASS_FAL_API_URL")
                                             or FAL_API_DEFAULT,
                                             {"Authorization": f"Key {fal_key}"} if fal_key
                                             else {}, deadline)
                else:
                    token = env.get("REPLICATE_API_TOKEN")
                    if not token:
                        continue
                    apis["replicate"] = BoundedApi(env.get("REPLICATE_BASE_URL")
                                                   or REPLICATE_API_DEFAULT,
                                                   {"Authorization": f"Bearer {token}"},
                                                   deadline)
            try:
                fetched, source = _fetch(apis[v.provider], v.provider, ref[0],
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


def _fetch(api: Any, provider: str, endpoint: str, version: str | None
           ) -> tuple[dict[str, Any] | None, str]:
    if provider == "fal":
        status, body = api.get("/models", {"endpoint_id": endpoint, "expand": "openapi-3.0"})
        models = (body or {}).get("models") or [] if status != 404 else []
        doc = next((m.get("openapi") for m in models if m.get("endpoint_id") == endpoint), None)
        return (input_from_openapi(doc) if isinstance(doc, dict) else None,
                f"fal Platform API GET /models?endpoint_id={endpoint}&expand=openapi-3.0")
    if version:
        path = f"/v1/models/{endpoint}/versions/{version}"
        status, body = api.get(path)
        schema = (body or {}).get("openapi_schema") if status != 404 else None
    else:
        path = f"/v1/models/{endpoint}"
        status, body = api.get(path)
        latest = ((body or {}).get("latest_version") or {}) if status != 404 else {}
        schema = latest.get("openapi_schema")
    found = ((schema or {}).get("components") or {}).get("schemas", {}).get("Input")
    return (_closed(_resolve(found, schema)) if isinstance(found, dict) else None,
            f"Replicate API GET {path} (openapi_schema Input)")


def input_from_openapi(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of the body of the first ``POST`` in an OpenAPI document, ``$ref`` s
    resolved (fal's queue OpenAPI: the submit's request body)."""
    for ops in (doc.get("paths") or {}).values():
        post = ops.get("post") if isinstance(ops, Mapping) else None
        body = (((post or {}).get("requestBody") or {}).get("content") or {}).get(
            "application/json", {}).get("schema")
        if isinstance(body, dict):
            return _closed(_resolve(body, doc))
    return None


def _resolve(node: Any, doc: Any, depth: int = 0) -> Any:
    """``node`` with every local ``$ref`` (``#/components/schemas/X``) replaced by its target."""
    if depth > 20:
        return {}
    if isinstance(node, list):
        return [_resolve(x, doc, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**_resolve(target, doc, depth + 1), **rest}
    return {k: _resolve(v, doc, depth + 1) for k, v in node.items()}


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in schema.items() if k not in ("title", "x-fal-order-properties")}
    out.setdefault("additionalProperties", False)
    return out


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
