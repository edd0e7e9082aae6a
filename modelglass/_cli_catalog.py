"""Rendering for the ``catalog`` commands: tables that read at 80 columns and wide, numbers in
JSON, and the legend for source tags such as ``[S40]``.

Everything that comes from a catalog file or a provider goes into a table as
:class:`rich.text.Text`, never as markup: ``FLUX.1 [dev]`` and ``modelglass[local]`` print as
written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .catalog import Catalog
    from .catalog_tools._query import OfferRow

__all__ = ["AXIS_SHORT", "compare_numbers", "fmt_usd", "model_rows", "print_models",
           "print_offers", "print_sources", "source_ids", "sources_used"]

#: Column headers for the capability axes, short enough for an 80-column terminal.
AXIS_SHORT = {"prompt_adherence": "adh", "photorealism": "real", "text_rendering": "text",
              "style_range": "styl", "composition": "comp", "speed": "spd",
              "resolution": "res"}
_WIDE = 130
_CONTROL_SHORT = {"negative_prompt": "neg.prompt", "sampler": "sampler"}
_STATUS_MARK = {"active": "", "deprecated": " †", "retired": " ✗"}
#: After a price: its as_of is older than 90 days (a mark of its own, not the deprecated †).
STALE_MARK = "°"


def fmt_usd(v: float | None) -> str:
    """``$0.003``, ``$0.105``, ``$0.00117``: three significant figures, no float noise."""
    if v is None:
        return "unknown"
    if v == 0:
        return "$0"
    return f"${v:.3g}" if v < 1 else f"${v:,.2f}"


def _score_text(s: dict[str, Any] | None) -> str:
    if s is None:
        return "—"
    return f"{s['value']:.1f}{'*' if s['estimated'] else ''}"


def _table(title: str | None = None) -> Table:
    # No box: a divider costs three columns each, which an 80-column terminal cannot spare.
    return Table(title=title, box=None, pad_edge=False, padding=(0, 1), title_justify="left",
                 header_style="bold underline")


def legend(console: Console, *, statuses: bool = True) -> None:
    names = "  ".join(f"{short}={axis}" for axis, short in AXIS_SHORT.items())
    console.print(Text(f"scores 0–10: {names}"), soft_wrap=False)
    console.print(Text("* estimated from a stated prior   — unknown (no evidence)"
                       + ("   † deprecated   ✗ retired" if statuses else "")))
    console.print(Text("evidence behind a score: `modelglass catalog show MODEL`; what a source "
                       "tag like [S40] cites: `modelglass catalog sources`"))


# -- models ----------------------------------------------------------------------------------------
def model_rows(cat: Catalog, *, include_retired: bool = True) -> list[dict[str, Any]]:
    """Every model with status, providers, cheapest offer at 1024² and scores, as numbers."""
    from .catalog import AXES

    rows = []
    for mid, m in cat.models.items():
        if not include_retired and m.lifecycle.status_on().value == "retired":
            continue
        best = cat.cheapest(mid)
        sc = cat.scores(mid)
        lc = m.lifecycle
        rows.append({
            "id": mid, "name": m.name, "status": lc.status_on().value,
            "shutdown_on": lc.shutdown_on.isoformat() if lc.shutdown_on else None,
            "replacement": lc.replacement,
            "providers": sorted({o.provider for o in m.offers}),
            "cheapest": ({"offer": best[0].key, "provider": best[0].provider,
                          "usd": _round(best[1].usd)} if best else None),
            "scores": {a: (None if sc[a].value is None else
                           {"value": sc[a].value, "estimated": sc[a].estimated}) for a in AXES},
        })
    return rows


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def print_models(console: Console, rows: Sequence[dict[str, Any]]) -> None:
    wide = console.width >= _WIDE
    t = _table(f"{len(rows)} models")
    t.add_column("model", no_wrap=True)
    if wide:
        t.add_column("status", no_wrap=True)
        t.add_column("providers", no_wrap=True)
    t.add_column("cheapest 1024²" if wide else "cheapest", no_wrap=True)
    for short in AXIS_SHORT.values():
        t.add_column(short, justify="right", no_wrap=True)
    for r in rows:
        cheap = (f"{fmt_usd(r['cheapest']['usd'])} {r['cheapest']['provider']}"
                 if r["cheapest"] else "unknown")
        scores = [_score_text(s) for s in r["scores"].values()]
        if wide:
            status = r["status"] + (f" → {r['replacement']}" if r["replacement"] else "")
            cells = [r["id"], status, ",".join(r["providers"]), cheap, *scores]
        else:
            cells = [r["id"] + _STATUS_MARK.get(r["status"], ""), cheap, *scores]
        t.add_row(*(Text(c) for c in cells))
    console.print(t)
    legend(console, statuses=not wide)


# -- offers ----------------------------------------------------------------------------------------
def print_offers(console: Console, rows: Sequence[OfferRow], *, axis: str | None,
                 where: Iterable[str] = (), sort: str | None = None) -> None:
    from .catalog import AXES

    wide = console.width >= _WIDE
    size = rows[0].size if rows else ""
    title = f"{len(rows)} offers" + (f" on {axis}" if axis else "") + (f", cost at {size}" if size else "")
    shown_axes = list(AXES) if wide else [a for a in AXES if a in set(where) or a == sort]
    if not wide and not shown_axes:
        shown_axes = ["prompt_adherence", "text_rendering", "speed"]
    supports = list(rows[0].supports) if rows else []
    t = _table(title)
    t.add_column("offer", no_wrap=True)
    if wide:
        t.add_column("status")
        t.add_column("licence")
    t.add_column("$/image", justify="right", no_wrap=True)
    if axis:
        t.add_column(f"{axis} q", justify="right", no_wrap=True)
    for a in shown_axes:
        t.add_column(AXIS_SHORT[a], justify="right", no_wrap=True)
    for c in supports:
        t.add_column(c.replace("_", " ") if wide else _CONTROL_SHORT.get(c, c), no_wrap=True)
    if wide:
        t.add_column("p50", justify="right")
    for r in rows:
        d = r.to_dict()
        price = fmt_usd(d["cost_per_image_usd"]) + ("~" if d["cost_approximate"] else "") \
            + (STALE_MARK if d["price_stale"] else "")
        cells = [r.key + ("" if wide else _STATUS_MARK.get(d["status"], ""))]
        if wide:
            lc = d["status"] + (f" → {d['replacement']}" if d["replacement"] else "")
            cells += [lc, d["licence"] + ("" if d["commercial_use"] else
                                          " (no commercial)" if d["commercial_use"] is False
                                          else " (unverified)")]
        cells.append(price)
        if axis:
            cells.append("—" if d["quality"] is None else f"{d['quality']:.2f}")
        cells += [_score_text(d["scores"][a]) for a in shown_axes]
        cells += [{True: "yes", False: "no", None: "?"}[d["supports"][c]] for c in supports]
        if wide:
            cells.append("—" if d["latency_p50_s"] is None else f"{d['latency_p50_s']:g} s")
        t.add_row(*(Text(c) for c in cells))
    console.print(t)
    if any(r.offer.price_stale for r in rows):  # freshness (catalog helper)
        console.print(Text(f"{STALE_MARK} price older than 90 days; re-check with "
                           "`modelglass catalog sync`"))
    if supports:
        console.print(Text(f"{', '.join(supports)}: yes = this offer sends it (judged by planning "
                           "a request on it), no = it is dropped"))
    if axis:
        console.print(Text(f"{axis} q = weighted quality on the {axis} axis (0–10); only offers "
                           "the router would consider there"))
    console.print(Text("~ price approximated (size not in the price table, or GPU time scaled)"))
    legend(console, statuses=not wide)


# -- sources ---------------------------------------------------------------------------------------
_TAG = re.compile(r"[A-Z]+\d+")


def source_ids(text: str | None) -> list[str]:
    """``"S14,S32"`` → ``["S14", "S32"]``."""
    return _TAG.findall(text or "")


def sources_used(cat: Catalog, model_id: str) -> list[str]:
    """Every source tag that the model's evidence, lifecycle, licence and offers cite."""
    m = cat.model(model_id)
    tags: list[str] = []
    for e in m.evidence:
        tags += source_ids(e.source)
    tags += source_ids(m.lifecycle.source) + source_ids(m.licence.source)
    for o in m.offers:
        tags += source_ids(o.source)
        if o.latency:
            tags += source_ids(o.latency.source)
    return list(dict.fromkeys(tags))


def print_sources(console: Console, cat: Catalog, ids: Sequence[str] | None = None) -> None:
    srcs = cat.settings.sources
    chosen = list(ids) if ids else list(srcs)
    t = _table("sources ([P] primary, [S] secondary, [E] estimate, [K] known problem)")
    t.add_column("tag", no_wrap=True)
    t.add_column("what it cites", overflow="fold")
    for sid in chosen:
        t.add_row(Text(sid), Text(srcs.get(sid, "not in settings.yaml sources")))
    console.print(t)


# -- compare as numbers ----------------------------------------------------------------------------
def compare_numbers(cat: Catalog, model_ids: Sequence[str], axis: str | None) -> dict[str, Any]:
    """``catalog compare --json``: the same facts as the table, with numbers as numbers."""
    from .catalog import AXES

    qa = cat.quality(axis) if axis else None
    rows = []
    for mid in model_ids:
        m = cat.model(mid)
        sc = cat.scores(mid)
        c = m.controls
        row: dict[str, Any] = {
            "model": mid, "name": m.name, "status": m.lifecycle.status_on().value,
            "scores": {a: {"value": sc[a].value, "estimated": sc[a].estimated} for a in AXES},
            "negative_prompt": c.negative_prompt,
            "guidance": c.guidance.kind.value if c.guidance else None,
            "steps": ({"min": c.steps.min, "max": c.steps.max, "default": c.steps.default}
                      if c.steps else None),
            "seed": c.seed, "max_megapixels": m.geometry.max_mp(),
            "commercial_use": m.licence.commercial_use,
        }
        if qa is not None:
            num = 0.0
            for a, w in qa.weights.items():
                value = sc[a].value
                num += w * (value if value is not None else qa.unknown_score)
            row["axis_quality"] = round(num / sum(qa.weights.values()), 4)
        best = cat.cheapest(mid)
        row["cheapest_1024"] = ({"offer": best[0].key, "provider": best[0].provider,
                                 "usd": _round(best[1].usd)} if best else None)
        rows.append(row)
    return {"axis": axis, "models": rows}


# -- the rows behind a score (catalog show) --------------------------------------------------------
def evidence_text(score: Any) -> str:
    """The evidence column of ``catalog show``: per benchmark (formula v3) what it read and what
    that implies ± its own SE, with the rows and their sources; plain rows for v1/v2."""
    if score.contributions:
        parts = []
        for c in score.contributions:
            rows = ", ".join(f"{e.metric}={e.value:g} [{e.source}]" for e in c.rows)
            parts.append(f"{c.benchmark}: {rows} → {c.implied:.1f} ± {c.stderr:.1f}")
        return "; ".join(parts)
    ev = "; ".join(f"{e.metric}={e.value:g} [{e.source}]" for e in score.evidence)
    return ev or score.reason or "no evidence"


def contributions_json(score: Any) -> list[dict[str, Any]]:
    """``catalog show --json``: each benchmark's reading of a calibrated (v3) score."""
    return [{"benchmark": c.benchmark, "raw": c.raw, "anchored": round(c.anchored, 4),
             "implied": round(c.implied, 4), "stderr": round(c.stderr, 4),
             "rows": [e.model_dump() for e in c.rows]} for c in score.contributions]
