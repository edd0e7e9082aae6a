"""``modelglass eval``: run a shipped prompt suite on some models and score each offer's outcome
checks (pass rate, cost per accepted image), under a budget, journaled and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ._cli_common import emit_json, friendly, out
from ._cli_options import CatalogOpt, JsonOpt, _assume, _assume_opt, run_option

__all__ = ["eval_command", "register"]


def register(app: typer.Typer) -> None:
    """Add ``eval`` to the ``modelglass`` app."""
    app.command("eval")(eval_command)


_SPELLS = ("; each model spells right as often as its catalog text_rendering score says "
           "(score / 10)")
_plot_opt = typer.Option(None, "--plot", help="Write pass rate against cost, with the Pareto "
                         "front, to this .png/.svg (needs matplotlib).")


@friendly
def eval_command(models: str = run_option("models"),
                 suite: str = typer.Option("text", "--suite", help="Prompt suite to run."),
                 n: int = typer.Option(20, "--n", min=1, max=10_000, help="Prompts per model."),
                 budget: float | None = run_option("budget", scope="run"),
                 quality: str = run_option("quality"),
                 journal: Path | None = run_option("journal", scope="run",
                                                   where=" (default eval-SUITE.db here)"),
                 plot: Path | None = _plot_opt,
                 concurrency: int = run_option("concurrency", bounds=(1, 64)),
                 simulate: bool = run_option("simulate", more=_SPELLS),
                 assume_available: str | None = _assume_opt,
                 json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Run a prompt suite on --models and score each offer: pass rate of the suite's check,
    cost, cost per accepted image. Every verdict goes to the observed store, where routing
    learns from it."""
    from ._cli_batch import _Progress
    from ._cli_generate import _make_client, _maybe_simulate
    from ._compare import parse_models
    from ._eval import evaluate, load_suite

    spec = load_suite(suite)  # an unknown suite fails before anything starts
    journal = journal or Path(f"eval-{spec.name}.db")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise typer.BadParameter("--plot must end in .png or .svg", param_hint="--plot")
    progress = _Progress(n * len(parse_models(models)), budget, enabled=not json_out)
    with _maybe_simulate(simulate) as sim:
        client = _make_client(catalog, None, simulate, _assume(assume_available))
        for model, _ in parse_models(models):
            client.catalog.model(model)  # an unknown id fails before the progress bar starts
        if sim is not None:
            _script_accuracy(sim, client, parse_models(models))
        with client, progress:
            report = evaluate(models, suite=spec.name, n=n, budget=budget, client=client,
                              journal=journal, quality=quality, concurrency=concurrency,
                              on_outcome=progress.outcome)
    data = report.to_dict()
    data["simulated"] = data["simulated"] or simulate
    if plot is not None:
        data["plot"] = str(report.plot(plot))
    if json_out:
        emit_json(data)
    else:
        _print(data)
    if data["failed"] or data["counts"].get("possibly_charged"):
        raise typer.Exit(1)


def _script_accuracy(sim: Any, client: Any, models: list[tuple[str, str | None]]) -> None:
    """In the simulators, each model spells the quoted text right with its prior probability."""
    from .catalog._pass_rate import declared_prior

    for model, _ in models:
        if model in client.catalog.models:
            sim.text_accuracy(model, declared_prior(client.catalog, model, "text")[0])


def _print(data: dict[str, Any]) -> None:
    if data["simulated"]:
        out.print("[yellow]SIMULATED — no provider was called; nothing was charged.[/]")
    t = Table(title=f"eval: suite {data['suite']!r} ({data['check']} check), {data['n']} "
                    f"prompts per model, {data['quality']} quality")
    for col in ("offer", "checked", "passed", "pass rate", "unknown", "cost", "per accepted",
                "by script"):
        t.add_column(col, justify="left" if col in ("offer", "by script") else "right")
    for o in data["offers"]:
        rate = "—" if o["pass_rate"] is None else f"{o['pass_rate']:.0%}"
        per = "—" if o["cost_per_accepted_usd"] is None else f"${o['cost_per_accepted_usd']:.4f}"
        classes = ", ".join(f"{c} {v['passed']}/{v['n']}" for c, v in sorted(o["by_class"].items()))
        t.add_row(o["offer"], str(o["n"]), str(o["passed"]), rate, str(o["unknown"]),
                  f"${o['cost_usd']:.4f}", per, classes)
    out.print(t)
    budget = f" of ${data['budget_usd']:.2f}" if data["budget_usd"] is not None else ""
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in data["counts"].items())
    out.print(f"{data['jobs']} jobs: {counts}; spent ${data['spent_usd']:.4f}{budget}; "
              f"journal {data['journal']}", highlight=False, soft_wrap=True)
    if data["undone"]:
        out.print(f"[yellow]{len(data['undone'])} job(s) left undone: the next one could pass the "
                  f"budget.[/] Raise --budget and rerun with the same --journal to finish them.",
                  highlight=False)
    if data.get("plot"):
        out.print(f"plot: {data['plot']}", highlight=False)
