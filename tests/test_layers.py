"""The layers hold: no import cycle in the library, counting imports inside functions, and the
catalog's data model imports nothing above it (docs/architecture.md).

Reads the source with benchmarks/layers.py's own functions (the same graph it prints), so the
benchmark and this test cannot disagree about what an edge is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_LAYERS = Path(__file__).resolve().parent.parent / "benchmarks" / "layers.py"


@pytest.fixture(scope="module")
def layers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_mg_layers", _LAYERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _edges(layers: ModuleType) -> dict[str, set[str]]:
    files = sorted(layers.ROOT.rglob("*.py"))
    modules = {layers.module_name(p) for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for p in files:
        edges, _ = layers.imports(p, modules)
        graph[layers.module_name(p)] |= {t for t, _deferred in edges}
    return graph


def test_no_import_cycle_counting_deferred_imports(layers: ModuleType) -> None:
    groups = layers.strongly_connected(_edges(layers))
    cycles = [" → ".join(layers.shortest_cycle(_edges(layers), g)) for g in groups]
    assert groups == [], f"import cycles: {cycles}"


def test_the_check_sees_a_cycle_when_there_is_one(layers: ModuleType) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert layers.strongly_connected(graph) == [["a", "b", "c"]]
    assert layers.shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_deferred_imports_count_and_type_checking_ones_do_not(layers: ModuleType,
                                                              tmp_path: Path) -> None:
    root = tmp_path / "modelglass"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                               "    from . import b\n\ndef f():\n    from . import c\n")
    for name in ("b", "c"):
        (root / f"{name}.py").write_text("")
    modules = {"modelglass", "modelglass.a", "modelglass.b", "modelglass.c"}
    old = layers.ROOT
    layers.ROOT = root
    try:
        edges, deferred = layers.imports(root / "a.py", modules)
    finally:
        layers.ROOT = old
    assert edges == [("modelglass.c", True)] and deferred == 1


#: What the catalog's data model (modelglass/catalog/) may import outside itself.
_CATALOG_MAY_IMPORT = {"modelglass.errors", "modelglass._clock", "modelglass.checks._text"}
#: Known upward edges, to be removed (each says why it is still here).
_KNOWN = {
    # fal's preset image sizes live in providers/_fields.py (the provider contract's file); the
    # schema check reads them. Move the table into the catalog and this entry goes.
    ("modelglass.catalog._wire_schema", "modelglass.providers._fields"),
}


def test_the_catalog_imports_nothing_above_it(layers: ModuleType) -> None:
    graph = _edges(layers)
    upward = {(m, t) for m, targets in graph.items()
              if m == "modelglass.catalog" or m.startswith("modelglass.catalog.")
              for t in targets
              if not (t == "modelglass.catalog" or t.startswith("modelglass.catalog."))
              and t not in _CATALOG_MAY_IMPORT}
    assert upward <= _KNOWN, f"the catalog imports above itself: {sorted(upward - _KNOWN)}"


def test_catalog_tools_register_the_catalog_methods() -> None:
    import modelglass as mg
    from modelglass.catalog import _catalog
    from modelglass.catalog_tools import plot_axis, query, write_html

    assert _catalog._TOOLS == {"query": query, "plot": plot_axis, "write_html": write_html}
    rows = mg.Catalog.default().query(axis="hero")
    assert rows and all(r.offer for r in rows)
