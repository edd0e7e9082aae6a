"""Import cycles in the library, counting imports inside functions (issue 19's layering goal).

    python benchmarks/layers.py            # cycles through every import, deferred ones included
    python benchmarks/layers.py --top      # only module-level imports (what Python itself sees)

Reads ``modelglass/`` with :mod:`ast`; runs nothing. An edge goes from a module to each module it
imports (``from .catalog import X`` → ``modelglass.catalog``, the package; ``from .catalog._schema
import X`` → that module; ``from . import plan`` → ``modelglass.plan``); imports under
``if TYPE_CHECKING:`` do not count. Prints the number of function-local imports, each strongly
connected group of modules (an import cycle) with one cycle through it, and exits 1 when there
is any cycle (so it can gate CI once the layers hold).
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "modelglass"
PACKAGE = "modelglass"


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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
    files = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    deferred_total = 0
    for p in files:
        edges, deferred = imports(p, modules)
        deferred_total += deferred
        graph[module_name(p)] |= {t for t, fn in edges if not (top_only and fn)}
    groups = strongly_connected(graph)
    print(f"{len(modules)} modules; {deferred_total} imports of modelglass modules inside "
          f"functions; counting {'module-level imports only' if top_only else 'every import'}:")
    if not groups:
        print("no import cycle")
        return 0
    print(f"{len(groups)} import cycle group(s), {sum(map(len, groups))} modules in all")
    for g in groups:
        print(f"- {len(g)} modules: {', '.join(map(_short, g))}")
        print(f"  e.g. {' → '.join(map(_short, shortest_cycle(graph, g)))}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
