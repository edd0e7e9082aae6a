"""``modelglass compare``: one prompt and seed across models, as a contact sheet PNG and JSON."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Self

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._cli_common import emit_json, err, friendly, out
from ._cli_options import CatalogOpt, JsonOpt, _assume, _assume_opt, run_option

__all__ = ["compare", "register"]


def register(app: typer.Typer) -> None:
    """Add ``compare`` to the ``modelglass`` app."""
    app.command("compare")(compare)


_sheet_opt = typer.Option(Path("sheet.png"), "--out", "-o", help="Contact sheet PNG to write; the "
                          "JSON goes next to it (sheet.json). Never overwritten: sheet-2.png …")


@friendly
def compare(prompt: str, models: str = run_option("models"), seed: int | None = typer.Option(
                None, "--seed", help="One seed for every model (where the offer takes one)."),
            quality: str = run_option("quality"),
            size: str | None = typer.Option(None, "--size", help="WIDTHxHEIGHT for every model."),
            budget: float | None = run_option("budget", scope="comparison", more="; models "
                                              "that no longer fit are skipped"),
            concurrency: int = run_option("concurrency", bounds=(1, 64)),
            out_path: Path = _sheet_opt,
            simulate: bool = run_option("simulate", what="every call"),
            assume_available: str | None = _assume_opt,
            json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Generate PROMPT once on each of --models, concurrently, side by side (a contact sheet
    PNG and its JSON): model, provider, cost, latency and every control not honored. Exit 1
    when no model made an image because a provider failed; a model listed twice runs once."""
    from ._cli_generate import _free, _make_client, _maybe_simulate
    from ._compare import compare_models, parse_models
    from .catalog import LOCAL

    if out_path.suffix.lower() != ".png":
        raise typer.BadParameter("--out must be a .png file", param_hint="--out")
    from ._paths import check_output_file

    check_output_file(out_path, field="out", suffix=".png")  # before anything is paid for
    sheet_path = _free(out_path)
    pinned = {p for _, p in parse_models(models) if p}
    fields = {"size": size} if size else {}
    with _maybe_simulate(simulate):
        client = _make_client(catalog, LOCAL if pinned == {LOCAL} else None, simulate,
                              _assume(assume_available))
        with client, _TileProgress(err, len(parse_models(models))) as progress:
            sheet = compare_models(client, prompt, models, seed=seed, quality=quality,
                                   budget=budget, concurrency=concurrency, on_tile=progress,
                                   **fields)
    sheet.render(sheet_path)
    json_path = sheet_path.with_suffix(".json")
    data = {**sheet.to_dict(), "sheet": str(sheet_path), "json": str(json_path)}
    import json

    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    if json_out:
        emit_json(data)
    else:
        for notice in sheet.notices:
            err.print(Text(f"warning: {notice}", style="yellow"), highlight=False)
        _print_sheet(data)
    if not any(t.ok for t in sheet.tiles):
        raise typer.Exit(_none_made(sheet.tiles))


def _none_made(tiles: list[Any]) -> int:
    """The exit status when no model made an image: 1 when a provider failed or refused any of
    them, 2 when every one was refused for something the user can change (budget, eligibility)."""
    from . import errors
    from ._cli_common import EXIT_PROVIDER, EXIT_USER

    def provider_failed(tile: Any) -> bool:
        cls = getattr(errors, tile.error_type or "", None)
        return not (isinstance(cls, type) and issubclass(cls, errors.ModelglassError)) or \
            issubclass(cls, errors.ProviderError | errors.ContentRejected)

    if any(provider_failed(t) for t in tiles):
        err.print(Text("error: no model made an image (see the table)", style="bold red"),
                  highlight=False)
        return EXIT_PROVIDER
    err.print(Text("error: no model made an image: every one was refused before sending "
                   "(see the table)", style="bold red"), highlight=False)
    return EXIT_USER


class _TileProgress:
    """A spinner on stderr (terminal only): how many models are done, and the last one."""

    def __init__(self, console: Console, total: int) -> None:
        self.console, self.total, self.done, self.last = console, total, 0, ""
        self._status: Any = None
        self._lock = threading.Lock()

    def _text(self) -> str:
        return f"compare: {self.done} of {self.total} models done{self.last}"

    def __call__(self, tile: Any) -> None:
        with self._lock:
            self.done += 1
            self.last = f"; {tile.model}: {'ok' if tile.ok else tile.error_type}"
            if self._status is not None:
                self._status.update(Text(self._text()))

    def __enter__(self) -> Self:
        if self.console.is_terminal:
            self._status = self.console.status(Text(self._text()))
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


def _print_sheet(data: dict) -> None:
    if data["simulated"]:
        out.print(Text("SIMULATED — no provider was called; nothing was charged.", style="yellow"))
    t = Table(title=f"compare: {len(data['tiles'])} models, seed {data['seed']}")
    for col in ("model", "provider", "cost", "seconds", "not honored / error"):
        t.add_column(col)
    for tile in data["tiles"]:
        cost = "—" if tile["cost_usd"] is None else f"${tile['cost_usd']:.3g}"
        secs = "—" if tile["latency_s"] is None else f"{tile['latency_s']:.2f}"
        notes = tile["error"] or "; ".join(f"{f['control']} {f['kind']}" for f in tile["fates"]) \
            or "every control honored"
        t.add_row(*(Text(str(c)) for c in (tile["model"], tile["provider"] or "—", cost, secs,
                                            notes)))
    out.print(t)
    out.print(Text(f"total ${data['cost_usd']:.3g} in {data['wall_s']:.1f} s; sheet {data['sheet']}, "
                   f"JSON {data['json']}"), highlight=False, soft_wrap=True)
