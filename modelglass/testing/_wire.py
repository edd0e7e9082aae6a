"""What the simulated APIs accept: the stored input schemas (``catalog/schemas``), plus endpoints
a test serves itself (:meth:`Simulator.serve`), and each API's own error shape for a refusal.

An endpoint or model with neither a stored schema nor a registration is unknown: 404, as the
real APIs answer. A registered endpoint without a schema takes any input fields.
"""

from __future__ import annotations

import threading
from typing import Any

from ..catalog._wire_schema import InputSchema, Violation, input_schema

__all__ = ["Endpoints", "fal_detail", "openai_error", "replicate_invalid"]


class Endpoints:
    """The endpoints one simulator serves, per provider."""

    def __init__(self) -> None:
        self._served: dict[tuple[str, str], InputSchema | None] = {}
        self._lock = threading.Lock()

    def serve(self, provider: str, endpoint: str, schema: dict[str, Any] | None = None) -> None:
        """Accept ``endpoint`` (validated against ``schema`` when given, a JSON Schema)."""
        stored = None if schema is None else InputSchema(provider, endpoint, "a test", "", schema)
        with self._lock:
            self._served[(provider, endpoint.split(":", 1)[0])] = stored

    def lookup(self, provider: str, endpoint: str) -> tuple[bool, InputSchema | None]:
        """``(known, schema)``: a served endpoint first, then the stored schemas."""
        key = (provider, endpoint.split(":", 1)[0])
        with self._lock:
            if key in self._served:
                return True, self._served[key]
        stored = input_schema(provider, key[1])
        return stored is not None, stored

    def check(self, provider: str, endpoint: str, payload: Any
              ) -> tuple[bool, list[Violation]]:
        """``(known, violations)`` of ``payload`` sent to ``endpoint``."""
        known, schema = self.lookup(provider, endpoint)
        if not known or schema is None or not isinstance(payload, dict):
            return known, []
        return True, schema.violations(payload)


# -- fal: FastAPI / pydantic validation errors -----------------------------------------------------
def fal_detail(violations: list[Violation]) -> list[dict[str, Any]]:
    """fal's 422 ``detail[]`` items (pydantic v2 style) for ``violations``."""
    return [_fal_item(v) for v in violations]


def _fal_item(v: Violation) -> dict[str, Any]:
    loc: list[Any] = ["body", *(v.path or (v.field,))]
    ctx: dict[str, Any] | None = None
    if v.kind == "unknown":
        type_, msg = "extra_forbidden", "Extra inputs are not permitted"
    elif v.kind == "missing":
        type_, msg = "missing", "Field required"
    elif v.rule in ("maximum", "exclusiveMaximum"):
        type_, msg, ctx = "less_than_equal", f"Input should be less than or equal to {v.limit}", \
            {"le": v.limit}
    elif v.rule in ("minimum", "exclusiveMinimum"):
        type_, msg, ctx = ("greater_than_equal", f"Input should be greater than or equal to "
                           f"{v.limit}", {"ge": v.limit})
    elif v.kind == "enum" and isinstance(v.limit, list):
        listed = _or_list(v.limit)
        type_, msg, ctx = "literal_error", f"Input should be {listed}", {"expected": listed}
    elif v.rule == "type":
        type_, msg = f"{v.limit}_type", f"Input should be a valid {v.limit}"
    else:
        type_, msg = "value_error", f"Value error, {v.message}"
    item: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_, "input": v.value,
                            "url": f"https://errors.pydantic.dev/2.10/v/{type_}"}
    if ctx is not None:
        item["ctx"] = ctx
    return item


def _or_list(values: list[Any]) -> str:
    quoted = [repr(x) for x in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


# -- Replicate: problem+json with invalid_fields ----------------------------------------------------
def replicate_invalid(violations: list[Violation]) -> tuple[str, list[dict[str, Any]]]:
    """Replicate's 422 ``detail`` text and ``invalid_fields`` for ``violations``."""
    fields = [_replicate_field(v) for v in violations]
    detail = "\n".join(f"- {f['field']}: {f['description']}" for f in fields)
    return detail, fields


def _replicate_field(v: Violation) -> dict[str, Any]:
    if v.kind == "unknown":
        return {"type": "additional_property_not_allowed", "field": "input",
                "description": f"Additional property {v.field} is not allowed"}
    name = "input." + ".".join(str(p) for p in (v.path or (v.field,)))
    if v.kind == "missing":
        type_, text = "required", f"{v.field} is required"
    elif v.rule in ("maximum", "exclusiveMaximum"):
        type_, text = "number_lte", f"Must be less than or equal to {v.limit}"
    elif v.rule in ("minimum", "exclusiveMinimum"):
        type_, text = "number_gte", f"Must be greater than or equal to {v.limit}"
    elif v.rule == "multipleOf":
        type_, text = "multiple_of", f"Must be a multiple of {v.limit}"
    elif v.kind == "enum" and isinstance(v.limit, list):
        type_ = "enum"
        text = f"{v.field} must be one of the following: " + ", ".join(f'"{x}"' for x in v.limit)
    elif v.rule == "type":
        type_, text = "invalid_type", f"Invalid type. Expected: {v.limit}, given: {_json_type(v.value)}"
    else:
        type_, text = "value", v.message
    return {"type": type_, "field": name, "description": text}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), "null")


# -- OpenAI: {"error": {...}} with unknown_parameter / invalid_value --------------------------------
def openai_error(v: Violation) -> tuple[str, str | None, str]:
    """``(message, param, code)`` of OpenAI's 400 for the first violation."""
    if v.kind == "unknown":
        return f"Unknown parameter: '{v.field}'.", v.field, "unknown_parameter"
    if v.kind == "missing":
        return f"Missing required parameter: '{v.field}'.", v.field, "missing_required_parameter"
    if v.rule == "maximum" and isinstance(v.value, int):
        return (f"Invalid '{v.field}': integer above maximum value. Expected a value <= "
                f"{v.limit}, but got {v.value} instead.", v.field, "integer_above_max_value")
    if v.rule == "minimum" and isinstance(v.value, int):
        return (f"Invalid '{v.field}': integer below minimum value. Expected a value >= "
                f"{v.limit}, but got {v.value} instead.", v.field, "integer_below_min_value")
    if v.kind == "enum" and isinstance(v.limit, list):
        listed = ", ".join(f"'{x}'" for x in v.limit)
        return (f"Invalid value: '{v.value}'. Supported values are: {listed}.", v.field,
                "invalid_value")
    if v.rule == "maxLength":
        return (f"Invalid '{v.field}': string too long. Expected a string with maximum length "
                f"{v.limit}, but got a string with length {len(str(v.value))} instead.", v.field,
                "string_above_max_length")
    return f"Invalid '{v.field}': {v.message}.", v.field, "invalid_value"
