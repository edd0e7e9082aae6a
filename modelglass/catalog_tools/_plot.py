"""``catalog plot``: estimated cost per image (log scale) against quality on one axis, for every
offer the router would consider there, with the Pareto front (nothing is both cheaper and better)
marked. matplotlib is imported only here, and without pyplot: no global backend is changed.

>>> import modelglass as mg
>>> from modelglass.catalog_tools._plot import plot_axis
>>> plot_axis(mg.Catalog.default(), "hero", "hero.png")                 # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._paths import check_output_file
from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ._query import OfferRow

__all__ = ["PlotPoint", "pareto_front", "plot_axis", "plot_points"]

_PROVIDER_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                     "#e377c2", "#17becf"]


@dataclass(frozen=True)
class PlotPoint:
    """Offers that share one (cost, quality) point: same model at the same price on several
    providers is one dot with one label."""

    cost: float
    quality: float
    keys: tuple[str, ...]
    providers: tuple[str, ...]
    model: str
    status: str

    @property
    def label(self) -> str:
        if len(self.keys) == 1:
            return self.keys[0]
        return f"{self.model} @{', @'.join(k.split('@', 1)[1] for k in self.keys)}"


def plot_points(rows: list[OfferRow]) -> tuple[list[PlotPoint], list[str]]:
    """Points with a known cost and quality, and the offers left out for an unknown price."""
    groups: dict[tuple[str, float, float], list[OfferRow]] = {}
    unknown: list[str] = []
    for r in rows:
        cost = r.cost.per_image_usd
        if cost is None or r.quality is None or cost <= 0:
            unknown.append(r.key)
            continue
        groups.setdefault((r.offer.model_id, round(cost, 9), round(r.quality, 6)), []).append(r)
    points = [PlotPoint(cost=k[1], quality=k[2], keys=tuple(x.key for x in g),
                        providers=tuple(x.offer.provider for x in g), model=k[0],
                        status=g[0].offer.model.lifecycle.status_on().value)
              for k, g in groups.items()]
    return sorted(points, key=lambda p: (p.cost, -p.quality)), unknown


def pareto_front(points: list[PlotPoint]) -> list[PlotPoint]:
    """The points no other point beats on both cost (lower) and quality (higher)."""
    front: list[PlotPoint] = []
    best = float("-inf")
    for p in sorted(points, key=lambda p: (p.cost, -p.quality)):
        if p.quality > best + 1e-12:
            front.append(p)
            best = p.quality
    return front


def plot_axis(catalog: Catalog, axis: str, out: str | Path, *, size: str | None = None,
              provider: str | None = None, title: str | None = None) -> Path:
    """Draw cost vs quality on ``axis`` to ``out`` (``.png`` or ``.svg``); returns the path."""
    out = Path(out)
    if out.is_dir():
        check_output_file(out, field="out", suffix=".png")  # says it is a folder
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise InvalidRequest(f"plot output must end in .png or .svg, not {out.name!r}", field="out",
                             path=str(out))
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidRequest("catalog plot needs matplotlib: pip install 'modelglass[plot]'",
                             field="out") from None

    check_output_file(out, field="out", suffix=".png")
    rows = catalog.query(axis=axis, provider=provider, sort="cost", size=size)
    points, unknown = plot_points(rows)
    if not points:
        raise InvalidRequest(f"no offer on the {axis} axis has both a known price and a quality "
                             "score to plot", field="axis")
    front = pareto_front(points)
    on_front = {p.keys for p in front}
    providers = sorted({pr for p in points for pr in p.providers})
    colour = {pr: _PROVIDER_COLOURS[i % len(_PROVIDER_COLOURS)] for i, pr in enumerate(providers)}

    fig = Figure(figsize=(11, 7), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    # Pareto front as a step line: cost rises only when quality does.
    fx = [p.cost for p in front]
    fy = [p.quality for p in front]
    ax.step(fx, fy, where="post", color="#444444", linewidth=1.4, zorder=1,
            label="Pareto front (nothing cheaper is better)")
    several = "#666666"
    for pr in providers:
        mine = [p for p in points if p.providers == (pr,)]
        if mine:
            ax.scatter([p.cost for p in mine], [p.quality for p in mine], s=46, color=colour[pr],
                       edgecolor="white", linewidth=0.8, zorder=3, label=pr)
    shared = [p for p in points if len(p.providers) > 1]
    if shared:
        ax.scatter([p.cost for p in shared], [p.quality for p in shared], s=46, color=several,
                   edgecolor="white", linewidth=0.8, zorder=3,
                   label="several providers, same price")
    ax.scatter(fx, fy, s=170, facecolor="none", edgecolor="#111111", linewidth=1.6, zorder=4)

    size_text = size or catalog.quality(axis).target_size
    ax.set_xlabel(f"estimated cost per image at {size_text}, USD (log scale)", fontsize=11)
    ax.set_ylabel(f"weighted quality on the {axis} axis (0–10)", fontsize=11)
    ax.set_title(title or f"{axis}: cost vs quality for the {len(rows)} offers the router "
                 f"considers ({len(front)} on the Pareto front, circled)", fontsize=12)
    ax.grid(True, which="both", alpha=0.25)
    lo, hi = min(p.cost for p in points), max(p.cost for p in points)
    ax.set_xlim(lo / 1.8, hi * 3.5)
    qs = [p.quality for p in points]
    ax.set_ylim(max(0.0, min(qs) - 0.6), min(10.0, max(qs) + 0.6))
    _usd_axis(ax)
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    if unknown:
        shown = ", ".join(unknown[:6]) + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
        fig.text(0.01, 0.01, f"not plotted, price unknown: {shown}", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03 if unknown else 0, 1, 1))
    # Labels last: their collision checks need the final axis limits and layout.
    _place_labels(fig, ax, points, on_front)
    fig.savefig(out, format=fmt)
    return out


def _usd_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"${v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _place_labels(fig: Any, ax: Any, points: list[PlotPoint], on_front: set[tuple[str, ...]]) -> None:
    """Label every point, trying a few offsets so labels do not sit on each other."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    placed: list[Any] = []
    offsets = [(7, 4), (7, -12), (-7, 4), (-7, -12), (7, 14), (7, -22), (-7, 14), (-7, -22),
               (0, 18), (0, -26)]
    # Front points first: they matter most and get the best spots.
    order = sorted(points, key=lambda p: (p.keys not in on_front, p.cost))
    for p in order:
        bold = p.keys in on_front
        label = p.label + (" (deprecated)" if p.status == "deprecated" else "")
        text = None
        for dx, dy in offsets:
            text = ax.annotate(label, (p.cost, p.quality), xytext=(dx, dy),
                               textcoords="offset points", fontsize=8.5 if bold else 7.5,
                               fontweight="bold" if bold else "normal",
                               color="#111111" if bold else "#444444",
                               ha="left" if dx >= 0 else "right", zorder=5)
            box = text.get_window_extent(renderer).expanded(1.02, 1.1)
            if not any(box.overlaps(b) for b in placed):
                break
            text.remove()
            text = None
        if text is None:  # every spot taken: keep the first, a little faded
            text = ax.annotate(label, (p.cost, p.quality), xytext=offsets[0],
                               textcoords="offset points", fontsize=7, color="#777777", zorder=5)
        placed.append(text.get_window_extent(renderer))
