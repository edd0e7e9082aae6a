"""``eval --plot``: each offer's observed pass rate against its cost per image, with the Pareto
front (no other offer is both cheaper and passes more often) and dotted lines of equal cost per
accepted image. matplotlib is imported only here, and without pyplot (no global backend change).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest

if TYPE_CHECKING:
    from ._eval import EvalReport, OfferScore

__all__ = ["front", "plot_eval"]


def front(rows: list[OfferScore]) -> list[OfferScore]:
    """The offers no other offer beats on both cost per image (lower) and pass rate (higher)."""
    out: list[OfferScore] = []
    best = float("-inf")
    for r in sorted(rows, key=lambda r: (r.cost_per_image_usd, -(r.pass_rate or 0.0))):
        rate = r.pass_rate or 0.0
        if rate > best + 1e-12:
            out.append(r)
            best = rate
    return out


def plot_eval(report: EvalReport, out: Path) -> Path:
    """Draw the report's offers to ``out`` (``.png`` or ``.svg``); returns the path."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise InvalidRequest(f"plot output must end in .png or .svg, not {out.name!r}",
                             field="plot")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidRequest("eval --plot needs matplotlib: pip install 'modelglass[plot]'",
                             field="plot") from None
    rows = [r for r in report.offers if r.pass_rate is not None and r.cost_per_image_usd]
    if not rows:
        raise InvalidRequest("nothing to plot: no offer has both a checked image and a cost",
                             field="plot")
    best = front(rows)
    xy = {r.offer: (float(r.cost_per_image_usd or 0.0), float(r.pass_rate or 0.0)) for r in rows}
    fig = Figure(figsize=(9, 6), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    costs = [xy[r.offer][0] for r in rows]
    lo, hi = min(costs) / 2.2, max(costs) * 2.8
    iso = _iso_lines(ax, lo, hi)
    fx = [xy[r.offer][0] for r in best]
    fy = [xy[r.offer][1] for r in best]
    ax.step(fx, fy, where="post", color="#444444", linewidth=1.4, zorder=2,
            label="Pareto front (nothing cheaper passes more often)")
    ax.scatter(costs, [xy[r.offer][1] for r in rows], s=60, color="#1f77b4", edgecolor="white",
               zorder=3, label="offer (pass rate over n checked images)")
    ax.scatter(fx, fy, s=190, facecolor="none", edgecolor="#111111", linewidth=1.6, zorder=4)
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.03, 1.08)
    from matplotlib.ticker import PercentFormatter

    from .catalog_tools._plot import _usd_axis

    _usd_axis(ax)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"cost per image, USD (log scale; {report.quality} quality)")
    ax.set_ylabel(f"{report.suite.check} check pass rate")
    sim = " — SIMULATED" if report.simulated else ""
    ax.set_title(f"modelglass eval: suite {report.suite.name!r}, {report.n} prompts per model"
                 f"{sim}", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    # Labels last: their collision checks need the final limits and layout.
    _label(fig, ax, rows, xy, best, iso)
    fig.savefig(out, format=fmt)
    return out


def _label(fig: Any, ax: Any, rows: list[OfferScore], xy: dict[str, tuple[float, float]],
           best: list[OfferScore], taken: list[Any]) -> None:
    """Label each offer (pass count, cost per accepted image), trying a few offsets so no
    label sits on another or on a curve's label; front offers first, in bold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(fig).get_renderer()
    placed = [t.get_window_extent(renderer) for t in taken]
    for x, y in xy.values():  # the dots themselves are taken too
        px, py = ax.transData.transform((x, y))
        placed.append(Bbox.from_bounds(px - 7, py - 7, 14, 14))
    offsets = [(8, -4), (8, -26), (-8, -4), (-8, -26), (8, 14), (-8, 14), (8, -44), (-8, -44),
               (8, 32), (-8, 32)]
    for r in sorted(rows, key=lambda r: (r not in best, xy[r.offer][0])):
        per = r.cost_per_accepted_usd
        label = (f"{r.offer}\n{r.passed}/{r.n} passed, "
                 + (f"${per:.3g}/accepted" if per is not None else "none accepted"))
        text = None
        for dx, dy in offsets:
            text = ax.annotate(label, xy[r.offer], xytext=(dx, dy), textcoords="offset points",
                               fontsize=8, fontweight="bold" if r in best else "normal",
                               ha="left" if dx > 0 else "right", zorder=5)
            box = text.get_window_extent(renderer).expanded(1.02, 1.08)
            if not any(box.overlaps(b) for b in placed):
                break
            text.remove()
            text = None
        if text is None:  # every spot taken: the first one, faded
            text = ax.annotate(label, xy[r.offer], xytext=offsets[0], textcoords="offset points",
                               fontsize=7, color="#777777", zorder=5)
        placed.append(text.get_window_extent(renderer))


def _iso_lines(ax: Any, lo: float, hi: float) -> list[Any]:
    """Dotted lines of equal cost per accepted image (pass rate = cost / c), labelled; returns
    the labels."""
    import math

    labels: list[Any] = []
    c = 10 ** math.floor(math.log10(lo))
    while c < hi * 40:
        for mult in (1, 3):
            level = c * mult
            xs = [lo * (hi / lo) ** (i / 60) for i in range(61)]
            pts = [(x, x / level) for x in xs if x / level <= 1.0]
            if len(pts) > 1:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], ":", color="#bbbbbb",
                        linewidth=0.9, zorder=1)
                x_end, y_end = pts[-1]
                labels.append(ax.annotate(f"${level:.3g}/accepted", (x_end, y_end),
                                          fontsize=6.5, color="#999999", xytext=(-2, 3),
                                          textcoords="offset points", ha="right"))
        c *= 10
    return labels
