"""`catalog plot`: cost (log) against axis quality for every eligible offer, the Pareto front
marked; PNG and SVG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import modelglass as mg
from modelglass.catalog_tools._plot import pareto_front, plot_axis, plot_points
from modelglass.cli import app

runner = CliRunner()


def test_pareto_front_keeps_only_points_nothing_cheaper_beats() -> None:
    rows = mg.Catalog.default().query(axis="hero")
    points, unknown = plot_points(rows)
    front = pareto_front(points)
    assert front and len(front) < len(points)
    for p in points:
        dominated = any(q.cost <= p.cost and q.quality > p.quality for q in points)
        assert (p in front) == (not dominated and not any(
            q.cost < p.cost and q.quality >= p.quality for q in points)), p
    assert all(r.cost.per_image_usd is None for r in rows if r.key in unknown)


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_plot_writes_the_file(tmp_path: Path, suffix: str) -> None:
    path = plot_axis(mg.Catalog.default(), "hero", tmp_path / f"hero.{suffix}")
    assert path.exists() and path.stat().st_size > 10_000
    if suffix == "png":
        with Image.open(path) as im:
            assert im.size[0] >= 1000
    else:
        text = path.read_text()
        assert text.lstrip().startswith("<?xml") and "Pareto" in text


def test_cli_plot_names_the_front(tmp_path: Path) -> None:
    r = runner.invoke(app, ["catalog", "plot", "--axis", "draft", "--out",
                            str(tmp_path / "d.png"), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["pareto_front"] and data["points"] >= len(data["pareto_front"])


def test_plot_refuses_other_formats(tmp_path: Path) -> None:
    with pytest.raises(mg.InvalidRequest):
        plot_axis(mg.Catalog.default(), "hero", tmp_path / "x.jpg")
