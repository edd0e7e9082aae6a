"""Freshness: prices older than 90 days are flagged in explain(), `catalog list --stale`, `show`."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from test_catalog_load import TOY, edit, make_catalog
from typer.testing import CliRunner

import modelglass as mg
from modelglass import _clock
from modelglass.catalog import STALE_AFTER_DAYS, Catalog
from modelglass.cli import app
from modelglass.errors import CatalogError

OLD = _clock.today() - dt.timedelta(days=STALE_AFTER_DAYS + 30)
NEW = _clock.today() - dt.timedelta(days=3)


def _catalog(tmp_path: Path) -> Path:
    models = edit(TOY, "as_of: 2026-01-01", f"as_of: {OLD}")          # toy@fal: stale
    models = edit(models, "as_of: 2026-01-01", f"as_of: {NEW}")       # toy@fal-mp: fresh
    settings = (mg.catalog.default_catalog_dir() / "settings.yaml").read_text()
    settings = re.sub(r"(?m)^as_of: \S+", f"as_of: {_clock.today()}", settings)
    return make_catalog(tmp_path, models, settings=settings)


def test_price_age_and_staleness() -> None:
    cat = Catalog.default()
    view = cat.offers()[0]
    as_of = view.offer.as_of
    assert view.price_age_days(as_of + dt.timedelta(days=10)) == 10
    assert not view.price_stale_on(as_of + dt.timedelta(days=STALE_AFTER_DAYS))
    assert view.price_stale_on(as_of + dt.timedelta(days=STALE_AFTER_DAYS + 1))
    assert view.price_stale == view.price_stale_on(_clock.today())


def test_explain_flags_a_stale_price(tmp_path: Path) -> None:
    cat = Catalog.load(_catalog(tmp_path))
    client = mg.Client(catalog=cat, available=["fal"])
    decision = client.route("a toy", model="toy", provider="fal", quality="hero",
                            max_cost_usd=1.0)
    rows = {c.offer.key: c for c in decision.ranked}
    assert any("stale" in f and str(OLD) in f for f in rows["toy@fal"].flags)
    assert not any("stale" in f for f in rows["toy@fal-mp"].flags)
    assert "stale" in decision.explain()
    client.close()


def test_catalog_list_stale_shows_only_old_prices(tmp_path: Path) -> None:
    root = _catalog(tmp_path)
    r = CliRunner().invoke(app, ["catalog", "list", "--stale", "--json", "--catalog", str(root)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert [row["offer"] for row in json.loads(r.output)] == ["toy@fal"]


def test_catalog_show_flags_a_stale_price(tmp_path: Path) -> None:
    root = _catalog(tmp_path)
    r = CliRunner().invoke(app, ["catalog", "show", "toy", "--catalog", str(root)],
                           env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    assert f"(stale: {STALE_AFTER_DAYS + 30} days)" in r.output
    r = CliRunner().invoke(app, ["catalog", "show", "toy", "--json", "--catalog", str(root)])
    offers = {o["offer"]: o for o in json.loads(r.output)["offers"]}
    assert offers["toy@fal"]["price_stale"] and not offers["toy@fal-mp"]["price_stale"]
    assert offers["toy@fal"]["price_age_days"] == STALE_AFTER_DAYS + 30


def test_catalog_list_marks_stale_prices(tmp_path: Path) -> None:
    root = _catalog(tmp_path)
    r = CliRunner().invoke(app, ["catalog", "list", "--offers", "--catalog", str(root)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "°" in r.output and "° price older than 90 days" in r.output
    assert "†" not in r.output.split("toy@fal")[1].split("\n")[0]  # † means deprecated only
    r = CliRunner().invoke(app, ["catalog", "list", "--offers", "--json", "--catalog", str(root)])
    rows = {row["offer"]: row for row in json.loads(r.output)}
    assert rows["toy@fal"]["price_stale"] and rows["toy@fal"]["price_as_of"] == str(OLD)
    assert not rows["toy@fal-mp"]["price_stale"]


def test_a_future_as_of_in_an_overlay_is_refused_with_file_and_line(tmp_path: Path) -> None:
    later = _clock.today() + dt.timedelta(days=1)
    ov = tmp_path / "o.yaml"
    ov.write_text(f"source: mine\nas_of: {later}\noffers:\n  flux-dev@fal:\n"
                  "    price: {kind: per_megapixel, usd_per_megapixel: 0.02}\n")
    with pytest.raises(CatalogError) as exc:
        Catalog.load(mg.catalog.default_catalog_dir(), overlays=[ov])
    assert f"{ov}:2: as_of: as_of {later} is later than today" in str(exc.value)
    ov.write_text("source: mine\noffers:\n  flux-dev@fal:\n"
                  "    price: {kind: per_megapixel, usd_per_megapixel: 0.02}\n"
                  "    as_of: 2099-01-01\n")
    with pytest.raises(CatalogError) as exc:
        Catalog.load(mg.catalog.default_catalog_dir(), overlays=[ov])
    assert f"{ov}:5: offers.flux-dev@fal.as_of: as_of 2099-01-01 is later than today" \
        in str(exc.value)


def test_a_future_as_of_in_the_catalog_is_refused_with_file_and_line(tmp_path: Path) -> None:
    later = _clock.today() + dt.timedelta(days=1)
    settings = (mg.catalog.default_catalog_dir() / "settings.yaml").read_text()
    settings = re.sub(r"(?m)^as_of: \S+", f"as_of: {later}", settings)
    root = make_catalog(tmp_path, edit(TOY, "as_of: 2026-01-01", f"as_of: {later}"),
                        settings=settings)
    with pytest.raises(CatalogError) as exc:
        Catalog.load(root)
    text = str(exc.value)
    assert re.search(rf"settings.yaml:\d+: as_of: as_of {later} is later than today", text)
