"""Read a catalog directory (settings, quality axes, models) and cross-check it, reporting every
problem as ``file:line: field: message``.

The YAML itself is read through ``_yaml.py`` (line numbers, safe limits, friendly pydantic
errors). Problems are collected across all files and raised together in one
:class:`CatalogError` by :func:`~modelglass.catalog._catalog.load_catalog`, so a catalog author
fixes everything in one pass.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import _clock
from ..errors import CatalogError
from ._schema import (
    Controls,
    Geometry,
    Model,
    Offer,
    QualityAxis,
    Settings,
    Status,
)
from ._scores import FORMULAS, KNOWN_METRICS
from ._yaml import (  # noqa: F401  (re-exported: the routing policy file reads YAML the same way)
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    Path_,
    _display,
    _Doc,
    _friendly,
    _parse,
    _Problems,
    _validate,
)

__all__ = ["default_catalog_dir", "read_sources"]

REQUIRED_QUALITY_AXES = ("draft", "thumbnail", "hero", "print")
_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# --------------------------------------------------------------------------------------------
# Reading a catalog directory / a models file
# --------------------------------------------------------------------------------------------
@dataclass
class _Sources:
    settings: tuple[Settings, _Doc] | None = None
    axes: dict[str, tuple[QualityAxis, _Doc]] = field(default_factory=dict)
    axes_doc: _Doc | None = None
    models: dict[str, tuple[Model, _Doc]] = field(default_factory=dict)
    offer_index: dict[str, list[int]] = field(default_factory=dict)  # offer → its index in the file
    files: list[str] = field(default_factory=list)


def _read_settings(path: Path, out: _Sources, problems: _Problems) -> None:
    doc = _parse(path, problems)
    if doc is None:
        return
    out.files.append(doc.file)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        problems.add(doc, (), "settings.yaml must be a mapping")
        return
    settings = _validate(Settings, data, doc, (), problems)
    if settings is not None:
        out.settings = (settings, doc)


def _read_quality(path: Path, out: _Sources, problems: _Problems) -> None:
    doc = _parse(path, problems)
    if doc is None:
        return
    out.files.append(doc.file)
    out.axes_doc = doc
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("axes"), dict):
        problems.add(doc, (), "quality.yaml needs a top-level `axes:` mapping "
                     "(draft, thumbnail, hero, print)")
        return
    for key in data:
        if key != "axes" and not key.startswith("_"):
            problems.add(doc, (key,), "unknown top-level key; quality.yaml holds only `axes:`")
    for name, body in data["axes"].items():
        axis = _validate(QualityAxis, body, doc, ("axes", name), problems)
        if axis is not None:
            out.axes[name] = (axis, doc)


def _read_models(path: Path, out: _Sources, problems: _Problems, *, replace: bool) -> None:
    doc = _parse(path, problems)
    if doc is None:
        return
    out.files.append(doc.file)
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        problems.add(doc, (), "a models file needs a top-level `models:` mapping of id → model")
        return
    for key in data:
        if key != "models" and not key.startswith("_"):
            problems.add(doc, (key,), "unknown top-level key; a models file holds `models:` "
                         "(and `_name:` keys for YAML anchors, which are ignored)")
    for mid, body in data["models"].items():
        if mid in out.models and not replace:
            first = out.models[mid][1]
            problems.add(doc, ("models", mid), f"model id {mid!r} is already defined at "
                         f"{first.file}:{first.line(('models', mid))}; ids must be unique")
            continue
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", mid):
            problems.add(doc, ("models", mid), "model ids are lower-case kebab-case "
                         "(letters, digits, '.', '-')")
        model, index = _validate_model(body, doc, ("models", mid), problems)
        if model is not None:
            out.models[mid] = (model, doc)
            out.offer_index[mid] = index


def _validate_model(body: Any, doc: _Doc, prefix: Path_,
                    problems: _Problems) -> tuple[Model | None, list[int]]:
    """Validate a model and each offer on its own, so one bad offer does not hide the others
    from the cross-checks. Returns the model with its valid offers, and their indices in the file.
    """
    if not (isinstance(body, dict) and isinstance(body.get("offers"), list)):
        model = _validate(Model, body, doc, prefix, problems)
        return model, list(range(len(model.offers))) if model is not None else []
    model = _validate(Model, {**body, "offers": []}, doc, prefix, problems)
    offers, index = [], []
    for i, raw in enumerate(body["offers"]):
        offer = _validate(Offer, raw, doc, prefix + ("offers", i), problems)
        if offer is not None:
            offers.append(offer)
            index.append(i)
    if model is None:
        return None, []
    return model.model_copy(update={"offers": offers}), index


def _read_dir(path: Path, problems: _Problems) -> _Sources:
    out = _Sources()
    settings, quality, models_dir = path / "settings.yaml", path / "quality.yaml", path / "models"
    for required in (settings, quality):
        if not required.is_file():
            problems.append(f"{_display(required)}:1: missing; a catalog directory holds "
                            "settings.yaml, quality.yaml and models/*.yaml")
    if settings.is_file():
        _read_settings(settings, out, problems)
    if quality.is_file():
        _read_quality(quality, out, problems)
    files = sorted(models_dir.glob("*.yaml")) + sorted(models_dir.glob("*.yml"))
    if not files:
        problems.append(f"{_display(models_dir)}:1: no models/*.yaml files found")
    for f in files:
        _read_models(f, out, problems, replace=False)
    return out


# --------------------------------------------------------------------------------------------
# Cross-checks (the schema validates one object; these need the whole catalog)
# --------------------------------------------------------------------------------------------
def _source_ids(value: str | None) -> list[str]:
    return [s.strip() for s in (value or "").split(",") if s.strip()]


@dataclass
class _CrossCheck:
    """What every model's cross-check reads: the settings' names and dates, and the offers seen."""

    src: _Sources
    problems: _Problems
    providers: set[str]
    sources: set[str]
    as_of: date | None
    today: date
    seen_offers: dict[str, tuple[_Doc, Path_]] = field(default_factory=dict)

    def check_sources(self, doc: _Doc, path: Path_, value: str | None) -> None:
        for sid in _source_ids(value):
            if sid not in self.sources:
                close = difflib.get_close_matches(sid, self.sources, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else \
                    "; add it to settings.yaml `sources:`"
                self.problems.add(doc, path, f"source {sid!r} is not in settings.yaml sources{hint}")


def _cross_check(src: _Sources, problems: _Problems) -> None:
    settings, sdoc = _check_settings(src, problems)
    providers = set(settings.providers)
    sources = set(settings.sources)
    as_of = settings.as_of
    today = _clock.today()
    if as_of is not None and sdoc is not None and as_of > today:
        problems.add(sdoc, ("as_of",), f"as_of {as_of} is later than today ({today}): a date "
                     "from the future would keep every price fresh; fix the date (or the "
                     f"clock: {_clock.ENV})")
    ctx = _CrossCheck(src, problems, providers, sources, as_of, today)

    for mid, (m, doc) in src.models.items():
        base: Path_ = ("models", mid)
        _check_lifecycle(ctx, mid, m, doc, base)
        _check_evidence(ctx, m, doc, base)
        for i, offer in zip(src.offer_index[mid], m.offers):
            _check_offer(ctx, mid, m, offer, doc, base + ("offers", i))


def _check_settings(src: _Sources, problems: _Problems) -> tuple[Settings, _Doc | None]:
    """The formula version and the required quality axes; returns the settings and their file."""
    settings = src.settings[0] if src.settings else Settings()
    sdoc = src.settings[1] if src.settings else None
    if sdoc is not None and settings.formula_version not in FORMULAS:
        problems.add(sdoc, ("formula_version",), f"unknown formula version "
                     f"{settings.formula_version}; known: {', '.join(map(str, FORMULAS))}")

    if src.axes_doc is not None:
        for name in REQUIRED_QUALITY_AXES:
            if name not in src.axes and name not in (src.axes_doc.data or {}).get("axes", {}):
                problems.add(src.axes_doc, ("axes",), f"quality axis {name!r} is missing; "
                             f"all of {', '.join(REQUIRED_QUALITY_AXES)} are required")
    return settings, sdoc


def _check_lifecycle(ctx: _CrossCheck, mid: str, m: Model, doc: _Doc, base: Path_) -> None:
    """Replacement, status and dates of one model must agree; its sources must be listed."""
    problems, as_of = ctx.problems, ctx.as_of
    lc = m.lifecycle
    if lc.replacement is not None:
        if lc.replacement == mid:
            problems.add(doc, base + ("lifecycle", "replacement"),
                         "a model cannot replace itself")
        elif lc.replacement not in ctx.src.models:
            close = difflib.get_close_matches(lc.replacement, ctx.src.models, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.add(doc, base + ("lifecycle", "replacement"),
                         f"replacement {lc.replacement!r} is not a model in this catalog{hint}")
    if lc.status is Status.retired and lc.replacement is None and not m.notes:
        problems.add(doc, base + ("lifecycle", "status"),
                     "a retired model must name a `replacement` or say why not in `notes`")
    dates = [("released", lc.released), ("deprecated_on", lc.deprecated_on),
             ("shutdown_on", lc.shutdown_on)]
    known = [(n, d) for n, d in dates if d is not None]
    for (n1, d1), (n2, d2) in itertools.pairwise(known):
        if d1 > d2:
            problems.add(doc, base + ("lifecycle", n2), f"{n2} {d2} is before {n1} {d1}")
    if as_of is not None and lc.shutdown_on is not None:
        if lc.status is Status.retired and lc.shutdown_on > as_of:
            problems.add(doc, base + ("lifecycle", "shutdown_on"),
                         f"status is retired but shutdown_on {lc.shutdown_on} is after the "
                         f"catalog date {as_of}; use status: deprecated")
        if lc.status is Status.active:
            problems.add(doc, base + ("lifecycle", "shutdown_on"),
                         "an active model has a shutdown date; use status: deprecated")
    if lc.status is Status.deprecated and lc.replacement is None and not m.notes:
        problems.add(doc, base + ("lifecycle", "status"),
                     "a deprecated model must name a `replacement` or say why not in `notes`")
    ctx.check_sources(doc, base + ("lifecycle", "source"), lc.source)
    ctx.check_sources(doc, base + ("licence", "source"), m.licence.source)


def _check_evidence(ctx: _CrossCheck, m: Model, doc: _Doc, base: Path_) -> None:
    """Each evidence row cites a listed source and a metric the scores know."""
    for i, ev in enumerate(m.evidence):
        path = base + ("evidence", i)
        ctx.check_sources(doc, path + ("source",), ev.source)
        if ev.metric not in KNOWN_METRICS:
            close = difflib.get_close_matches(ev.metric, KNOWN_METRICS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                f"; known: {', '.join(sorted(KNOWN_METRICS))}"
            ctx.problems.add(doc, path + ("metric",), f"unknown metric {ev.metric!r}{hint}")


def _check_offer(ctx: _CrossCheck, mid: str, m: Model, offer: Offer, doc: _Doc,
                 path: Path_) -> None:
    """One offer: a unique key, a known provider, listed sources, sane dates and local fields."""
    problems, providers, as_of, today = ctx.problems, ctx.providers, ctx.as_of, ctx.today
    key = offer.key(mid)
    if key in ctx.seen_offers:
        first_doc, first_path = ctx.seen_offers[key]
        problems.add(doc, path, f"duplicate offer key {key!r} (first at "
                     f"{first_doc.file}:{first_doc.line(first_path)}); give one an `id:`")
    else:
        ctx.seen_offers[key] = (doc, path)
    if offer.provider not in providers:
        close = difflib.get_close_matches(offer.provider, providers, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.add(doc, path + ("provider",), f"unknown provider {offer.provider!r}; "
                     f"settings.yaml lists {', '.join(sorted(providers)) or 'none'}{hint}")
    ctx.check_sources(doc, path + ("source",), offer.source)
    if offer.latency is not None:
        ctx.check_sources(doc, path + ("latency", "source"), offer.latency.source)
    if as_of is not None and offer.as_of > as_of:
        problems.add(doc, path + ("as_of",), f"as_of {offer.as_of} is after the catalog "
                     f"date {as_of} (settings.yaml as_of)")
    elif offer.as_of > today:
        problems.add(doc, path + ("as_of",), f"as_of {offer.as_of} is later than today "
                     f"({today}); fix the date (or the clock: {_clock.ENV})")
    if offer.runs_here:
        if not offer.pipeline:
            problems.add(doc, path, "a local offer must set `pipeline` (the diffusers "
                         "class, e.g. StableDiffusionXLPipeline)")
        if not _HF_REPO.match(offer.endpoint):
            problems.add(doc, path + ("endpoint",), f"{offer.endpoint!r} is not a Hugging "
                         "Face repo id (owner/name)")
    elif offer.pipeline:
        problems.add(doc, path + ("pipeline",), "`pipeline` applies to local offers only")
    for q in (offer.price.tier_for_quality or {}):
        if ctx.src.axes and q not in ctx.src.axes:
            problems.add(doc, path + ("price", "tier_for_quality", q),
                         f"{q!r} is not a quality axis")
    _check_merged(m, offer, doc, path, problems)


def _check_merged(m: Model, offer: Any, doc: _Doc, path: Path_, problems: _Problems) -> None:
    """The offer's overrides must combine with the model's values into something sane."""
    try:
        controls: Controls = m.controls.merged(offer.controls)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            problems.add(doc, path + ("controls",) + tuple(p for p in err["loc"]),
                         "after merging with the model's controls: " + _friendly(dict(err)))
        controls = m.controls
    try:
        geometry: Geometry = m.geometry.merged(offer.geometry)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            problems.add(doc, path + ("geometry",) + tuple(p for p in err["loc"]),
                         "after merging with the model's geometry: " + _friendly(dict(err)))
        return
    del controls
    if geometry.default_size:
        fixed = (geometry.sizes or []) + list((geometry.aspect_ratios or {}).values())
        ds = geometry.default_size
        w, h = (int(p) for p in ds.lower().split("x"))
        free = geometry.multiple_of is not None or geometry.max_side is not None or \
            geometry.max_megapixels is not None
        if fixed and ds not in fixed and not free:
            problems.add(doc, path + ("geometry", "default_size"), f"default_size {ds} is not "
                         "one of the sizes this offer can produce; set the offer's default_size")
        elif geometry.multiple_of and not fixed and (w % geometry.multiple_of or
                                                     h % geometry.multiple_of):
            problems.add(doc, path + ("geometry", "default_size"), f"default_size {ds} is not a "
                         f"multiple of {geometry.multiple_of}")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def default_catalog_dir() -> Path:
    """The packaged catalog: ``modelglass/_catalog_data`` in a wheel, ``catalog/`` in a checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_catalog_data"
    if packaged.is_dir():
        return packaged
    return here.parent / "catalog"


def read_sources(path: Path, problems: _Problems) -> _Sources:
    """Read and cross-check a catalog directory, or one models YAML file layered over the
    default catalog; every problem goes to ``problems`` (overlays come after, in
    ``_overlay.py``)."""
    path = Path(path)
    if path.is_dir():
        src = _read_dir(path, problems)
    elif path.is_file():
        src = _read_dir(default_catalog_dir(), problems)
        _read_models(path, src, problems, replace=True)
    else:
        raise CatalogError(f"{_display(path)}: no such file or directory; give a catalog "
                           "directory (settings.yaml, quality.yaml, models/) or a models YAML file")
    _cross_check(src, problems)
    return src
