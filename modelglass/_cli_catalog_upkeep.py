"""``modelglass catalog sync | diff | verify``: keeping the catalog true (registered into ``catalog``).

- ``sync``: ask fal, OpenAI and Replicate what they serve and charge; write the user's overlay.
- ``diff``: what the overlay changes against the shipped catalog.
- ``verify``: declared against observed, offer by offer; ``--live`` probes under ``--max-spend``.

Exit status: 0 fine; 1 a provider API failed (sync) or the catalog drifted from what was observed
(verify); 2 something to fix here (a flag, the overlay file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from ._cli_options import JsonOpt

__all__ = ["register"]

EXIT_DRIFT = 1

# Options as module-level values (typer reads them as defaults).
_SYNC_PROVIDER = typer.Option(
    None, "--provider", help="fal, openai, replicate (repeat; default: every one with a key).")
_SYNC_OVERLAY = typer.Option(
    None, "--overlay", help="The overlay file to write (default: the user's, "
    "$MODELGLASS_CATALOG_OVERLAY or ~/.config/modelglass/overlay.yaml).")
_DRY_RUN = typer.Option(False, "--dry-run", help="Report only; write nothing.")
_ACCEPT = typer.Option(
    None, "--accept", help="Write this offer's price even though it was held as suspicious "
    "(out of bounds, or more than 3x away from the catalog's); repeat for several.")
_TIMEOUT = typer.Option(60.0, "--timeout", help="One deadline in seconds for the whole sync.")
_DIFF_OVERLAY = typer.Option(
    None, "--overlay", help="Overlay file(s) to compare (default: the user's).")
_LIVE = typer.Option(False, "--live", help="Probe the providers with the cheapest valid "
                     "request first (costs money; needs --max-spend).")
_MAX_SPEND = typer.Option(None, "--max-spend", help="Hard cap in USD for --live probes.")
_OFFER = typer.Option(None, "--offer", help="Offers or models to check (repeat; default: all).")
_PROVIDER = typer.Option(None, "--provider", help="Only these providers (repeat).")
_ALL = typer.Option(False, "--all", help="Also list offers with no data.")
_SIMULATE = typer.Option(False, "--simulate", help="Try it offline: one job per provider on the "
                         "loopback simulators, quotes against the bills they state (no spend).")
_SIMULATE_CHANGE = typer.Option(
    None, "--simulate-change", help="With --simulate: PROVIDER=FACTOR, the provider bills FACTOR "
    "times its price (e.g. fal=1.2); repeat per provider.")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def register(catalog_app: typer.Typer) -> None:
    """Add ``sync``, ``diff`` and ``verify`` to the ``catalog`` command group."""
    from ._cli_common import friendly, out

    @catalog_app.command("sync")
    @friendly
    def catalog_sync(provider: list[str] | None = _SYNC_PROVIDER,
                     overlay: Path | None = _SYNC_OVERLAY, dry_run: bool = _DRY_RUN,
                     accept: list[str] | None = _ACCEPT, timeout: float = _TIMEOUT,
                     json_out: bool = JsonOpt) -> None:
        """Pull live prices and model lists from the providers the keys allow; write the overlay
        (as_of today, source: sync). The shipped catalog is never written."""
        from .catalog_tools._sync import sync

        chosen = [p.strip() for item in provider or [] for p in item.split(",") if p.strip()]
        accepted = [a.strip() for item in accept or [] for a in item.split(",") if a.strip()]
        report = sync(providers=chosen or None, overlay=overlay, write=not dry_run,
                      accept=accepted, timeout_s=timeout)
        if json_out:
            _print_json(report.to_dict())
        else:
            _print_sync(out, report)
        if report.errors:
            raise typer.Exit(EXIT_DRIFT)

    @catalog_app.command("diff")
    @friendly
    def catalog_diff(overlay: list[Path] | None = _DIFF_OVERLAY, json_out: bool = JsonOpt) -> None:
        """What the overlay changes against the shipped catalog: prices, endpoints, disabled
        offers, private deployments, and endpoints seen but not described."""
        from .catalog import Catalog, default_catalog_dir
        from .catalog._overlay import default_overlay_path

        paths = list(overlay or [])
        if not paths:
            default = default_overlay_path()
            if default is not None and default.is_file():
                paths = [default]
        cat = Catalog.load(default_catalog_dir(), overlays=paths)
        rep = cat.overlay
        if json_out:
            _print_json({"files": rep.files, "changes": [vars(c) for c in rep.changes],
                         "disabled": rep.disabled, "seen": rep.seen})
            return
        if not paths:
            out.print("No overlay: the shipped catalog is used as it is.", highlight=False)
            return
        t = Table(title=f"overlay changes ({', '.join(rep.files)})")
        for col in ("offer", "what", "before", "after", "where"):
            t.add_column(col)
        for c in rep.changes:
            t.add_row(*(Text(x) for x in (c.offer, c.what, _short(c.before), _short(c.after),
                                          f"{c.file}:{c.line}")))
        out.print(t)
        for provider, endpoints in rep.seen.items():
            out.print(Text(f"seen on {provider}, not described (not routed): "
                           + ", ".join(endpoints)), highlight=False)

    @catalog_app.command("verify")
    @friendly
    def catalog_verify(live: bool = _LIVE, max_spend: float | None = _MAX_SPEND,
                       offer: list[str] | None = _OFFER, provider: list[str] | None = _PROVIDER,
                       show_all: bool = _ALL, simulate: bool = _SIMULATE,
                       simulate_change: list[str] | None = _SIMULATE_CHANGE,
                       json_out: bool = JsonOpt) -> None:
        """Declared against observed, offer by offer: price drift, quotes against the bills,
        latency drift, failure rate, accepted sizes, seed reproducibility (and, with --live,
        which controls change the image). --simulate tries it offline. Exits 1 on drift."""
        report = _verify_report(live, max_spend, offer, provider, simulate, simulate_change)
        if json_out:
            _print_json(report.to_dict())
        else:
            _print_verify(out, report, show_all)
        if report.drift:
            raise typer.Exit(EXIT_DRIFT)


def _check_offer_names(names: list[str] | None) -> None:
    """Each ``--offer`` is a model id or an offer key of the catalog; else exit 2 naming it (a
    typo must not read as "no drift")."""
    import difflib

    from .catalog import Catalog
    from .errors import InvalidRequest

    cat = Catalog.default()
    known = set(cat.models) | {v.key for v in cat.offers()} | set(cat.disabled)
    for name in names or []:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise InvalidRequest(f"--offer {name!r} is neither a model nor an offer of the "
                                 "catalog" + (f"; did you mean {close[0]!r}?" if close else ""),
                                 field="offer", hint="`modelglass catalog list --offers` lists "
                                 "every offer (model@provider)")


def _verify_report(live: bool, max_spend: float | None, offer: list[str] | None,
                   provider: list[str] | None, simulate: bool,
                   simulate_change: list[str] | None) -> Any:
    """The report ``catalog verify`` prints: simulated, live-probed, or from the observed store."""
    import os

    from .catalog_tools._verify import live_probe, verify
    from .errors import InvalidRequest

    offers = [o.strip() for item in offer or [] for o in item.split(",") if o.strip()] or None
    providers = [p.strip() for item in provider or [] for p in item.split(",")
                 if p.strip()] or None
    _check_offer_names(offers)
    if simulate:
        from .testing import simulate_verify

        return simulate_verify(_changes(simulate_change or []))
    if live:
        if max_spend is None:
            raise InvalidRequest("--live spends money: give a hard cap with --max-spend USD "
                                 "(e.g. --max-spend 0.50)", field="max_spend")
        return live_probe(max_spend_usd=max_spend, offers=offers, providers=providers)
    return verify(offers=offers, providers=providers, env=dict(os.environ))


def _changes(items: list[str]) -> dict[str, float]:
    from .errors import InvalidRequest

    out: dict[str, float] = {}
    for item in (p.strip() for raw in items for p in raw.split(",") if p.strip()):
        name, _, factor = item.partition("=")
        try:
            value = float(factor)
        except ValueError:
            value = float("nan")
        if not name or not (0 < value < 1000):
            raise InvalidRequest(f"--simulate-change takes PROVIDER=FACTOR (e.g. fal=1.2), got "
                                 f"{item!r}", field="simulate_change")
        out[name.strip()] = value
    return out


def _short(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict):
        return ", ".join(f"{k}={v[k]}" for k in v)
    return str(v)


def _print_sync(out: Any, report: Any) -> None:
    for provider, status in report.providers.items():
        out.print(Text(f"{provider}: {status}"), highlight=False)
    t = Table(title=f"catalog sync, {report.as_of}")
    for col in ("provider", "finding", "offer / endpoint", "detail"):
        t.add_column(col)
    order = ("held", "refused", "price", "unavailable", "seen", "unlisted", "unmapped",
             "unpriced", "kept", "confirmed", "available")
    for what in order:
        for f in report.of(what):
            detail = f.detail
            if what in ("price", "held", "refused"):
                detail = f"{_short(f.before)} → {_short(f.after)}" + (f" ({f.detail})"
                                                                    if f.detail else "")
            label = "held: suspicious" if what == "held" else what
            t.add_row(*(Text(x) for x in (f.provider, label, f.offer or f.endpoint, detail)))
    out.print(t)
    if report.written:
        out.print(Text(f"overlay written: {report.overlay}"), highlight=False)
    elif report.overlay:
        out.print(Text(f"overlay not written ({report.overlay})"), highlight=False)


def _print_verify(out: Any, report: Any, show_all: bool) -> None:
    t = Table(title="catalog verify: declared vs observed")
    for col in ("offer", "check", "status", "declared", "observed", "detail"):
        t.add_column(col)
    for c in report.checks:
        if c.status == "no data" and not show_all:
            continue
        style = "bold red" if c.status == "drift" else None
        t.add_row(*(Text(x, style=style or "") for x in (
            c.offer, c.check, c.status, _short(c.declared), _short(c.observed), c.detail)))
    out.print(t)
    if report.probes:
        p = Table(title=f"live probes (spent ${report.spent_usd:.4f} of "
                  f"${report.max_spend_usd:g})")
        for col in ("offer", "probe", "cost", "size", "outcome"):
            p.add_column(col)
        for probe in report.probes:
            outcome = probe.skipped or probe.error or (probe.sha256 or "")[:12]
            cost = "" if probe.cost_usd is None else f"${probe.cost_usd:.4f}"
            p.add_row(*(Text(x) for x in (probe.offer, probe.purpose, cost, probe.size or "",
                                          outcome)))
        out.print(p)
    for note in report.notes:
        out.print(Text(note), highlight=False)
    drift = report.drift
    if drift:
        summary = f"{len(drift)} drift(s)"
    elif report.compared:
        summary = f"no drift ({len(report.compared)} check(s) compared)"
    else:
        summary = ("no data: nothing observed to compare (run jobs, or --live, or --simulate); "
                   "this is not \"no drift\"")
    out.print(Text(summary), highlight=False)
