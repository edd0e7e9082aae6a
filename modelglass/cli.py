"""The ``modelglass`` command: catalog lookups, routing and planning (and, via their modules,
``generate``, ``providers`` and ``local``). Every command takes ``--json``.
"""

from __future__ import annotations

import sys
from importlib import import_module
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ._cli_common import (
    _NO_KEYS,
    _STATE,
    EXIT_OK,
    EXIT_PROVIDER,
    EXIT_USER,
    _catalog,
    _keys_set,
    emit_json,
    err,
    error_dict,
    exit_code,
    fate_cells,
    friendly,
    out,
    print_plan,
)
from ._cli_options import REQUEST_OPTIONS, CatalogOpt, JsonOpt, request_options, routing_options
from .errors import InvalidRequest, NoEligibleModel

# The shared pieces live in _cli_common (so no command module imports this one back); they stay
# importable from here.
__all__ = ["EXIT_OK", "EXIT_PROVIDER", "EXIT_USER", "REQUEST_OPTIONS", "app", "catalog_app",
           "emit_json", "error_dict", "exit_code", "fate_cells", "friendly", "print_plan",
           "request_options"]

# rich_markup_mode=None: help text is printed as written ("modelglass[local]" keeps its brackets).
app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="Generate images through one call, whatever serves the model.")
catalog_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Look up models, offers, scores and prices.")
app.add_typer(catalog_app, name="catalog")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("modelglass")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            from . import __version__ as v
        sys.stdout.write(f"modelglass {v}\n")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       metavar="", help="Print the version and exit."),
          verbose: bool = typer.Option(False, "--verbose", "-v", metavar="",
                                       help="Errors in full: every rejected offer.")) -> None:
    """Generate images through one call, whatever serves the model.

    Exit status, for every command: 0 done; 1 a provider failed or refused; 2 something you can
    change (a flag, the request, the catalog, a key, the budget, or no offer is eligible).
    With --json, an error is printed as {"error": {"type", "message", "exit_code", ...}}.
    """
    _STATE["verbose"] = verbose


# -- catalog --------------------------------------------------------------------------------------
_where_opt = typer.Option(None, "--where", help="Score filter, e.g. \"text_rendering>=8\" (repeat "
                          "or comma-separate; unknown scores never pass).")
_supports_opt = typer.Option(None, "--supports", help="Controls the offer really sends: "
                             "negative_prompt, cfg, steps, seed, sampler (repeat or comma-separate).")
_plot_out = typer.Option(Path("catalog-plot.png"), "--out", "-o",
                         help="A .png or .svg file to write.")
_html_out = typer.Option(Path("catalog.html"), "--out", "-o", help="The HTML file to write.")
_source_ids = typer.Argument(None, help="Source tags to explain (default: all), e.g. S40 S47.")


@catalog_app.command("list")
@friendly
def catalog_list(json_out: bool = JsonOpt, catalog: str | None = CatalogOpt,
                 all_: bool = typer.Option(True, "--all/--active", help="Include retired models."),
                 axis: str | None = typer.Option(
                     None, "--axis", help="Only offers the router would consider on this quality "
                     "axis (draft, thumbnail, hero, print), with their weighted quality."),
                 sort: str | None = typer.Option(
                     None, "--sort", help="cost (per image, cheapest first), quality (needs "
                     "--axis) or a score name (highest first)."),
                 where: list[str] | None = _where_opt,
                 supports: list[str] | None = _supports_opt,
                 provider: str | None = typer.Option(None, "--provider",
                                                     help="Only these providers (comma-separated)."),
                 commercial: bool = typer.Option(False, "--commercial", metavar="",
                                                 help="Only models licensed for commercial use."),
                 lifecycle: str | None = typer.Option(
                     None, "--lifecycle", help="active, deprecated or retired (comma-separated)."),
                 size: str | None = typer.Option(
                     None, "--size", help="Price at WIDTHxHEIGHT (default: the axis's target size, "
                     "else 1024x1024)."),
                 offers: bool = typer.Option(False, "--offers", metavar="",
                                             help="One row per offer even without filters."),
                 stale: bool = typer.Option(False, "--stale", metavar="",
                                            help="Only offers whose price is older than 90 days "
                                            "(re-check with `catalog sync`).")) -> None:
    """Every model (status, cheapest offer at 1024², scores); with any filter or sort, the
    matching offers, one row each, with numbers in --json.
    """
    from ._cli_catalog import model_rows, print_models, print_offers

    cat = _catalog(catalog)
    query_mode = offers or stale or any(x for x in (axis, sort, where, supports, provider,
                                                    lifecycle, size, commercial))
    if not query_mode:
        rows = model_rows(cat, include_retired=all_)
        if json_out:
            emit_json(rows)
        else:
            print_models(out, rows)
        return
    lifecycle_filter = lifecycle if lifecycle or all_ else "active,deprecated"
    found = cat.query(axis=axis, supports=supports or None, where=where or None,
                      provider=provider, commercial=True if commercial else None,
                      lifecycle=lifecycle_filter, sort=sort or "cost", size=size)
    if stale:  # freshness: prices older than 90 days (catalog helper)
        found = [r for r in found if r.offer.price_stale]
    if json_out:
        emit_json([r.to_dict() for r in found])
        return
    from .catalog_tools._query import parse_where

    where_keys = list(parse_where(where)) if where else []
    print_offers(out, found, axis=axis, where=where_keys, sort=sort)


@catalog_app.command("sources")
@friendly
def catalog_sources(ids: list[str] | None = _source_ids,
                    json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """What each source tag such as [S40] in the catalog cites."""
    from ._cli_catalog import print_sources

    cat = _catalog(catalog)
    chosen = [i.strip().strip("[]").upper() for i in ids or []]
    unknown = [i for i in chosen if i not in cat.settings.sources]
    if unknown:
        import difflib

        valid = list(cat.settings.sources)
        near = [m for u in unknown for m in difflib.get_close_matches(u, valid, n=1)]
        raise InvalidRequest(f"no source {', '.join(unknown)} in the catalog's settings.yaml"
                             + (f"; did you mean {', '.join(near)}?" if near else ""),
                             field="ids", hint="`modelglass catalog sources` lists them all")
    if json_out:
        srcs = cat.settings.sources
        emit_json({sid: srcs.get(sid) for sid in (chosen or list(srcs))})
        return
    print_sources(out, cat, chosen or None)


@catalog_app.command("show")
@friendly
def catalog_show(model: str, json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """One model: the evidence behind each score (with what each source tag cites), controls,
    offers and prices."""
    from ._cli_catalog import contributions_json, evidence_text, fmt_usd, sources_used
    from .catalog import AXES

    cat = _catalog(catalog)
    m = cat.model(model)
    sc = cat.scores(model)
    offers = []
    for v in cat.offers_for(model):
        est = v.estimate_cost(1024, 1024, 1)
        offers.append({"offer": v.key, "endpoint": v.endpoint, "price": v.offer.price.model_dump(exclude_none=True),
                       "usd_1024": None if est.usd is None else round(est.usd, 6), "basis": est.basis, "as_of": v.offer.as_of,
                       "price_age_days": v.price_age_days(), "price_stale": v.price_stale,
                       "source": v.offer.source,
                       "latency_p50_s": v.offer.latency.p50_s if v.offer.latency else None,
                       "controls": v.controls.model_dump(exclude_none=True, mode="json"),
                       "geometry": v.geometry.model_dump(exclude_none=True)})
    data = {
        "id": model, "name": m.name, "family": m.family, "architecture": m.architecture,
        "training": m.training, "licence": m.licence.model_dump(), "lifecycle": m.lifecycle.model_dump(mode="json"),
        "scores": {a: {"value": sc[a].value, "estimated": sc[a].estimated, "formula": sc[a].formula,
                       "reason": sc[a].reason, "mean": sc[a].mean, "stderr": sc[a].stderr,
                       "benchmarks": contributions_json(sc[a]),
                       "evidence": [e.model_dump() for e in sc[a].evidence]} for a in AXES},
        "controls": m.controls.model_dump(exclude_none=True, mode="json"),
        "geometry": m.geometry.model_dump(exclude_none=True), "offers": offers, "notes": m.notes,
        "disabled_offers": {k: cat.overlay.disabled.get(k, "") for k, v in cat.disabled.items()
                            if v.model_id == model},  # overlay hook (catalog helper)
        "sources": {t: cat.settings.sources.get(t) for t in sources_used(cat, model)},
    }
    if json_out:
        emit_json(data)
        return
    lc = m.lifecycle
    out.print(Text.assemble((m.name, "bold"), f" ({model}) — {m.family}; "
                            f"{m.architecture or 'architecture unknown'}"), highlight=False)
    out.print(Text(f"status: {lc.status_on().value}" + (f", shutdown {lc.shutdown_on}" if lc.shutdown_on else "")
                   + (f", replacement {lc.replacement}" if lc.replacement else "")), highlight=False)
    lic = m.licence
    out.print(Text(f"licence: {lic.id}; open weights: {_yes_no(lic.open_weights)}; commercial use: "
                   f"{ {True: 'yes', False: 'no', None: 'unverified'}[lic.commercial_use] }"),
              highlight=False)
    t = Table(title="capability scores (0–10)")
    for col in ("axis", "score", "evidence / reason", "formula"):
        t.add_column(col)
    for a in AXES:
        s = sc[a]
        t.add_row(a, s.with_uncertainty(), Text(evidence_text(s)), Text(s.formula))
    out.print(t)
    c = m.controls
    out.print(f"controls: negative prompt {c.negative_prompt or 'unknown'}; guidance "
              f"{c.guidance.kind.value if c.guidance else 'unknown'}"
              f"{f' {c.guidance.min:g}..{c.guidance.max:g} (default {c.guidance.default:g})' if c.guidance and c.guidance.min is not None and c.guidance.max is not None and c.guidance.default is not None else ''}; "
              f"steps {f'{c.steps.min:g}..{c.steps.max:g}' if c.steps and c.steps.min is not None and c.steps.max is not None else 'n/a'}; "
              f"seed {_yes_no(c.seed)}; samplers {', '.join(c.samplers or []) or 'n/a'}",
              markup=False, highlight=False)
    t = Table(title="offers")
    for col in ("offer", "endpoint", "price at 1024²", "basis", "as of", "source", "p50 latency"):
        t.add_column(col)
    for o in offers:
        cells = [o["offer"], o["endpoint"], fmt_usd(o["usd_1024"]), o["basis"],
                 str(o["as_of"]) + (f" (stale: {o['price_age_days']} days)" if o["price_stale"] else ""),
                 o["source"], "unknown" if o["latency_p50_s"] is None else f"{o['latency_p50_s']:g} s"]
        t.add_row(*(Text(c) for c in cells))
    out.print(t)
    for key, why in data["disabled_offers"].items():
        out.print(Text(f"{key}: disabled by your catalog overlay ({why}); not routed"),
                  highlight=False)
    if m.notes:
        out.print(f"notes: {escape(m.notes)}", highlight=False)
    tags = sources_used(cat, model)
    if tags:
        out.print("sources:", style="bold")
        for tag in tags:
            out.print(Text(f"  [{tag}] {cat.settings.sources.get(tag, 'not in settings.yaml')}"),
                      highlight=False)


@catalog_app.command("compare")
@friendly
def catalog_compare(models: list[str], axis: str | None = typer.Option(None, "--axis"),
                    json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Models side by side: axes, controls, cheapest price (and weighted quality on --axis)."""
    from ._cli_catalog import compare_numbers

    cat = _catalog(catalog)
    comp = cat.compare(models, axis=axis)
    if json_out:
        emit_json(compare_numbers(cat, models, axis))
    else:
        out.print(comp)


def _yes_no(v: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[v]


@catalog_app.command("plot")
@friendly
def catalog_plot(axis: str = typer.Option("hero", "--axis", help="Quality axis to plot."),
                 out_path: Path = _plot_out,
                 provider: str | None = typer.Option(None, "--provider",
                                                     help="Only these providers (comma-separated)."),
                 size: str | None = typer.Option(None, "--size", help="Price at WIDTHxHEIGHT "
                                                 "(default: the axis's target size)."),
                 json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Estimated cost per image (log) against quality on AXIS for every offer the router
    considers, with the Pareto front marked. Needs matplotlib (modelglass[plot])."""
    from .catalog_tools._plot import pareto_front, plot_points

    cat = _catalog(catalog)
    path = cat.plot(axis, out_path, size=size, provider=provider)
    points, unknown = plot_points(cat.query(axis=axis, provider=provider, size=size))
    front = pareto_front(points)
    if json_out:
        emit_json({"file": str(path), "axis": axis, "points": len(points),
                   "pareto_front": [p.label for p in front], "price_unknown": unknown})
        return
    out.print(Text(f"wrote {path}: {len(points)} points, Pareto front: "
                   + ", ".join(p.label for p in front)), highlight=False)


@catalog_app.command("html")
@friendly
def catalog_html(out_path: Path = _html_out,
                 json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """One self-contained page (no network needed to view it): a sortable, filterable table of
    models and offers, each score's evidence with its source, prices and lifecycle warnings."""
    cat = _catalog(catalog)
    path = cat.write_html(out_path)
    if json_out:
        emit_json({"file": str(path), "bytes": path.stat().st_size})
        return
    out.print(Text(f"wrote {path} ({path.stat().st_size // 1024} KB); open it in a browser"),
              highlight=False)


# -- route / plan ---------------------------------------------------------------------------------
def _client(catalog: str | None) -> Any:
    from .client import Client

    return Client(catalog=_catalog(catalog) if catalog else None)


@app.command()
@friendly
@request_options
@routing_options
def route(prompt: str, request: dict[str, Any], routing: dict[str, Any],
          explain: bool = typer.Option(False, "--explain", help="Say why, with the runner-ups."),
          json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Pick a model and provider for PROMPT, and say why. No network."""
    decision = _client(catalog).route(prompt, **routing, **request)
    if json_out:
        data = decision.to_dict()
        if decision.choice is None:
            try:
                decision.require()
            except NoEligibleModel as exc:
                data["error"] = error_dict(exc)
        emit_json(data)
        if decision.choice is None:
            raise typer.Exit(EXIT_USER)
        return
    if explain or decision.choice is None:
        out.print(decision.explain(), highlight=False, markup=False)
    else:
        c = decision.choice
        cost = "unknown" if c.cost_usd is None else f"${c.cost_usd:.4f}"
        out.print(Text(f"{c.offer.key}  (estimated {cost})"), highlight=False)
    if decision.choice is None:
        if decision.rejected_by("availability") and not _keys_set():
            err.print(Text(f"hint: {_NO_KEYS}", style="yellow"), highlight=False)
        raise typer.Exit(EXIT_USER)


@app.command()
@friendly
@request_options
@routing_options
def plan(prompt: str, request: dict[str, Any], routing: dict[str, Any],
         json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Dry run: the exact provider payload, what happens to each control, and the cost."""
    call = _client(catalog).plan(prompt, **routing, **request)
    data = call.to_dict()
    if json_out:
        emit_json(data)
        return
    print_plan(data)


#: The command modules, each with a ``register(target)``, and the app each joins (in --help order).
_COMMAND_MODULES = (("_cli_generate", app), ("_cli_batch", app), ("_cli_compare", app),
                    ("_cli_eval", app), ("_cli_policy", app), ("_cli_catalog_upkeep", catalog_app),
                    ("_cli_local", app))


def _register_optional() -> None:
    # Commands whose modules are optional pieces of the package; each registers itself.
    for name, target in _COMMAND_MODULES:
        try:
            module = import_module(f"{__package__}.{name}")
        except ImportError:  # pragma: no cover - shipped together; guard keeps `catalog` usable
            continue
        module.register(target)


_register_optional()

if __name__ == "__main__":  # pragma: no cover
    app()
