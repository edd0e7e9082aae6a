"""The layers hold: no import cycle, and no import from a lower layer into a higher one, counting
imports inside functions (issue 19's layering goal; the layers are docs/architecture.md's table).

    python benchmarks/layers.py            # every import, deferred ones included
    python benchmarks/layers.py --top      # only module-level imports (what Python itself sees)

Reads ``modelglass/`` with :mod:`ast`; runs nothing. An edge goes from a module to each module it
imports (``from .catalog import X`` → ``modelglass.catalog``, the package; ``from .catalog._schema
import X`` → that module; ``from . import plan`` → ``modelglass.plan``); imports under
``if TYPE_CHECKING:`` do not count. Prints the number of function-local imports, each strongly
connected group of modules (an import cycle) with one cycle through it, then each import from a
lower layer into a higher one (:data:`LAYERS`), and exits 1 when there is any cycle or any upward
import not in :data:`ALLOWED_UPWARD` (tests/test_layers.py runs the same checks).
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "modelglass"
PACKAGE = "modelglass"

#: Each layer's files, as paths under ``modelglass/`` (``dir/`` for a folder, ``*`` a wildcard):
#: docs/architecture.md's table, bottom to top (tests/test_layers.py checks the two agree). A
#: module is in the layer of the longest pattern it matches (``jobs/_steps.py`` before ``jobs/``).
LAYERS: dict[int, tuple[str, ...]] = {
    1: ("errors.py", "_clock.py", "_version.py", "_paths.py", "_jsonl.py", "_fonts.py",
        "_encoders.py", "_simulated.py", "_c2pa.py", "_inflate.py", "_png_check.py", "_env.py", "checks/",
        "jobs/__init__.py", "jobs/_events.py", "jobs/_steps.py", "jobs/_drive.py"),
    2: ("catalog/",),
    3: ("result.py", "_result_json.py", "_provenance.py", "_metadata.py", "_stamp.py",
        "budget.py"),
    4: ("providers/",),
    5: ("request.py", "_options.py", "plan.py", "_plan_geometry.py", "_wire_fit.py",
        "_download.py", "_destination.py", "_verify_image.py", "_check_process.py"),
    6: ("routing/",),
    7: ("jobs/",),
    8: ("client.py",),
    9: ("catalog_tools/",),
    10: ("__init__.py",),
    11: ("cli.py", "_cli_*.py", "_eval*.py", "_compare.py", "_suites/", "testing/"),
}

#: Imports from a lower layer into a higher one that are still allowed, each with its reason.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    # (empty: a Ray worker gets the driver's client class in its job spec, pickled by
    # reference, instead of importing the package)
}


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(path: Path) -> int | None:
    """The layer of the module in ``path`` (under :data:`ROOT`), or None when no pattern of
    :data:`LAYERS` matches it."""
    rel = path.relative_to(ROOT).as_posix()
    best: tuple[int, int] | None = None
    for number, patterns in LAYERS.items():
        for pattern in patterns:
            hit = rel.startswith(pattern) if pattern.endswith("/") else fnmatch(rel, pattern)
            if hit and (best is None or len(pattern) > best[0]):
                best = (len(pattern), number)
    return best[1] if best else None


def graph_of(top_only: bool = False) -> tuple[dict[str, set[str]], dict[str, Path], int]:
    """Every module's imports of modelglass modules (``top_only``: module-level ones only), each
    module's file, and how many imports sit in functions."""
    files = sorted(ROOT.rglob("*.py"))
    paths = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in paths}
    deferred_total = 0
    for p in files:
        edges, deferred = imports(p, set(paths))
        deferred_total += deferred
        graph[module_name(p)] |= {t for t, fn in edges if not (top_only and fn)}
    return graph, paths, deferred_total


def upward(graph: dict[str, set[str]], paths: dict[str, Path]) -> list[tuple[str, str, int, int]]:
    """Each import from a lower layer into a higher one: (module, imported, their layers). An
    import of ``a.b.c`` also runs the package ``a.b`` (its ``__init__``), so that counts too
    (not the root package, which every import runs first, nor the importer's own packages). A
    module of no layer counts as layer 0, so it is reported too."""
    out = set()
    for m in sorted(graph):
        lm = layer_of(paths[m]) or 0
        for t in sorted(graph[m]):
            parts = t.split(".")
            run = [".".join(parts[:i]) for i in range(2, len(parts))]
            for u in [t, *(p for p in run if p in paths and not m.startswith(p + "."))]:
                lt = layer_of(paths[u]) or 0
                if lt > lm or not lm:
                    out.add((m, u, lm, lt))
    return sorted(out)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(path: Path, modules: set[str]) -> tuple[list[tuple[str, bool]], int]:
    """(imported module, deferred?) pairs of one file, and how many import statements of
    modelglass modules sit in functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: list[tuple[str, bool]] = []
    deferred = 0

    def resolve(level: int, mod: str | None) -> str:
        if level == 0:
            return mod or ""
        base = package.split(".")
        base = base[:len(base) - (level - 1)]
        return ".".join([*base, mod] if mod else base)

    def visit(node: ast.AST, in_function: bool) -> None:
        nonlocal deferred
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(stmt, in_function)
                continue
            fn = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                           | ast.Lambda)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = resolve(child.level, child.module)
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in modules else base)
            ours = False
            for t in targets:
                while t and t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name:
                    out.append((t, fn))
                    ours = True
            deferred += fn and ours
            visit(child, fn)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return out, deferred


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; groups of two or more modules, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return sorted(groups, key=lambda g: (-len(g), g))


def shortest_cycle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One shortest cycle through the group's first module, staying inside the group."""
    inside, start = set(group), group[0]
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & inside):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return [start]


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE + ".")


def main(argv: list[str]) -> int:
    top_only = "--top" in argv
    graph, paths, deferred_total = graph_of(top_only)
    groups = strongly_connected(graph)
    print(f"{len(graph)} modules; {deferred_total} imports of modelglass modules inside "
          f"functions; counting {'module-level imports only' if top_only else 'every import'}:")
    if not groups:
        print("no import cycle")
    else:
        print(f"{len(groups)} import cycle group(s), {sum(map(len, groups))} modules in all")
    for g in groups:
        print(f"- {len(g)} modules: {', '.join(map(_short, g))}")
        print(f"  e.g. {' → '.join(map(_short, shortest_cycle(graph, g)))}")
    up = upward(graph, paths)
    bad = [u for u in up if (u[0], u[1]) not in ALLOWED_UPWARD]
    print(f"{len(up)} import(s) from a lower layer into a higher one, {len(bad)} not allowed")
    for m, t, lm, lt in up:
        why = ALLOWED_UPWARD.get((m, t))
        print(f"- {_short(m)} ({lm or 'no layer'}) → {_short(t) or PACKAGE} ({lt or 'no layer'})"
              + (f"  allowed: {why}" if why else ""))
    return 1 if groups or bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
