"""The providers' published input schemas, stored with the catalog (``catalog/schemas``).

One JSON file per hosted endpoint, ``schemas/<provider>/<endpoint>.json``::

    {"provider": "fal", "endpoint": "fal-ai/flux/dev", "source": "...", "as_of": "2026-08-02",
     "input": {<JSON Schema of the request body / prediction input>}}

Replicate community models add the pinned ``version``; ``size_rules`` state what a JSON Schema
cannot (``gpt-image-2`` on OpenAI and on fal: ``multiple_of``, ``max_side``, ``max_aspect``,
``min_pixels``, ``max_pixels`` of the output size), read by planning and the simulators alike. The planner reads ranges,
enums and the fields that exist from here, and checks every payload against ``input`` before
anything is sent; the simulators check what they receive against the same files.

>>> s = input_schema("replicate", "ideogram-ai/ideogram-v3-turbo")
>>> s.range("seed")
(0, 2147483647)
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._load import default_catalog_dir
from ._overlay import OVERLAY_ENV, default_overlay_path

__all__ = ["FAL_PRESETS", "InputSchema", "Violation", "closed_schema", "input_from_openapi",
           "input_schema", "resolve_refs", "schema_path", "schemas_dir", "user_schemas_dir"]

#: fal's named ``image_size`` presets and the pixels each stands for (fal's OpenAPI ``ImageSize``
#: enum): data the schema check reads, and the fal payload builder and simulator share.
FAL_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
}


@dataclass(frozen=True)
class Violation:
    """One way a payload breaks the schema: the top-level ``field`` and what is wrong."""

    field: str
    message: str
    kind: str  # "unknown" | "missing" | "enum" | "range" | "type" | "other"
    path: tuple[str | int, ...] = ()
    rule: str = ""      # the JSON Schema keyword that failed ("maximum", "enum", ...)
    limit: Any = None   # that keyword's value (the maximum, the listed values, ...)
    value: Any = None   # the value sent


@dataclass(frozen=True)
class InputSchema:
    """A provider's input schema for one endpoint, with where it came from."""

    provider: str
    endpoint: str
    source: str
    as_of: str
    input: dict[str, Any] = field(repr=False)
    version: str | None = None
    size_rules: dict[str, Any] | None = None

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.input.get("properties") or {})

    @property
    def closed(self) -> bool:
        """True when a field the schema does not list is refused."""
        return self.input.get("additionalProperties") is False

    def has(self, name: str) -> bool:
        """True when the endpoint takes a field called ``name``."""
        return name in self.properties or not self.closed

    def spec(self, name: str) -> dict[str, Any]:
        return dict(self.properties.get(name) or {})

    def enum(self, name: str) -> list[Any] | None:
        """The values a string field takes, when it lists them (an ``anyOf`` branch counts)."""
        spec = self.spec(name)
        for sub in [spec, *spec.get("anyOf", [])]:
            if "enum" in sub:
                return list(sub["enum"])
        return None

    def range(self, name: str) -> tuple[float | None, float | None]:
        """``(minimum, maximum)`` of a numeric field; None where unbounded."""
        spec = self.spec(name)
        return spec.get("minimum"), spec.get("maximum")

    def object_branch(self, name: str) -> dict[str, Any] | None:
        """The ``{width, height}``-style object a field may take, if any."""
        spec = self.spec(name)
        for sub in [spec, *spec.get("anyOf", [])]:
            if sub.get("type") == "object":
                return sub
        return None

    def violations(self, payload: dict[str, Any]) -> list[Violation]:
        """Every way ``payload`` breaks the schema (empty: valid).

        A compiled ``fastjsonschema`` check answers the common case (valid) in microseconds;
        only a payload it refuses is walked by ``jsonschema`` for every violation in detail.
        """
        rules = self._size_rule_violations(payload)
        from fastjsonschema import JsonSchemaException

        try:
            self._compiled(payload)
            return rules
        except JsonSchemaException:
            out = [_violation(err) for err in self._validator.iter_errors(payload)]
        out.extend(rules)
        return sorted(out, key=lambda v: (v.field, v.message))

    @functools.cached_property
    def _compiled(self) -> Any:
        import fastjsonschema

        # draft-07 keywords only; formats are annotations here (as in jsonschema's default) and
        # defaults are never written into the payload.
        return fastjsonschema.compile(self.input, use_default=False, use_formats=False)

    @functools.cached_property
    def _validator(self) -> Any:
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.input)

    def ruled_size(self, payload: dict[str, Any]) -> tuple[str, int, int] | None:
        """``(field, width, height)`` of the output size ``payload`` asks for, when the schema
        has ``size_rules`` to check it against: OpenAI's ``size`` (``"WxH"``), fal's
        ``image_size`` (``{width, height}`` or a named preset). None: no rules, or ``auto``."""
        if not self.size_rules:
            return None
        size = payload.get("size")
        if isinstance(size, str) and "x" in size:
            w, _, h = size.partition("x")
            if w.isdigit() and h.isdigit():
                return "size", int(w), int(h)
        image = payload.get("image_size")
        if isinstance(image, dict):
            iw, ih = image.get("width"), image.get("height")
            if isinstance(iw, int) and isinstance(ih, int) and iw > 0 and ih > 0:
                return "image_size", iw, ih
        if isinstance(image, str) and image in FAL_PRESETS:
            return ("image_size", *FAL_PRESETS[image])
        return None

    def size_rule_problems(self, width: int, height: int) -> list[str]:
        """How ``width``×``height`` breaks the schema's ``size_rules`` (empty: it is allowed)."""
        rules = self.size_rules or {}
        m = int(rules.get("multiple_of", 1))
        problems = []
        if width % m or height % m:
            problems.append(f"both sides must be multiples of {m}")
        aspect = rules.get("max_aspect")
        if aspect and max(width, height) > aspect * min(width, height):
            problems.append(f"aspect must be within 1:{aspect:g}..{aspect:g}:1")
        if max(width, height) > rules.get("max_side", 1 << 30):
            problems.append(f"at most {rules['max_side']} px a side")
        lo, hi = rules.get("min_pixels", 0), rules.get("max_pixels", 1 << 60)
        if not lo <= width * height <= hi:
            problems.append(f"total pixels must be {lo:,}..{hi:,}, not {width * height:,}")
        return problems

    def nearest_ruled_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the ``size_rules`` allow that is nearest to ``width``×``height`` (aspect
        first, then area, both in log terms)."""
        rules = self.size_rules or {}
        m = int(rules.get("multiple_of", 1))
        aspect = float(rules.get("max_aspect") or 1e9)
        ratio = min(max(width / height, 1 / aspect), aspect)
        area = min(max(width * height, rules.get("min_pixels", 1)), rules.get("max_pixels", 1e18))
        w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
        shrink = min(1.0, rules.get("max_side", 1e9) / max(w, h))
        w, h = w * shrink, h * shrink
        cands = [((i + a) * m, (j + b) * m) for i, j in [(int(w // m), int(h // m))]
                 for a in range(-2, 4) for b in range(-2, 4) if i + a > 0 and j + b > 0]
        ok = [c for c in cands if not self.size_rule_problems(*c)] or cands
        return min(ok, key=lambda c: (round(abs(math.log(c[0] / c[1] / (width / height))), 3),
                                      abs(math.log(c[0] * c[1] / (width * height)))))

    def _size_rule_violations(self, payload: dict[str, Any]) -> list[Violation]:
        if not self.size_rules:
            return []
        size = payload.get("size")
        if isinstance(size, str) and "x" in size and self.ruled_size(payload) is None:
            return [Violation("size", f"{size!r} is not WIDTHxHEIGHT", "type")]
        found = self.ruled_size(payload)
        if found is None:
            return []
        name, w, h = found
        value = payload.get(name)
        return [Violation(name, f"{w}x{h}: {p}", "range", (name,), "size_rules",
                          self.size_rules, value) for p in self.size_rule_problems(w, h)]


def _violation(err: Any) -> Violation:
    if err.validator == "anyOf" and isinstance(err.instance, dict) and err.context:
        # {width, height} given where a preset or an object is taken: report the deepest cause
        err = max(err.context, key=lambda e: len(e.absolute_path))
    path = tuple(err.absolute_path)
    validator = err.validator
    if validator == "additionalProperties" and not path:
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        name = extra[0] if extra else "?"
        return Violation(name, f"unknown field {name!r}", "unknown", (name,),
                         "additionalProperties", None, err.instance.get(name))
    if validator == "required":
        missing = str(err.message).split("'")[1] if "'" in str(err.message) else "?"
        return Violation(missing, f"{missing!r} is required", "missing", (missing,), "required")
    kind = {"enum": "enum", "const": "enum", "minimum": "range", "maximum": "range",
            "exclusiveMinimum": "range", "exclusiveMaximum": "range", "multipleOf": "range",
            "minLength": "range", "maxLength": "range", "type": "type",
            "anyOf": "enum", "pattern": "enum"}.get(str(validator), "other")
    name = str(path[0]) if path else "?"
    limit = err.validator_value
    if validator == "anyOf":  # e.g. image_size: a listed preset or {width, height}
        limit = [x for sub in err.validator_value for x in sub.get("enum", [])] or None
    return Violation(name, err.message, kind, path, str(validator), limit, err.instance)


def schemas_dir() -> Path:
    """Where the stored schemas live: ``schemas/`` in the packaged catalog."""
    return default_catalog_dir() / "schemas"


def schema_path(provider: str, endpoint: str) -> Path:
    """The file that holds ``endpoint``'s schema (a Replicate ``:version`` is not part of it)."""
    return schemas_dir() / provider / (endpoint.split(":", 1)[0] + ".json")


def user_schemas_dir() -> Path | None:
    """Where ``catalog sync`` writes refreshed schemas: ``schemas/`` next to the user's overlay
    (None when overlays are off, ``MODELGLASS_CATALOG_OVERLAY=""``)."""
    import os

    return _user_dir(os.environ.get(OVERLAY_ENV))


@functools.lru_cache(maxsize=8)
def _user_dir(env: str | None) -> Path | None:
    overlay = default_overlay_path()
    return None if overlay is None else overlay.parent / "schemas"


def input_schema(provider: str, endpoint: str) -> InputSchema | None:
    """The input schema of ``endpoint`` on ``provider``: the copy ``catalog sync`` refreshed
    (next to the user's overlay) if there is one, else the shipped one; None when neither."""
    user = user_schemas_dir()
    return _load(provider, endpoint, str(user) if user is not None else "")


@functools.lru_cache(maxsize=65536)  # one entry per endpoint planned (most: None)
def _load(provider: str, endpoint: str, user_dir: str) -> InputSchema | None:
    rel = Path(provider) / (endpoint.split(":", 1)[0] + ".json")
    path = Path(user_dir) / rel if user_dir else None
    if path is None or not path.is_file():
        path = schema_path(provider, endpoint)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    return InputSchema(provider=provider, endpoint=doc.get("endpoint", endpoint),
                       source=str(doc.get("source", "")), as_of=str(doc.get("as_of", "")),
                       input=doc["input"], version=doc.get("version"),
                       size_rules=doc.get("size_rules"))


# -- published schemas, as `catalog sync` reads them (each provider's `published_input`) ---------
def input_from_openapi(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema of the body of the first ``POST`` in an OpenAPI document, ``$ref`` s
    resolved (fal's queue OpenAPI: the submit's request body)."""
    for ops in (doc.get("paths") or {}).values():
        post = ops.get("post") if isinstance(ops, Mapping) else None
        body = (((post or {}).get("requestBody") or {}).get("content") or {}).get(
            "application/json", {}).get("schema")
        if isinstance(body, dict):
            return closed_schema(resolve_refs(body, doc))
    return None


def resolve_refs(node: Any, doc: Any, depth: int = 0) -> Any:
    """``node`` with every local ``$ref`` (``#/components/schemas/X``) replaced by its target."""
    if depth > 20:
        return {}
    if isinstance(node, list):
        return [resolve_refs(x, doc, depth + 1) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**resolve_refs(target, doc, depth + 1), **rest}
    return {k: resolve_refs(v, doc, depth + 1) for k, v in node.items()}


def closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A fetched schema as stored: without its title and fal's field order, and closed
    (``additionalProperties: false``, a field the provider does not list is never sent) unless it
    says otherwise."""
    out = {k: v for k, v in schema.items() if k not in ("title", "x-fal-order-properties")}
    out.setdefault("additionalProperties", False)
    return out
