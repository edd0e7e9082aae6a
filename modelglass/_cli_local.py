"""``modelglass local``: the diffusers models on this machine and the memory each needs.

Reads files only (``model_index.json`` and safetensors headers): no torch import, no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ._cli_common import _catalog, emit_json, friendly, out
from ._cli_options import CatalogOpt, JsonOpt

__all__ = ["local_app", "local_models", "register"]

local_app = typer.Typer(no_args_is_help=True,
                        help="Local diffusers models: what is on this machine.")


def register(app: typer.Typer) -> None:
    """Add ``local`` (a group of commands) to the ``modelglass`` app."""
    app.add_typer(local_app, name="local")


def _folders(path: Path) -> list[Path]:
    """``path`` if it is a diffusers folder, else the diffusers folders one level below it."""
    if (path / "model_index.json").is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if (p / "model_index.json").is_file())
    return []


def local_models(paths: list[Path], cache_dir: Path | None, catalog: Any,
                 include_cache: bool = True) -> list[dict[str, Any]]:
    """One row per diffusers pipeline found: where, what, how big, which catalog offers use it."""
    from .providers.local._recipe import Recipe
    from .providers.local._weights import cached_pipelines, inspect_folder

    offers_by_repo: dict[str, list[str]] = {}
    for view in catalog.offers():
        if view.runs_here:
            repo = Recipe.of(view).base_model or view.endpoint
            offers_by_repo.setdefault(repo, []).append(view.key)
    found: list[tuple[str, str | None, Path]] = []  # (source kind, repo id, folder)
    for path in paths:
        found += [("folder", None, f) for f in _folders(path.expanduser())]
    if include_cache:
        found += [("hf-cache", repo, snap) for repo, snap in cached_pipelines(cache_dir)]
    rows = []
    for kind, repo, folder in found:
        info = inspect_folder(folder)
        if info is None:
            continue
        row = {"source": kind, "repo": repo, "path": str(folder), **info.to_dict(),
               "offers": offers_by_repo.get(repo, []) if repo else []}
        rows.append(row)
    return rows


def _gib(n: float) -> str:
    return f"{n:.2f}"


@local_app.command("list")
@friendly
def local_list(
    json_out: bool = JsonOpt,
    path: list[Path] = typer.Option(  # noqa: B008 - typer's way to declare options
        [], "--path", help="A diffusers folder, or a folder of them (repeatable)."),
    cache_dir: Path | None = typer.Option(  # noqa: B008
        None, "--cache-dir", help="Hugging Face hub cache (default: HF_HUB_CACHE / HF_HOME)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Only the --path folders."),
    catalog: str | None = CatalogOpt,
) -> None:
    """Diffusers pipelines in the Hugging Face cache and given folders, with the memory their
    weights take in bf16/fp16 and fp32 (activations come on top: a few GiB at 1024²)."""
    from .providers.local._weights import hf_cache_dir

    rows = local_models(path, cache_dir, _catalog(catalog), include_cache=not no_cache)
    if json_out:
        emit_json(rows)
        return
    where = ", ".join([*(str(p) for p in path), *([] if no_cache else
                                                  [str(cache_dir or hf_cache_dir())])])
    if not rows:
        out.print(f"No diffusers pipelines found in {where}. Fetch one with "
                  "`huggingface-cli download <repo>` (e.g. stabilityai/sdxl-turbo), or pass "
                  "--path /folder/saved/with/save_pretrained.", highlight=False)
        return
    table = Table(title=f"Local diffusers pipelines ({where})", title_justify="left")
    for col in ("model", "pipeline", "params", "weights bf16 GiB", "weights fp32 GiB",
                "on disk GiB", "catalog offers"):
        table.add_column(col, justify="right" if "GiB" in col or col == "params" else "left")
    for r in rows:
        table.add_row(r["repo"] or r["path"], r["pipeline"] or "?", f"{r['params'] / 1e9:.2f} B",
                      _gib(r["weights_gib_bf16"]), _gib(r["weights_gib_fp32"]),
                      _gib(r["bytes_on_disk"] / 2**30), ", ".join(r["offers"]) or "—")
    out.print(table)
