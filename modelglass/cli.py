"""The ``modelglass`` command: catalog lookups, routing and planning (and, via their modules,
``generate``, ``providers`` and ``local``). Every command takes ``--json``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import ContentRejected, ModelglassError, ProviderError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Generate images through one call, whatever serves the model.")
catalog_app = typer.Typer(no_args_is_help=True, help="Look up models, offers, scores and prices.")
app.add_typer(catalog_app, name="catalog")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Print modelglass errors as one clear message and exit non-zero, without a traceback.

    Exit status 1 when a provider failed or refused (the request itself was fine), 2 for
    everything the user can fix (request, catalog, budget, keys).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ModelglassError as exc:
            err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", markup=True, highlight=False)
            provider_failed = isinstance(exc, ProviderError | ContentRejected)
            raise typer.Exit(1 if provider_failed else 2) from None

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _catalog(path: str | None) -> Any:
    from .catalog import Catalog

    return Catalog.load(path) if path else Catalog.default()


CatalogOpt = typer.Option(None, "--catalog", help="A catalog directory or models YAML to use.")
JsonOpt = typer.Option(False, "--json", help="Print JSON instead of tables.")


# -- catalog --------------------------------------------------------------------------------------
@catalog_app.command("list")
@friendly
def catalog_list(json_out: bool = JsonOpt, catalog: str | None = CatalogOpt,
                 all_: bool = typer.Option(True, "--all/--active", help="Include retired models.")) -> None:
    """Every model: status, cheapest offer at 1024², axis scores (* = estimated)."""
    from .catalog import AXES

    cat = _catalog(catalog)
    rows = []
    for mid, m in cat.models.items():
        if not all_ and m.lifecycle.status.value == "retired":
            continue
        best = cat.cheapest(mid)
        sc = cat.scores(mid)
        rows.append({
            "id": mid, "name": m.name, "status": m.lifecycle.status.value,
            "shutdown_on": m.lifecycle.shutdown_on, "replacement": m.lifecycle.replacement,
            "providers": sorted({o.provider for o in m.offers}),
            "cheapest": ({"offer": best[0].key, "usd": best[1].usd} if best else None),
            "scores": {a: (None if sc[a].value is None else
                           {"value": sc[a].value, "estimated": sc[a].estimated}) for a in AXES},
        })
    if json_out:
        emit_json(rows)
        return
    t = Table(title=f"{len(rows)} models")
    for col in ("id", "status", "providers", "cheapest 1024²", *(a[:8] for a in AXES)):
        t.add_column(col)
    for r in rows:
        status = r["status"] + (f" → {r['replacement']}" if r["replacement"] else "")
        cheap = f"${r['cheapest']['usd']:.4f} {r['cheapest']['offer'].split('@')[1]}" if r["cheapest"] else "unknown"
        scores = [("—" if s is None else f"{s['value']:.1f}{'*' if s['estimated'] else ''}")
                  for s in r["scores"].values()]
        t.add_row(r["id"], status, ",".join(r["providers"]), cheap, *scores)
    out.print(t)
    out.print("— unknown   * estimated from a stated prior (see `catalog show`)")


@catalog_app.command("show")
@friendly
def catalog_show(model: str, json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """One model: the evidence behind each score, controls, offers and prices."""
    from .catalog import AXES

    cat = _catalog(catalog)
    m = cat.model(model)
    sc = cat.scores(model)
    offers = []
    for v in cat.offers_for(model):
        est = v.estimate_cost(1024, 1024, 1)
        offers.append({"offer": v.key, "endpoint": v.endpoint, "price": v.offer.price.model_dump(exclude_none=True),
                       "usd_1024": est.usd, "basis": est.basis, "as_of": v.offer.as_of,
                       "source": v.offer.source,
                       "latency_p50_s": v.offer.latency.p50_s if v.offer.latency else None,
                       "controls": v.controls.model_dump(exclude_none=True, mode="json"),
                       "geometry": v.geometry.model_dump(exclude_none=True)})
    data = {
        "id": model, "name": m.name, "family": m.family, "architecture": m.architecture,
        "training": m.training, "licence": m.licence.model_dump(), "lifecycle": m.lifecycle.model_dump(mode="json"),
        "scores": {a: {"value": sc[a].value, "estimated": sc[a].estimated, "formula": sc[a].formula,
                       "reason": sc[a].reason,
                       "evidence": [e.model_dump() for e in sc[a].evidence]} for a in AXES},
        "controls": m.controls.model_dump(exclude_none=True, mode="json"),
        "geometry": m.geometry.model_dump(exclude_none=True), "offers": offers, "notes": m.notes,
    }
    if json_out:
        emit_json(data)
        return
    lc = m.lifecycle
    out.print(f"[bold]{escape(m.name)}[/] ({model}) — {m.family}; {m.architecture or 'architecture unknown'}")
    out.print(f"status: {lc.status.value}" + (f", shutdown {lc.shutdown_on}" if lc.shutdown_on else "")
              + (f", replacement {lc.replacement}" if lc.replacement else ""))
    lic = m.licence
    out.print(f"licence: {lic.id}; open weights: {lic.open_weights}; commercial use: "
              f"{ {True: 'yes', False: 'no', None: 'unverified'}[lic.commercial_use] }")
    t = Table(title="capability scores (0–10)")
    for col in ("axis", "score", "evidence / reason", "formula"):
        t.add_column(col)
    for a in AXES:
        s = sc[a]
        ev = "; ".join(f"{e.metric}={e.value:g} [{e.source}]" for e in s.evidence) or s.reason or "no evidence"
        t.add_row(a, str(s), escape(ev), escape(s.formula))
    out.print(t)
    c = m.controls
    out.print(f"controls: negative prompt {c.negative_prompt or 'unknown'}; guidance "
              f"{c.guidance.kind.value if c.guidance else 'unknown'}"
              f"{f' {c.guidance.min:g}..{c.guidance.max:g} (default {c.guidance.default:g})' if c.guidance and c.guidance.min is not None and c.guidance.max is not None and c.guidance.default is not None else ''}; "
              f"steps {f'{c.steps.min:g}..{c.steps.max:g}' if c.steps and c.steps.min is not None and c.steps.max is not None else 'n/a'}; "
              f"seed {c.seed}; samplers {', '.join(c.samplers or []) or 'n/a'}")
    t = Table(title="offers")
    for col in ("offer", "endpoint", "price at 1024²", "basis", "as of", "source", "p50 latency"):
        t.add_column(col)
    for o in offers:
        t.add_row(o["offer"], o["endpoint"], "unknown" if o["usd_1024"] is None else f"${o['usd_1024']:.4f}",
                  o["basis"], str(o["as_of"]), o["source"],
                  "unknown" if o["latency_p50_s"] is None else f"{o['latency_p50_s']:g} s")
    out.print(t)
    if m.notes:
        out.print(f"notes: {escape(m.notes)}", highlight=False)


@catalog_app.command("compare")
@friendly
def catalog_compare(models: list[str], axis: str | None = typer.Option(None, "--axis"),
                    json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Models side by side: axes, controls, cheapest price (and weighted quality on --axis)."""
    comp = _catalog(catalog).compare(models, axis=axis)
    if json_out:
        emit_json(comp.to_dict())
    else:
        out.print(comp)


# -- route / plan ---------------------------------------------------------------------------------
def request_kwargs(quality: str, model: str | None, provider: str | None, negative: str | None,
                   cfg: float | None, steps: int | None, seed: int | None, size: str | None,
                   aspect_ratio: str | None, print_size: str | None, dpi: int | None, n: int,
                   sampler: str | None, max_cost: float | None, strict: bool,
                   commercial: bool) -> dict[str, Any]:
    return {"quality": quality, "model": model, "provider": provider, "negative_prompt": negative,
            "cfg": cfg, "steps": steps, "seed": seed, "size": size, "aspect_ratio": aspect_ratio,
            "print_size": print_size, "dpi": dpi, "n": n, "sampler": sampler,
            "max_cost_usd": max_cost, "strict": strict, "commercial": commercial}


def _client(catalog: str | None) -> Any:
    from .client import Client

    return Client(catalog=_catalog(catalog) if catalog else None)


def _assume(value: str | None) -> list[str] | None:
    return [p.strip() for p in value.split(",") if p.strip()] if value else None


_quality = typer.Option("hero", "--quality", "-q", help="draft | thumbnail | hero | print")
_model = typer.Option(None, "--model", help="Pin a model id.")
_provider = typer.Option(None, "--provider", help="Pin a provider.")
_negative = typer.Option(None, "--negative", help="Negative prompt.")
_cfg = typer.Option(None, "--cfg")
_steps = typer.Option(None, "--steps")
_seed = typer.Option(None, "--seed")
_size = typer.Option(None, "--size", help="WIDTHxHEIGHT in pixels.")
_aspect = typer.Option(None, "--aspect-ratio", help="W:H")
_print = typer.Option(None, "--print-size", help="e.g. 8x10in, A4, 20x30cm")
_dpi = typer.Option(None, "--dpi")
_n = typer.Option(1, "-n", help="Number of images.")
_sampler = typer.Option(None, "--sampler")
_max_cost = typer.Option(None, "--max-cost", help="Hard ceiling in USD for the call.")
_strict = typer.Option(False, "--strict", help="Refuse instead of approximating or dropping.")
_commercial = typer.Option(False, "--commercial", help="Only models licensed for commercial use.")
_assume_opt = typer.Option(None, "--assume-available",
                           help="Comma-separated providers to treat as available (no keys needed).")


@app.command()
@friendly
def route(prompt: str, quality: str = _quality, model: str | None = _model,
          provider: str | None = _provider, negative: str | None = _negative,
          cfg: float | None = _cfg, steps: int | None = _steps, seed: int | None = _seed,
          size: str | None = _size, aspect_ratio: str | None = _aspect,
          print_size: str | None = _print, dpi: int | None = _dpi, n: int = _n,
          sampler: str | None = _sampler, max_cost: float | None = _max_cost,
          strict: bool = _strict, commercial: bool = _commercial,
          assume_available: str | None = _assume_opt,
          explain: bool = typer.Option(False, "--explain", help="Say why, with the runner-ups."),
          json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Pick a model and provider for PROMPT, and say why. No network."""
    kw = request_kwargs(quality, model, provider, negative, cfg, steps, seed, size, aspect_ratio,
                        print_size, dpi, n, sampler, max_cost, strict, commercial)
    decision = _client(catalog).route(prompt, available=_assume(assume_available), **kw)
    if json_out:
        emit_json(decision.to_dict())
        return
    if explain or decision.choice is None:
        out.print(decision.explain(), highlight=False, markup=False)
    else:
        c = decision.choice
        cost = "unknown" if c.cost_usd is None else f"${c.cost_usd:.4f}"
        out.print(f"{c.offer.key}  (estimated {cost})")
    if decision.choice is None:
        raise typer.Exit(1)


@app.command()
@friendly
def plan(prompt: str, quality: str = _quality, model: str | None = _model,
         provider: str | None = _provider, negative: str | None = _negative,
         cfg: float | None = _cfg, steps: int | None = _steps, seed: int | None = _seed,
         size: str | None = _size, aspect_ratio: str | None = _aspect,
         print_size: str | None = _print, dpi: int | None = _dpi, n: int = _n,
         sampler: str | None = _sampler, max_cost: float | None = _max_cost,
         strict: bool = _strict, commercial: bool = _commercial,
         assume_available: str | None = _assume_opt,
         json_out: bool = JsonOpt, catalog: str | None = CatalogOpt) -> None:
    """Dry run: the exact provider payload, what happens to each control, and the cost."""
    kw = request_kwargs(quality, model, provider, negative, cfg, steps, seed, size, aspect_ratio,
                        print_size, dpi, n, sampler, max_cost, strict, commercial)
    call = _client(catalog).plan(prompt, available=_assume(assume_available), **kw)
    data = call.to_dict()
    if json_out:
        emit_json(data)
        return
    print_plan(data)


def print_plan(data: dict[str, Any]) -> None:
    """Human rendering of a ProviderCall.to_dict()."""
    est = data["estimate"]
    cost = "unknown" if est["usd"] is None else f"${est['usd']:.4f}"
    out.print(f"[bold]{data['offer']}[/] → {data['endpoint']}  size {data['size']}  n {data['n']}"
              f"  chunks {data['chunks']}")
    out.print(f"estimated cost: {cost} ({est['basis']}{', approximate' if est['approximate'] else ''})")
    if data["seeds"]:
        out.print(f"seeds: {data['seeds']}{' (drawn; pass --seed to fix)' if data['seed_drawn'] else ''}")
    if data["upscale"]:
        up = data["upscale"]
        out.print(f"[yellow]upscale needed:[/] {up['from']} → {up['to']} (×{up['factor']})")
    t = Table(title="fates")
    for col in ("control", "fate", "sent", "why / delta"):
        t.add_column(col)
    for f in data["fates"]:
        t.add_row(f["control"], f["kind"], "" if f["applied"] is None else str(f["applied"]),
                  " ".join(x for x in (f["reason"], f["delta"] and f"({f['delta']})") if x))
    out.print(t)
    out.print("payload:")
    out.print_json(json.dumps(data["payload"], default=str))
    for note in data.get("notes") or []:
        out.print(f"note: {note}")


def _register_optional() -> None:
    # Commands whose modules are optional pieces of the package; each registers itself.
    try:
        from ._cli_generate import register
    except ImportError:  # pragma: no cover - shipped together; guard keeps `catalog` usable
        pass
    else:
        register(app)
    try:
        from ._cli_batch import register as register_batch
    except ImportError:  # pragma: no cover
        pass
    else:
        register_batch(app)
    try:
        from ._cli_local import local_app
    except ImportError:  # pragma: no cover
        pass
    else:
        app.add_typer(local_app, name="local", help="Local diffusers models: what is on this machine.")


_register_optional()

if __name__ == "__main__":  # pragma: no cover
    app()
