"""Lifecycle from the providers (issue 17, item 4): a vanished endpoint is disabled by sync and
not routed, comes back when the provider lists it again; and routing, `catalog list`, `show` and
the HTML page agree on one status, judged on the pinned clock."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import _catalogs
import _sim_fixtures
import pytest
import yaml
from typer.testing import CliRunner

import modelglass as mg
from modelglass import _clock
from modelglass.catalog import Catalog, Lifecycle, default_catalog_dir
from modelglass.catalog_tools._html import render_html
from modelglass.catalog_tools._sync import sync
from modelglass.cli import app
from modelglass.testing import Simulator

sim = _sim_fixtures.sim_fixture(scope="function")


def _route(cat: Catalog, model: str) -> mg.RoutingDecision:
    req = mg.ImageRequest(prompt="a fox", quality="draft", model=model, max_cost_usd=1.0)
    return mg.Client(catalog=cat, available=["fal", "openai", "replicate"]).route(req)


def test_a_vanished_fal_endpoint_is_not_routed_after_a_sync_and_returns(sim: Simulator,
                                                                        tmp_path: Path) -> None:
    shipped = Catalog.load(default_catalog_dir())
    view = shipped.offer("flux-2-pro@fal")
    before = _route(shipped, "flux-2-pro")
    assert before.choice is not None and before.choice.offer.key == "flux-2-pro@fal"
    meta = sim.platform.fal_models.pop(view.endpoint)
    price = sim.platform.fal_prices.pop(view.endpoint)
    ov = tmp_path / "o.yaml"
    first, later, back_on = (_clock.today() - dt.timedelta(days=d) for d in (4, 1, 0))
    report = sync(overlay=ov, providers=["fal"], today=first)
    (gone,) = [f for f in report.of("unavailable") if f.offer == view.key]
    assert "gone from fal" in gone.detail and first.isoformat() in gone.detail
    entry = yaml.safe_load(ov.read_text())["offers"][view.key]
    assert entry["disabled"] is True and entry["disabled_on"] == first
    cat = Catalog.load(default_catalog_dir(), overlays=[ov])
    assert view.key in cat.disabled and "gone from fal" in cat.overlay.disabled[view.key]
    after = _route(cat, "flux-2-pro")
    assert after.choice is None or after.choice.offer.key != view.key

    # a later sync keeps the first date; when fal lists it again it is routed again
    sync(overlay=ov, providers=["fal"], today=later)
    assert yaml.safe_load(ov.read_text())["offers"][view.key]["disabled_on"] == first
    sim.platform.fal_models[view.endpoint] = meta
    sim.platform.fal_prices[view.endpoint] = price
    sync(overlay=ov, providers=["fal"], today=back_on)
    back = Catalog.load(default_catalog_dir(), overlays=[ov])
    assert view.key not in back.disabled
    again = _route(back, "flux-2-pro")
    assert again.choice is not None and again.choice.offer.key == view.key


def test_an_endpoint_listed_under_another_category_is_not_disabled(sim: Simulator,
                                                                   tmp_path: Path) -> None:
    shipped = Catalog.load(default_catalog_dir())
    view = next(v for v in shipped.offers() if v.provider == "fal")
    sim.platform.fal_models[view.endpoint]["category"] = "image-to-image"
    report = sync(overlay=tmp_path / "o.yaml", providers=["fal"])
    assert view.key in {f.offer for f in report.of("unlisted")}
    assert view.key not in {f.offer for f in report.of("unavailable")}
    asked = [r for r in sim.requests("fal") if r.path == "/v1/models"
             and view.endpoint in (r.query.get("endpoint_id") or "")]
    assert asked, "the endpoint was looked up by id (fal's find mode)"


def _sunset() -> Catalog:
    gone = _catalogs.model(lifecycle=Lifecycle(status="deprecated", shutdown_on=dt.date(2026, 12, 1),
                                               replacement="test-new"))
    return _catalogs.catalog({"test-old": gone, "test-new": _catalogs.model()})


def test_a_deprecated_model_past_shutdown_is_retired_everywhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cat = _sunset()  # the suite's clock: 2026-12-06, after the 2026-12-01 shutdown
    lc = cat.model("test-old").lifecycle
    assert lc.status.value == "deprecated" and lc.status_on().value == "retired"
    assert lc.status_on(dt.date(2026, 11, 30)).value == "deprecated"
    assert cat.offer("test-old@fal").status.value == "retired"
    assert "test-old@fal" not in {v.key for v in cat.offers(include_retired=False)}
    assert _route(cat, "test-old").choice is None
    rows = {r.key: r.to_dict()["status"] for r in cat.query()}
    assert rows["test-old@fal"] == "retired"
    html = render_html(cat)
    assert "data-status='retired'" in html and "data-status='deprecated'" not in html
    assert "data-status='deprecated'" in render_html(cat, today=dt.date(2026, 11, 30))


def test_cli_list_and_show_say_retired_past_shutdown(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    # imagen-4 style: the shipped catalog judged on a day after a deprecated model's shutdown
    shipped = Catalog.load(default_catalog_dir())
    dated = [(mid, m.lifecycle.shutdown_on) for mid, m in shipped.models.items()
             if m.lifecycle.status.value == "deprecated" and m.lifecycle.shutdown_on]
    if not dated:
        pytest.fail("the shipped catalog has no deprecated model with a shutdown date to test")
    mid, shutdown = dated[0]
    after = (shutdown + dt.timedelta(days=1)).isoformat()
    monkeypatch.setenv("MODELGLASS_TODAY", after)
    r = CliRunner().invoke(app, ["catalog", "list", "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.output)
    rows = listed if isinstance(listed, list) else listed.get("models", listed.get("rows", []))
    status = {row.get("id") or row.get("model"): row["status"] for row in rows}
    assert status[mid] == "retired"
    r = CliRunner().invoke(app, ["catalog", "show", mid], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "status: retired" in r.output
