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

import json
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from ..errors import CatalogError, InvalidRequest
from ._policy_load import _line_order, read_policy
from ._policy_schema import (
    HealthRules,
    LearningRules,
    Limits,
    NameRules,
    PolicyFile,
    Requirements,
    ScoringRules,
    _apply,
    _name_problems,
    _unknown,
    default_policy_path,
)
from ._scoring import Scoring

if TYPE_CHECKING:
    from ..catalog import Catalog, QualityAxis
    from ..plan import ProviderCall

__all__ = ["HealthRules", "LearningRules", "Policy", "default_policy_path", "load_policy"]

_T = TypeVar("_T")


class _FromSpec(Generic[_T]):
    """A policy attribute read straight from its :class:`PolicyFile` section of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type) -> _FromSpec[_T]: ...
    @overload
    def __get__(self, obj: Policy, objtype: type) -> _T: ...
    def __get__(self, obj: Policy | None, objtype: type) -> _FromSpec[_T] | _T:
        if obj is None:
            return self
        value: _T = getattr(obj.spec, self.name)
        return value


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
    providers = _FromSpec[NameRules]()
    models = _FromSpec[NameRules]()
    require = _FromSpec[Requirements]()
    limits = _FromSpec[Limits]()
    health = _FromSpec[HealthRules]()
    learning = _FromSpec[LearningRules]()

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
    data = read_policy(path, catalog, problems)
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
