"""The options several commands share are declared once (``modelglass/_cli_options.py``) and read
the same in every command that takes them."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import typer.main

import modelglass
from modelglass._cli_options import REQUEST_OPTIONS, ROUTING_OPTIONS, RUN_OPTIONS
from modelglass.cli import app

PACKAGE = Path(modelglass.__file__).parent

#: Flags a command declares with another meaning: in `catalog` a filter, a price point or a file
#: to write; `compare`'s one seed and size for every model and its sheet; `catalog sync`'s
#: report-only run, deadline for the whole sync and loopback trial; `policy replay`'s required
#: policy file and providers assumed by default.
OTHER_MEANING = {
    "cli.py": {"--provider", "--commercial", "--size", "--out", "-o"},
    "_cli_compare.py": {"--seed", "--size", "--out", "-o"},
    "_cli_catalog_upkeep.py": {"--provider", "--dry-run", "--timeout", "--simulate"},
    "_cli_policy.py": {"--policy", "--assume-available"},
}


def _shared_flags() -> set[str]:
    flags = {f for _, _, opt, _ in REQUEST_OPTIONS + ROUTING_OPTIONS for f in opt.param_decls}
    return flags | {f for _, names, _, _ in RUN_OPTIONS.values() for f in names} | {
        "--catalog", "--json"}


def _declared_flags(path: Path) -> set[str]:
    """Every flag of a ``typer.Option(...)`` written in ``path``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "Option"):
            found |= {str(a.value) for a in node.args
                      if isinstance(a, ast.Constant) and str(a.value).startswith("-")}
    return found


def test_no_module_declares_a_shared_option_again() -> None:
    shared = _shared_flags()
    assert {"--negative", "--budget", "--journal", "--simulate", "--max-latency"} <= shared
    again = {where: sorted((_declared_flags(p) & shared) - OTHER_MEANING.get(where, set()))
             for p in PACKAGE.rglob("*.py") if p.name != "_cli_options.py"
             for where in [str(p.relative_to(PACKAGE))]}
    assert {p: flags for p, flags in again.items() if flags} == {}


def _options(command: str) -> dict[str, Any]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {p.name: p for p in cmd.params if p.name}


def test_route_plan_and_generate_take_the_same_request_and_routing_options() -> None:
    names = [name for name, *_ in REQUEST_OPTIONS + ROUTING_OPTIONS]
    assert len(REQUEST_OPTIONS) == 16
    route = _options("route")
    for command in ("plan", "generate"):
        options = _options(command)
        assert [n for n in options if n in names] == names, command
        for name in names:
            assert options[name].opts == route[name].opts, (command, name)
            assert options[name].help == route[name].help, (command, name)


def test_a_run_option_reads_the_same_in_every_command_but_its_own_words() -> None:
    batch, ev, compare, generate = (_options(c) for c in ("batch", "eval", "compare", "generate"))
    assert batch["budget"].help == ("USD limit for the whole batch (earlier runs of the journal "
                                    "included).")
    assert ev["budget"].help == batch["budget"].help.replace("batch", "run")
    assert ev["quality"].help == compare["quality"].help
    assert ev["models"].help == compare["models"].help
    # each command keeps its own default and bounds
    assert (batch["concurrency"].default, ev["concurrency"].default) == (32, 8)
    assert ev["concurrency"].opts == compare["concurrency"].opts == ["--concurrency", "-c"]
    assert (compare["concurrency"].min, compare["concurrency"].max) == (1, 64)
    assert (batch["concurrency"].min, batch["concurrency"].max) == (None, None)
    assert (generate["timeout"].min, generate["timeout"].max) == (0.001, None)
    assert _help(generate["simulate"]).startswith("Serve the call from")
    assert _help(batch["on_fail"]).endswith("implies --check.")
    assert not _help(generate["on_fail"]).endswith("implies --check.")


def _help(option: Any) -> str:
    return str(getattr(option, "help", ""))
