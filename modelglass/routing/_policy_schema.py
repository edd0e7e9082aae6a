"""The schema of a policy file (pydantic, strict: an unknown key is an error), the names it must
use, and how a policy axis applies over the axis it extends. See :mod:`._policy` for the format."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..catalog._schema import Axis, QualityAxis
from ..errors import CatalogError, InvalidRequest

if TYPE_CHECKING:
    from ..catalog import Catalog

__all__ = ["AxisRules", "HealthRules", "LearningRules", "Limits", "NameRules", "PolicyFile",
           "Requirements", "ScoringRules", "default_policy_path"]

TieKey = Literal["cost", "quality", "latency", "offer"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AxisRules(_Strict):
    """A quality axis of the policy: changes on top of the axis it extends."""

    extends: str | None = None
    description: str | None = None
    weights: dict[Axis, float] = Field(default_factory=dict)
    minimums: dict[Axis, float | None] = Field(
        default_factory=dict, validation_alias=AliasChoices("min", "minimums"))
    target_size: str | None = Field(default=None,
                                    validation_alias=AliasChoices("size", "target_size"))
    min_megapixels: float | None = Field(default=None, gt=0)
    cost_weight: float | None = Field(default=None, ge=0, le=1)
    cost_reference_usd: float | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    unknown_score: float | None = Field(default=None, ge=0, le=10)
    dpi: int | None = Field(default=None, ge=72, le=1200)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()):
            raise ValueError("weights must be ≥ 0 (0 drops the axis from the base's weights)")
        return v

    @field_validator("minimums")
    @classmethod
    def _minimums(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        # Scores are 0–10: a minimum above 10 (or below 0) could never pass, or always would.
        bad = {str(a): m for a, m in v.items() if m is not None and not 0 <= m <= 10}
        if bad:
            raise ValueError("scores are 0–10; " + ", ".join(
                f"{a}: {m:g} is out of range" for a, m in bad.items()))
        return v

    @field_validator("target_size")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is None:
            return None
        from ..request import parse_size

        try:
            w, h = parse_size(v)
        except InvalidRequest as exc:  # reported at the field's line
            raise ValueError(str(exc)) from None
        return f"{w}x{h}"


class NameRules(_Strict):
    """``allow`` (only these; null = all), ``deny`` (never these), ``prefer`` (name → bonus)."""

    allow: list[str] | None = None
    deny: list[str] = Field(default_factory=list)
    prefer: dict[str, float] = Field(default_factory=dict)

    @field_validator("prefer")
    @classmethod
    def _prefer(cls, v: dict[str, float]) -> dict[str, float]:
        for name, bonus in v.items():
            if not -1 <= bonus <= 1:
                raise ValueError(f"prefer bonus for {name!r} must be within -1..1 (a total score "
                                 "is about 0..1)")
        return v


class Requirements(_Strict):
    """Licence facts the model must have (``true``: a verified yes)."""

    commercial_use: bool | None = None
    open_weights: bool | None = None


class Limits(_Strict):
    max_latency_p90_s: float | None = Field(default=None, gt=0)
    unknown_latency: Literal["reject", "allow"] = "reject"
    max_cost_usd: float | None = Field(default=None, gt=0)


class HealthRules(_Strict):
    """When failures cool a provider (``scope: provider``) or one offer (``scope: offer``) down:
    ``failures`` failed attempts within ``window_s`` seconds keep it out for ``cooldown_s``."""

    enabled: bool = True
    failures: int = Field(default=3, ge=1)
    window_s: float = Field(default=60.0, gt=0)
    cooldown_s: float = Field(default=120.0, ge=0)
    scope: Literal["provider", "offer"] = "provider"


class LearningRules(_Strict):
    """Routing that learns from outcome checks: a Beta prior of ``prior_strength``
    pseudo-observations from the model's score; the learned ranking engages once an offer has
    ``min_samples`` checked images of the request's prompt class (see :mod:`._learning`)."""

    enabled: bool = True
    prior_strength: float = Field(default=10.0, gt=0)
    min_samples: int = Field(default=20, ge=1)


class ScoringRules(_Strict):
    text_weight_share: float | None = Field(default=None, ge=0)
    composition_weight_share: float | None = Field(default=None, ge=0)
    text_soft_minimum: float | None = Field(default=None, ge=0, le=10)
    text_bonus: float | None = None
    text_penalty: float | None = None
    negative_bonus: float | None = None
    negative_penalty: float | None = None
    approximated_penalty: float | None = None
    dropped_penalty: float | None = None
    deprecated_penalty: float | None = None
    unknown_cost_score: float | None = Field(default=None, ge=0, le=1)
    uncertainty_penalty: float | None = Field(default=None, ge=0, le=5)
    uncertain_stderr: float | None = Field(default=None, gt=0)


class PolicyFile(_Strict):
    """The schema of one policy file."""

    extends: str | None = "default"
    description: str | None = None
    axes: dict[str, AxisRules] = Field(default_factory=dict)
    providers: NameRules = Field(default_factory=NameRules)
    models: NameRules = Field(default_factory=NameRules)
    require: Requirements = Field(default_factory=Requirements)
    limits: Limits = Field(default_factory=Limits)
    #: The axis a request routes by when it names none (the shipped default is ``hero``).
    default_quality: str = "hero"
    tie_break: list[TieKey] = Field(default_factory=lambda: list[TieKey](["cost", "offer"]))
    tie_tolerance: float = Field(default=0.0, ge=0, le=0.5)
    scoring: ScoringRules = Field(default_factory=ScoringRules)
    health: HealthRules = Field(default_factory=HealthRules)
    learning: LearningRules = Field(default_factory=LearningRules)

    @field_validator("axes")
    @classmethod
    def _axis_names(cls, v: dict[str, AxisRules]) -> dict[str, AxisRules]:
        import re

        for name in v:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", name):
                raise ValueError(f"axis name {name!r}: use lower-case letters, digits, '-', '_'")
        return v


def default_policy_path() -> Path:
    """The shipped default policy file (``catalog/policies/default.yaml``)."""
    from ..catalog import default_catalog_dir

    return default_catalog_dir() / "policies" / "default.yaml"


def _apply(base: QualityAxis, rules: AxisRules, name: str) -> QualityAxis:
    data = base.model_dump()
    weights: dict[str, float] = {str(a): w for a, w in base.weights.items()}
    weights.update((str(a), w) for a, w in rules.weights.items())
    data["weights"] = {a: w for a, w in weights.items() if w > 0}
    minimums: dict[str, float | None] = {str(a): v for a, v in base.minimums.items()}
    minimums.update((str(a), v) for a, v in rules.minimums.items())
    data["minimums"] = {a: v for a, v in minimums.items() if v is not None}
    for f in ("target_size", "min_megapixels", "cost_weight", "cost_reference_usd", "max_cost_usd",
              "unknown_score", "dpi", "description"):
        if f in rules.model_fields_set:
            data[f] = getattr(rules, f)
    if "description" not in rules.model_fields_set and rules.extends not in (None, name):
        data["description"] = f"{name}: {base.description}"
    try:
        return QualityAxis.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"policy axis {name!r} is not a valid quality axis: "
                           + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                       for e in exc.errors(include_url=False))) from None


def _unknown(kind: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (valid: {', '.join(valid)})"


def _name_problems(data: Any, catalog: Catalog) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for every name a policy's raw data uses that the catalog does not know.
    Tolerant of a malformed shape (the schema reports that), so names are checked even then."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if not isinstance(data, dict):
        return out
    providers = sorted(catalog.providers)
    models = sorted(catalog.models)
    own: dict[str, Any] = data["axes"] if isinstance(data.get("axes"), dict) else {}
    axes = list(dict.fromkeys([*catalog.quality_axes, *own]))
    for section, valid, kind in (("providers", providers, "provider"),
                                 ("models", models, "model")):
        rules = data.get(section)
        if not isinstance(rules, dict):
            continue
        for part in ("allow", "deny"):
            names = rules.get(part)
            for i, n in enumerate(names if isinstance(names, list) else []):
                if str(n) not in valid:
                    out.append(((section, part, i), _unknown(kind, str(n), valid)))
        prefer = rules.get("prefer")
        for n in prefer if isinstance(prefer, dict) else {}:
            if str(n) not in valid:
                out.append(((section, "prefer", n), _unknown(kind, str(n), valid)))
    default_quality = data.get("default_quality")
    if default_quality is not None and str(default_quality) not in axes:
        out.append((("default_quality",), _unknown("quality axis", str(default_quality), axes)))
    for name, rules in own.items():
        ext = rules.get("extends") if isinstance(rules, dict) else None
        if ext is not None and str(ext) not in axes:
            out.append((("axes", name, "extends"), _unknown("quality axis", str(ext), axes)))
        elif ext is None and name not in catalog.quality_axes:
            out.append((("axes", name), f"axis {name!r} is new: add `extends:` naming the axis it "
                                         f"builds on (one of {', '.join(axes)})"))
    return out
