"""``Policy``: the routing rules a team writes in a file and reviews like code.

A policy file is YAML, validated with pydantic; every problem is reported as
``file:line: field.path: message`` (one :class:`~modelglass.errors.CatalogError` for all of them),
and every name it uses (quality axes, capability axes, providers, models) must exist, or the error
lists the valid ones::

    # policy.yaml
    extends: default                      # the shipped catalog/policies/default.yaml (the default)
    axes:
      social-card: {extends: thumbnail, size: 1200x630, weights: {text_rendering: 0.4},
                    max_cost_usd: 0.02}
      hero: {min: {prompt_adherence: 8}, cost_weight: 0.2}
    providers: {allow: [fal, openai], prefer: {fal: 0.05}}
    require: {commercial_use: true}
    limits: {max_latency_p90_s: 30}

Sections (all optional; each merges over the policy it extends, lists replace):

- ``axes``: quality axes of one's own. An axis named like a shipped one (``hero``) changes it; a
  new name must say ``extends:`` (a shipped axis or another of the policy's). ``weights`` and
  ``min`` (alias ``minimums``) merge into the base's (same scale as the base; ``0`` drops a weight,
  ``null`` drops a minimum); ``size`` (alias ``target_size``), ``cost_weight``,
  ``cost_reference_usd``, ``max_cost_usd`` (per-image ceiling), ``min_megapixels``,
  ``unknown_score``, ``dpi`` and ``description`` replace the base's.
- ``providers`` / ``models``: ``allow`` (only these), ``deny`` (never these), ``prefer``
  (name → bonus added to the total score; negative to disfavour).
- ``require``: licence facts an offer's model must have: ``commercial_use: true`` (a verified
  yes; unverified does not pass), ``open_weights: true``.
- ``limits``: ``max_latency_p90_s`` (hard; judged on observed p90 latency where the store has
  it, else the catalog's p95, else its p50), ``unknown_latency: reject | allow`` (what an offer
  with no latency figure does under a limit), ``max_cost_usd`` (per-image ceiling on every axis).
- ``tie_break``: the order of keys that decide between equal totals (``cost``, ``quality``,
  ``latency``, ``offer``); ``tie_tolerance``: totals this close count as equal.
- ``scoring``: the bonus/penalty numbers of :class:`~._scoring.Scoring`.
- ``health``: when a provider (or one offer) cools down after failures (see :mod:`._health`).
- ``learning``: routing that learns from outcome checks (see :mod:`._learning`):
  ``prior_strength`` (pseudo-observations the model's score counts as), ``min_samples``
  (checked images an offer needs before the learned ranking engages), ``enabled``.
"""

from __future__ import annotations

import copy
import difflib
import json
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..catalog._schema import Axis, QualityAxis
from ..errors import CatalogError, InvalidRequest
from ._scoring import Scoring

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..plan import ProviderCall

__all__ = ["HealthRules", "LearningRules", "Policy", "default_policy_path", "load_policy"]

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


class Policy:
    """How routing chooses: quality axes, provider and model rules, licence requirements, latency
    limits, tie-breaking, scoring numbers and provider health. Immutable; equal policies hash equal.

    >>> import modelglass as mg
    >>> policy = mg.Policy.load("policy.yaml")                # doctest: +SKIP
    >>> client = mg.Client(policy=policy)                     # doctest: +SKIP
    >>> client.route("a launch banner", quality="social-card").explain()   # doctest: +SKIP

    ``Policy()`` is the built-in default (the same rules as the shipped ``default.yaml``);
    ``Policy.default()`` loads that file. ``upscale_available`` is the print axis's hook: given the
    plan of an offer whose largest output is below the axis's ``min_megapixels``, return True when
    an upscale step can close the gap.
    """

    def __init__(self, spec: PolicyFile | Mapping[str, Any] | None = None, *,
                 name: str = "default", source: str | None = None,
                 upscale_available: Callable[[ProviderCall], bool] | None = None,
                 **scoring: float) -> None:
        if spec is None:
            spec = PolicyFile()
        elif not isinstance(spec, PolicyFile):
            spec = PolicyFile.model_validate(dict(spec))
        if scoring:
            merged = {**spec.scoring.model_dump(exclude_none=True), **scoring}
            spec = spec.model_copy(update={"scoring": ScoringRules.model_validate(merged)})
        self.spec: PolicyFile = spec
        self.name = name
        self.source = source
        self.upscale_available = upscale_available
        defaults = Scoring()
        self.scoring = Scoring(**{f.name: getattr(spec.scoring, f.name)
                                  if getattr(spec.scoring, f.name) is not None
                                  else getattr(defaults, f.name) for f in fields(Scoring)})
        rules = spec.model_dump(mode="json", exclude={"description", "extends", "scoring"})
        rules["scoring"] = asdict(self.scoring)
        self._key = (json.dumps(rules, sort_keys=True),
                     id(upscale_available) if upscale_available else 0)
        # Per catalog (weakly: a catalog that goes away takes its entries with it).
        self._axes: weakref.WeakKeyDictionary[Catalog, dict[str, QualityAxis]] = \
            weakref.WeakKeyDictionary()
        self._checked: weakref.WeakSet[Catalog] = weakref.WeakSet()
        self._lock = threading.Lock()

    # -- identity ---------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self._key == other._key \
            and self.upscale_available is other.upscale_available

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        # The fingerprint tells two policies of one name apart (caches key on the repr too).
        where = f", source={self.source!r}" if self.source else ""
        return f"Policy(name={self.name!r}{where}, rules={self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        """A short digest of the rules: equal policies have equal fingerprints."""
        import hashlib

        return hashlib.sha256(self._key[0].encode()).hexdigest()[:12]

    # Pickling keeps the rules (Ray workers route by the driver's policy), not the caches.
    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "name": self.name, "source": self.source,
                "upscale_available": self.upscale_available}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Policy.__init__(self, state["spec"], name=state["name"], source=state["source"],
                        upscale_available=state["upscale_available"])

    # -- the parts routing reads ------------------------------------------------------------------
    @property
    def providers(self) -> NameRules:
        return self.spec.providers

    @property
    def models(self) -> NameRules:
        return self.spec.models

    @property
    def require(self) -> Requirements:
        return self.spec.require

    @property
    def limits(self) -> Limits:
        return self.spec.limits

    @property
    def health(self) -> HealthRules:
        return self.spec.health

    @property
    def learning(self) -> LearningRules:
        return self.spec.learning

    @property
    def tie_break(self) -> tuple[str, ...]:
        return tuple(self.spec.tie_break)

    @property
    def tie_tolerance(self) -> float:
        return self.spec.tie_tolerance

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def default(cls) -> Policy:
        """The shipped default policy (``catalog/policies/default.yaml``), loaded once."""
        global _DEFAULT
        if _DEFAULT is None:
            _DEFAULT = load_policy(default_policy_path())
        return _DEFAULT

    @classmethod
    def load(cls, path: str | Path, *, catalog: Catalog | None = None) -> Policy:
        """Load a policy file; names are checked against ``catalog`` (default: the shipped one).

        Raises :class:`~modelglass.errors.CatalogError` listing every problem as
        ``file:line: field.path: message``.
        """
        return load_policy(Path(path), catalog=catalog)

    @classmethod
    def coerce(cls, value: Policy | str | Path | None, *,
               catalog: Catalog | None = None) -> Policy | None:
        """A policy from a policy, a file path, or ``"default"``; None stays None. Names are
        checked against ``catalog`` (default: the shipped catalog)."""
        if value is None:
            return None
        if isinstance(value, Policy):
            if catalog is not None:
                value.check(catalog)
            return value
        if not isinstance(value, str | Path):
            raise InvalidRequest(f"policy must be an mg.Policy, a policy file path or "
                                 f"'default', not {type(value).__name__} {value!r}",
                                 field="policy", hint="mg.Policy.load('policy.yaml'), or pass "
                                 "the path itself")
        if str(value) == "default":
            policy = cls.default()
            if catalog is not None:
                policy.check(catalog)
            return policy
        return cls.load(value, catalog=catalog)

    def replace(self, *, upscale_available: Callable[[ProviderCall], bool] | None = None,
                **scoring: float) -> Policy:
        """A copy with another upscale hook and/or scoring numbers."""
        return Policy(self.spec, name=self.name, source=self.source,
                      upscale_available=upscale_available or self.upscale_available, **scoring)

    # -- axes -------------------------------------------------------------------------------------
    @property
    def default_quality(self) -> str:
        """The axis a request routes by when it names none: the policy's ``default_quality``
        (``hero`` in the shipped policy)."""
        return self.spec.default_quality

    def axis_names(self, catalog: Catalog) -> list[str]:
        """Every quality axis this policy routes by: the catalog's, then the policy's own."""
        return list(dict.fromkeys([*catalog.quality_axes, *self.spec.axes]))

    def quality_axis(self, name: str, catalog: Catalog) -> QualityAxis:
        """The axis ``name`` with this policy's changes applied (cached per catalog)."""
        table = self._axes.get(catalog)
        hit = table.get(name) if table is not None else None
        if hit is None:
            hit = self._resolve(name, catalog, ())
            with self._lock:
                self._axes.setdefault(catalog, {})[name] = hit
        return hit

    def root_axis(self, name: str, catalog: Catalog) -> str:
        """The shipped axis ``name`` extends in the end (prices by quality tier follow it)."""
        seen: list[str] = []
        while name not in catalog.quality_axes:
            rules = self.spec.axes.get(name)
            if rules is None or rules.extends is None or name in seen:
                return name
            seen.append(name)
            name = rules.extends
        return name

    def _resolve(self, name: str, catalog: Catalog, chain: tuple[str, ...]) -> QualityAxis:
        rules = self.spec.axes.get(name)
        if rules is None:
            if name not in catalog.quality_axes:  # the caller's quality, not the catalog's fault
                raise InvalidRequest(_unknown("quality axis", name, self.axis_names(catalog)),
                                     field="quality", hint="use one of the valid axes, or add "
                                     "your own to a policy file (axes: {name: {extends: hero}})")
            return catalog.quality_axes[name]
        if name in chain:
            raise CatalogError(f"policy axis {name!r} extends itself through "
                               f"{' → '.join((*chain, name))}")
        base_name = rules.extends
        if base_name is None:
            base_name = name
            if name not in catalog.quality_axes:
                raise CatalogError(f"policy axis {name!r} is new: say which axis it extends "
                                   f"(one of {', '.join(self.axis_names(catalog))})")
            base = catalog.quality_axes[name]
        elif base_name == name:
            base = catalog.quality(name)
        else:
            if base_name not in catalog.quality_axes and base_name not in self.spec.axes:
                raise CatalogError(_unknown("quality axis", base_name, self.axis_names(catalog)))
            base = self._resolve(base_name, catalog, (*chain, name))
        return _apply(base, rules, name)

    # -- names ------------------------------------------------------------------------------------
    def check(self, catalog: Catalog) -> None:
        """Raise :class:`CatalogError` when a name this policy uses is not in ``catalog``."""
        if catalog in self._checked:
            return
        problems = [f"{self.source or 'policy'}: {p}"
                    for _, p in _name_problems(self.spec.model_dump(), catalog)]
        if problems:
            raise CatalogError(f"policy has {len(problems)} problem(s)", problems=problems)
        for name in self.spec.axes:
            self.quality_axis(name, catalog)
        self._checked.add(catalog)

    def to_dict(self) -> dict[str, Any]:
        """The policy as data (what ``policy check --json`` prints)."""
        data = self.spec.model_dump(mode="json", by_alias=False)
        data["name"] = self.name
        data["source"] = self.source
        data["scoring"] = asdict(self.scoring)
        return data


_DEFAULT: Policy | None = None


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


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, everything else (lists too) replaces."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read(path: Path, catalog: Catalog, problems: Any, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The merged raw data of ``path`` and everything it extends; problems collected."""
    from ..catalog._load import _display, _parse, _validate

    doc = _parse(path, problems)
    if doc is None:
        return {}
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        problems.add(doc, (), "a policy file is a mapping (extends:, axes:, providers:, …)")
        return {}
    for name, rules in data.get("axes", {}).items() if isinstance(data.get("axes"), dict) else ():
        _check_axis_keys(rules, doc, ("axes", name), problems)
    spec = _validate(PolicyFile, data, doc, (), problems)
    for where, message in _name_problems(data, catalog):
        problems.add(doc, where, message)
    if spec is None:
        return {}
    parent: dict[str, Any] = {}
    ext = data.get("extends", "default")
    if ext is not None:
        target = default_policy_path() if ext == "default" else (path.parent / str(ext))
        if target.resolve() in chain or target.resolve() == path.resolve():
            problems.add(doc, ("extends",), f"policy {ext!r} extends itself")
        elif ext != "default" and not target.is_file():
            problems.add(doc, ("extends",), f"no policy file {ext!r} (relative to "
                         f"{_display(path.parent)}); use `default` or a path to a policy file")
        else:
            parent = _read(target, catalog, problems, (*chain, path.resolve()))
    mine = {k: v for k, v in data.items() if k != "extends"}
    return _merge(parent, mine)


def _check_axis_keys(rules: Any, doc: Any, where: tuple[str, ...], problems: Any) -> None:
    # `min` and `minimums` (and `size` and `target_size`) are one field each: not both.
    if isinstance(rules, dict):
        for a, b in (("min", "minimums"), ("size", "target_size")):
            if a in rules and b in rules:
                problems.add(doc, (*where, b), f"give either `{a}` or `{b}`, not both")
                del rules[b]  # reported once, here, not again as an unknown field


def load_policy(path: Path, *, catalog: Catalog | None = None) -> Policy:
    """Load ``path`` (and what it extends), checking every name against ``catalog``."""
    from ..catalog import Catalog
    from ..catalog._load import _display, _Problems

    catalog = catalog or Catalog.default()
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{_display(path)}: no such policy file; write one (see "
                           "`modelglass policy check --help`) or use 'default'")
    problems = _Problems()
    data = _read(path, catalog, problems, ())
    if not problems:
        spec = PolicyFile.model_validate({**data, "extends": None})
        policy = Policy(spec, name=path.stem, source=_display(path))
        for name in spec.axes:
            try:
                policy.quality_axis(name, catalog)
            except CatalogError as exc:
                problems.append(f"{_display(path)}:1: axes.{name}: {exc}")
        if not problems:
            policy._checked.add(catalog)
            return policy
    n = len(problems)
    raise CatalogError(f"policy has {n} problem{'s' if n != 1 else ''}",
                       problems=sorted(problems, key=_line_order))


def _line_order(problem: str) -> tuple[str, int]:
    file, _, rest = problem.partition(":")
    line = rest.partition(":")[0]
    return file, int(line) if line.isdigit() else 0
