"""Reading a policy file: YAML with line numbers, ``extends:`` followed (merged key by key, lists
replacing), every problem collected as ``file:line: field.path: message``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._policy_schema import PolicyFile, _name_problems, default_policy_path

if TYPE_CHECKING:
    from ..catalog import Catalog

__all__ = ["read_policy"]


def read_policy(path: Path, catalog: Catalog, problems: Any) -> dict[str, Any]:
    """The merged raw data of the policy file ``path`` and everything it extends; every problem
    (schema, names, ``extends`` chains) added to ``problems``."""
    return _read(path, catalog, problems, ())


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


def _line_order(problem: str) -> tuple[str, int]:
    file, _, rest = problem.partition(":")
    line = rest.partition(":")[0]
    return file, int(line) if line.isdigit() else 0
