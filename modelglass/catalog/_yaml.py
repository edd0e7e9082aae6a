"""Catalog YAML with line numbers: parse safely, validate with pydantic, and report every problem
as ``file:line: field.path: message``.

YAML is composed into a node tree (not constructed straight to Python) so that each mapping key and
list item keeps its line. Pydantic validation errors carry a ``loc`` path; we map that path back to
the line where it was written. The loader (``_load.py``), the overlays (``_overlay.py``) and the
routing policy file all read YAML through here.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from . import _schema

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
