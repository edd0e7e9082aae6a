"""Load catalog YAML into a :class:`Catalog`, reporting every problem as ``file:line: field: message``.

YAML is composed into a node tree (not constructed straight to Python) so that each mapping key and
list item keeps its line. Pydantic validation errors carry a ``loc`` path; we map that path back to
the line where it was written. Problems are collected across all files and raised together in one
:class:`CatalogError`, so a catalog author fixes everything in one pass.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

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

if TYPE_CHECKING:
    from . import Catalog

__all__ = ["load_catalog"]

REQUIRED_QUALITY_AXES = ("draft", "thumbnail", "hero", "print")
_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Path_ = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------
# YAML with line numbers
# --------------------------------------------------------------------------------------------
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader whose node tree we walk ourselves (see :func:`_to_data`); libyaml's when
    PyYAML has it (ten times faster at reading, which bounds what a hostile file can cost)."""


@dataclass
class _Doc:
    """One parsed YAML file: its data, and the line of every key path in it."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Iterable[str | int]) -> int:
        """The line of the longest prefix of ``path`` that was written in the file."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)


def _display(path: Path) -> str:
    """A path as people want to read it: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _fmt_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _Problems(list[str]):
    def add(self, doc: _Doc | str, path: Iterable[str | int], message: str,
            line: int | None = None) -> None:
        path = tuple(path)
        if isinstance(doc, _Doc):
            file, ln = doc.file, line if line is not None else doc.line(path)
        else:
            file, ln = doc, line if line is not None else 1
        self.append(f"{file}:{ln}: {_fmt_path(path)}: {message}")


#: A YAML file may expand (every alias counted where it is used) to at most this many nodes, and
#: nest at most MAX_DEPTH levels: a few hundred bytes of nested aliases would otherwise expand to
#: billions of nodes (the "billion laughs"), and deep nesting would exhaust the stack.
MAX_NODES = 200_000
MAX_DEPTH = 64
#: A catalog or overlay file larger than this is refused unread: the largest shipped file is
#: ~25 KB, and PyYAML (pure Python) reads a dense hostile file at ~100 KB a second.
MAX_BYTES = 256 << 10
_FLOW = re.compile(r"[\[\]{}\n]")


def _flow_depth_exceeded(text: str) -> int | None:
    """The line where ``[``/``{`` nesting passes MAX_DEPTH, else None.

    PyYAML's scanner slows quadratically with flow nesting (5,000 brackets: seconds), so deep
    flow nesting is refused before it is scanned. Quotes are not tracked: a legitimate file
    never holds 64 unclosed brackets, even inside strings.
    """
    depth, line = 0, 1
    for m in _FLOW.finditer(text):
        ch = m.group()
        if ch == "\n":
            line += 1
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif depth:
            depth -= 1
    return None


class _UnsafeYAML(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _check_graph(root: yaml.Node) -> None:
    """Refuse self-referencing aliases, deep nesting and alias bombs before building any data.

    Linear in the composed node graph: each node's expanded size is computed once.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        nid = id(node)
        if nid in on_path:
            raise _UnsafeYAML(node.start_mark.line + 1, "an alias refers to the node that "
                              "contains it (a self-referencing alias); YAML catalogs must be trees")
        if nid in sizes:
            return sizes[nid]
        if depth > MAX_DEPTH:
            raise _UnsafeYAML(node.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        total = 1
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            on_path.add(nid)
            children = ([n for pair in node.value for n in pair]
                        if isinstance(node, yaml.MappingNode) else node.value)
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise _UnsafeYAML(node.start_mark.line + 1, f"expands to more than "
                                      f"{MAX_NODES:,} nodes (aliases count each time they are "
                                      "used: an alias bomb?)")
            on_path.discard(nid)
        sizes[nid] = total
        return total

    size(root, 0)


def _decode(raw: bytes, file: str, problems: _Problems) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        problems.append(f"{file}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                        f"{col}); save the file as UTF-8")
        return None


def _parse(path: Path, problems: _Problems) -> _Doc | None:
    file = _display(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(f"{file}:1: cannot read file: {exc.strerror or exc}")
        return None
    if len(raw) > MAX_BYTES:
        problems.append(f"{file}:1: unsafe YAML: the file is {len(raw):,} bytes; catalog files "
                        f"are refused above {MAX_BYTES:,}")
        return None
    text = _decode(raw, file, problems)
    if text is None:
        return None
    deep = _flow_depth_exceeded(text)
    if deep is not None:
        problems.append(f"{file}:{deep}: unsafe YAML: brackets nested deeper than {MAX_DEPTH} "
                        "levels")
        return None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        doc = _Doc(file, None, {(): 1})
        if node is not None:
            _check_graph(node)
            doc.data = _to_data(loader, node, (), doc, problems, {})
        return doc
    except _UnsafeYAML as exc:
        problems.append(f"{file}:{exc.line}: unsafe YAML: {exc}")
        return None
    except RecursionError:
        problems.append(f"{file}:{getattr(loader, 'line', 0) + 1}: unsafe YAML: nested too "
                        "deeply to read "
                        f"(more than {MAX_DEPTH} levels are refused)")
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(s for s in (exc.context, exc.problem) if s)
        problems.append(f"{file}:{line}: YAML syntax error: {what}")
        return None
    except yaml.YAMLError as exc:
        problems.append(f"{file}:{getattr(loader, 'line', 0) + 1}: YAML error: {exc}")
        return None
    finally:
        loader.dispose()


_SEXAGESIMAL_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _to_data(loader: _Loader, node: yaml.Node, path: Path_, doc: _Doc,
             problems: _Problems, seen: dict[int, Any]) -> Any:
    # An alias is the same node again: build its data once (lines stay those of its first use;
    # later uses point at the alias itself).
    if id(node) in seen:
        return seen[id(node)]
    data = _node_data(loader, node, path, doc, problems, seen)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        seen[id(node)] = data
    return data


def _node_data(loader: _Loader, node: yaml.Node, path: Path_, doc: _Doc,
               problems: _Problems, seen: dict[int, Any]) -> Any:
    if isinstance(node, yaml.MappingNode):
        # Duplicate keys are checked among the keys written here; keys pulled in by a
        # `<<: *anchor` merge come first and may be overridden, as YAML specifies.
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(_scalar(loader, key_node))
            line = key_node.start_mark.line + 1
            if key in first:
                problems.add(doc, path + (key,), f"duplicate key {key!r} (first at line "
                             f"{first[key]}); remove one", line=line)
            else:
                first[key] = line
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.add(doc, path, "mapping keys must be plain scalars",
                             line=key_node.start_mark.line + 1)
                continue
            key = str(_scalar(loader, key_node))
            doc.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _to_data(loader, value_node, path + (key,), doc, problems, seen)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_to_data(loader, item, path + (i,), doc, problems, seen))
        return items
    return _scalar(loader, node)


def _scalar(loader: _Loader, node: yaml.Node) -> Any:
    # YAML 1.1 reads `16:9` as the base-60 integer 969; an aspect ratio is text.
    if node.tag in _SEXAGESIMAL_TAGS and ":" in str(node.value):
        return str(node.value)
    return loader.construct_object(node, deep=True)


# --------------------------------------------------------------------------------------------
# Pydantic errors → friendly, located problems
# --------------------------------------------------------------------------------------------
def _known_field_names() -> set[str]:
    from . import _schema

    names: set[str] = set()
    for obj in vars(_schema).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            names |= set(obj.model_fields)
    return names


def _friendly(err: dict[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    bounds = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt"),
              "less_than_equal": ("≤", "le"), "less_than": ("<", "lt")}
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {ctx[key]:g}"
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        bad = str(err["loc"][-1]) if err["loc"] else ""
        close = difflib.get_close_matches(bad, _known_field_names(), n=1)
        return "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        return f"{err.get('input')!r} is not allowed; expected one of {expected}"
    if kind in ("value_error", "assertion_error"):
        inner = ctx.get("error")
        return str(inner) if inner is not None else err["msg"].removeprefix("Value error, ")
    if kind.startswith("date"):
        return f"{err.get('input')!r} is not a date; write it as YYYY-MM-DD"
    if kind == "finite_number":
        return f"{err.get('input')!r} is not allowed; write a finite number (no .nan or .inf)"
    if kind.startswith(("float", "int")):
        what = "a whole number" if kind.startswith("int") else "a number"
        return f"{err.get('input')!r} is not {what}"
    if kind.startswith("bool"):
        return f"{err.get('input')!r} is not true or false"
    if kind.startswith("string"):
        return f"{err.get('input')!r} must be text"
    if kind.startswith("dict") or kind == "model_type" or kind == "model_attributes_type":
        return "must be a mapping (key: value)"
    if kind.startswith("list"):
        return "must be a list"
    return str(err["msg"])


def _locate(err: dict[str, Any], data: Any) -> Path_:
    """The error's path into the YAML data, refined to the offending item when we can tell."""
    loc: list[str | int] = [p for p in err["loc"] if p != "[key]"]
    if err["type"] != "value_error":
        return tuple(loc)
    # A list/dict validator names the bad element in its message: point at that element.
    target = data
    for part in loc:
        try:
            target = target[part]
        except (KeyError, IndexError, TypeError):
            return tuple(loc)
    msg = str((err.get("ctx") or {}).get("error", err["msg"]))
    if isinstance(target, list):
        for i, item in enumerate(target):
            if repr(item) in msg or (isinstance(item, str) and f"'{item}'" in msg):
                return (*loc, i)
    elif isinstance(target, dict):
        for k, v in target.items():
            if f"'{k}'" in msg or (isinstance(v, str) and f"'{v}'" in msg):
                return (*loc, k)
    return tuple(loc)


def _validate(cls: type[BaseModel], data: Any, doc: _Doc, prefix: Path_,
              problems: _Problems) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = prefix + _locate(dict(err), data)
            problems.add(doc, path, _friendly(dict(err)))
        return None


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
    from ._scores import FORMULAS

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
    from ._scores import KNOWN_METRICS

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
    if offer.provider == "local":
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
def load_catalog(path: Path, overlays: Iterable[str | Path] | None = None) -> Catalog:
    """Load a catalog directory, or one models YAML file layered over the default catalog, then
    each overlay (see ``_overlay.py``) in order.

    Every problem in every file is collected first; then one :class:`CatalogError` lists them
    all as ``file:line: field.path: message``.

    >>> from modelglass.catalog import default_catalog_dir
    >>> load_catalog(default_catalog_dir())  # doctest: +ELLIPSIS
    Catalog(... models, ... offers)
    """
    from . import Catalog, default_catalog_dir

    path = Path(path)
    problems = _Problems()
    if path.is_dir():
        src = _read_dir(path, problems)
    elif path.is_file():
        src = _read_dir(default_catalog_dir(), problems)
        _read_models(path, src, problems, replace=True)
    else:
        raise CatalogError(f"{_display(path)}: no such file or directory; give a catalog "
                           "directory (settings.yaml, quality.yaml, models/) or a models YAML file")

    _cross_check(src, problems)
    from ._overlay import apply_overlays

    if isinstance(overlays, (str, os.PathLike)):
        overlays = [overlays]  # one file given bare, not a list of one-character paths
    settings_ = src.settings[0] if src.settings else Settings()
    report = apply_overlays(src, overlays or (), problems, settings_.providers)
    if problems:
        n = len(problems)
        raise CatalogError(f"catalog has {n} problem{'s' if n != 1 else ''}", problems=problems)

    assert src.settings is not None
    settings = src.settings[0]
    axes = {name: axis for name, (axis, _) in src.axes.items()}
    models = {mid: m for mid, (m, _) in src.models.items()}
    try:
        return Catalog(settings, axes, models, sources=src.files, overlay=report)
    except ValidationError as exc:  # pragma: no cover - the cross-checks merge offers first
        raise CatalogError(f"catalog failed to assemble: {exc}") from exc
