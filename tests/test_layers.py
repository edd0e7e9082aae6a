"""The layers hold: no import cycle in the library, and no import from a lower layer into a higher
one, counting imports inside functions (docs/architecture.md; only ``if TYPE_CHECKING:`` imports
are exempt).

Reads the source with benchmarks/layers.py's own functions (the same graph it prints), so the
benchmark and this test cannot disagree about what an edge is.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

_REPO = Path(__file__).resolve().parent.parent
_LAYERS = _REPO / "benchmarks" / "layers.py"


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


def test_no_import_from_a_lower_layer_into_a_higher_one(layers: ModuleType) -> None:
    graph, paths, _ = layers.graph_of()
    up = {(m, t): (lm, lt) for m, t, lm, lt in layers.upward(graph, paths)}
    bad = {f"{m} (layer {lm}) imports {t} (layer {lt})": None
           for (m, t), (lm, lt) in up.items() if (m, t) not in layers.ALLOWED_UPWARD}
    assert not bad, f"imports into a higher layer: {sorted(bad)}"
    stale = set(layers.ALLOWED_UPWARD) - set(up)
    assert not stale, f"allowed upward imports that no longer exist (drop them): {sorted(stale)}"


def test_every_module_has_a_layer(layers: ModuleType) -> None:
    unplaced = [p for p in sorted(layers.ROOT.rglob("*.py")) if layers.layer_of(p) is None]
    assert unplaced == [], f"modules in no layer of docs/architecture.md: {unplaced}"


def test_the_layer_table_is_the_one_in_the_docs(layers: ModuleType) -> None:
    """docs/architecture.md's table lists, per layer, exactly the files of benchmarks/layers.py's
    LAYERS (its "where" column, each in backticks, ``modelglass/``-relative)."""
    text = (_REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \|[^|]*\| ([^|]*) \|[^|]*\|$", text, re.MULTILINE)
    documented = {int(n): tuple(re.findall(r"`([^`]+)`", where)) for n, where in rows}
    assert documented == layers.LAYERS


def test_the_check_sees_an_import_into_a_higher_layer(layers: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "modelglass"
    for d in ("", "providers", "jobs"):
        (root / d).mkdir(exist_ok=True)
        (root / d / "__init__.py").write_text("")
    (root / "jobs" / "_steps.py").write_text("")
    (root / "jobs" / "_engine.py").write_text("from ..providers import fal\n")
    (root / "providers" / "fal.py").write_text(
        "from ..jobs._steps import Wait\n\ndef f():\n    from ..jobs import _engine\n")
    old, table = layers.ROOT, layers.LAYERS
    layers.ROOT = root
    try:
        graph, paths, _ = layers.graph_of()
        assert layers.upward(graph, paths) == [
            ("modelglass.providers.fal", "modelglass.jobs._engine", 4, 7)]
        # importing jobs._steps runs the package jobs/__init__.py: in a higher layer, it counts
        layers.LAYERS = {1: ("jobs/_steps.py",), 4: ("providers/",), 7: ("jobs/",),
                         10: ("__init__.py",)}
        assert layers.upward(graph, paths) == [
            ("modelglass.providers.fal", "modelglass.jobs", 4, 7),
            ("modelglass.providers.fal", "modelglass.jobs._engine", 4, 7)]
    finally:
        layers.ROOT, layers.LAYERS = old, table


def test_catalog_tools_register_the_catalog_methods() -> None:
    import modelglass as mg
    from modelglass.catalog import _catalog
    from modelglass.catalog_tools import plot_axis, query, write_html

    assert _catalog._TOOLS == {"query": query, "plot": plot_axis, "write_html": write_html}
    rows = mg.Catalog.default().query(axis="hero")
    assert rows and all(r.offer for r in rows)


def test_providers_say_how_they_are_billed_and_where_their_schemas_are() -> None:
    """The catalog records bills and catalog sync reads schemas without naming a provider: each
    provider class says it (registered from above, as ``Catalog.query`` is)."""
    import modelglass  # noqa: F401  (registers the bill lines)
    from modelglass.catalog import _bills
    from modelglass.catalog_tools import _sync_schemas
    from modelglass.providers import PROVIDER_CLASSES, provider_class

    assert set(_bills._BILL_LINES) == set(PROVIDER_CLASSES)
    for source in (_bills, _sync_schemas):
        text = Path(str(source.__file__)).read_text(encoding="utf-8")
        code = text.split('"""', 2)[2]  # after the module docstring
        named = re.findall(r"""["'](openai|fal|replicate|local)["']""", code)
        assert named == [], f"{source.__name__} branches on provider names: {named}"
    env = {"FAL_KEY_ID": "id", "FAL_KEY_SECRET": "secret", "MODELGLASS_FAL_API_URL": "http://x"}
    assert provider_class("fal").schema_api(env) == ("http://x", {"Authorization": "Key id:secret"})
    assert provider_class("replicate").schema_api({}) is None
    assert provider_class("openai").schema_api({"OPENAI_API_KEY": "k"}) is None
