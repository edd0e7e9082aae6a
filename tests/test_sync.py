"""`catalog sync` / `catalog diff` against the simulated platform APIs (fal pricing + listing,
OpenAI models, Replicate models). Nothing leaves 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import _sim_fixtures
import pytest
import yaml
from typer.testing import CliRunner

from modelglass.catalog import Catalog, Price, default_catalog_dir
from modelglass.catalog_tools._sync import FAL_PRICING_BATCH, price_from_unit, sync
from modelglass.cli import app
from modelglass.errors import CatalogError
from modelglass.testing import Simulator

TODAY = dt.date(2026, 11, 29)


sim = _sim_fixtures.sim_fixture(scope="function")


@pytest.fixture
def shipped() -> Catalog:
    return Catalog.load(default_catalog_dir())


def _fal_per_mp_offer(cat: Catalog) -> str:
    return next(v.key for v in cat.offers() if v.provider == "fal"
                and v.offer.price.kind.value == "per_megapixel"
                and len([w for w in cat.offers() if w.endpoint == v.endpoint]) == 1)


def test_sync_writes_changed_fal_prices_with_date_and_source(sim: Simulator, shipped: Catalog,
                                                              tmp_path: Path) -> None:
    key = _fal_per_mp_offer(shipped)
    view = shipped.offer(key)
    new = round(view.offer.price.usd_per_megapixel * 1.5, 6)  # within the 3× plausibility factor
    sim.platform.fal_prices[view.endpoint] = (new, "megapixels")
    ov = tmp_path / "overlay.yaml"
    report = sync(overlay=ov, today=TODAY)
    assert report.providers == {"fal": "ok", "openai": "ok", "replicate": "ok"}
    (changed,) = [f for f in report.of("price") if f.offer == key]
    assert changed.after["usd_per_megapixel"] == new
    data = yaml.safe_load(ov.read_text())
    entry = data["offers"][key]
    assert entry["source"] == "sync" and entry["as_of"] == TODAY
    cat = Catalog.load(default_catalog_dir(), overlays=[ov])
    assert cat.offer(key).offer.price.usd_per_megapixel == new
    assert cat.offer(key).offer.price.round_up_megapixels == view.offer.price.round_up_megapixels
    assert cat.offer(key).offer.as_of == TODAY and cat.offer(key).offer.source == "sync"


def test_sync_asks_fal_pricing_at_most_50_ids_a_call_with_the_key(sim: Simulator,
                                                                    tmp_path: Path) -> None:
    sync(overlay=tmp_path / "o.yaml", providers=["fal"])
    calls = [r for r in sim.requests("fal") if r.path == "/v1/models/pricing"]
    assert calls and all(1 <= len(r.query["endpoint_id"].split(",")) <= FAL_PRICING_BATCH
                         for r in calls)
    assert all(r.header("authorization") == "Key sim-fal-key" for r in calls)


def test_unchanged_prices_are_confirmed_with_todays_date(sim: Simulator, shipped: Catalog,
                                                          tmp_path: Path) -> None:
    key = _fal_per_mp_offer(shipped)
    report = sync(overlay=tmp_path / "o.yaml", providers=["fal"], today=TODAY)
    assert key in {f.offer for f in report.of("confirmed")}
    cat = Catalog.load(default_catalog_dir(), overlays=[tmp_path / "o.yaml"])
    assert cat.offer(key).offer.as_of == TODAY
    assert not cat.offer(key).price_stale_on(TODAY)


def test_seen_endpoints_are_listed_not_routed(sim: Simulator, tmp_path: Path) -> None:
    report = sync(overlay=tmp_path / "o.yaml")
    seen = {(f.provider, f.endpoint) for f in report.of("seen")}
    assert ("fal", "fal-ai/sim/undescribed-model") in seen
    assert ("openai", "gpt-image-sim-undescribed") in seen
    assert ("fal", "fal-ai/sim/a-video-model") not in seen  # not text-to-image
    assert ("openai", "gpt-4o") not in seen                 # not an image model
    cat = Catalog.load(default_catalog_dir(), overlays=[tmp_path / "o.yaml"])
    assert "fal-ai/sim/undescribed-model" in cat.overlay.seen["fal"]
    assert all(v.endpoint != "fal-ai/sim/undescribed-model" for v in cat.offers())


def test_models_the_key_cannot_use_or_gone_are_disabled(sim: Simulator, shipped: Catalog,
                                                         tmp_path: Path) -> None:
    openai_view = next(v for v in shipped.offers() if v.provider == "openai")
    sim.platform.openai_models.remove(openai_view.endpoint)
    rep_view = next(v for v in shipped.offers() if v.provider == "replicate")
    del sim.platform.replicate_models[rep_view.endpoint.split(":")[0]]
    report = sync(overlay=tmp_path / "o.yaml")
    gone = {f.offer for f in report.of("unavailable")}
    assert {openai_view.key, rep_view.key} <= gone
    cat = Catalog.load(default_catalog_dir(), overlays=[tmp_path / "o.yaml"])
    assert openai_view.key in cat.disabled and rep_view.key in cat.disabled
    assert openai_view.key not in {v.key for v in cat.offers()}


def test_one_price_for_an_endpoint_priced_per_option_is_not_applied(sim: Simulator,
                                                                     shipped: Catalog,
                                                                     tmp_path: Path) -> None:
    shared: dict[str, list[str]] = {}
    for v in shipped.offers():
        if v.provider == "fal":
            shared.setdefault(v.endpoint, []).append(v.key)
    multi = {e: ks for e, ks in shared.items() if len(ks) > 1}
    report = sync(overlay=tmp_path / "o.yaml", providers=["fal"])
    for endpoint, keys in multi.items():
        if endpoint in sim.platform.fal_prices:
            assert set(keys) <= {f.offer for f in report.of("unmapped")}


def test_a_failing_provider_api_is_reported_and_leaves_its_entries(sim: Simulator,
                                                                    tmp_path: Path) -> None:
    ov = tmp_path / "o.yaml"
    sync(overlay=ov)
    before = yaml.safe_load(ov.read_text())
    sim.platform.fail("openai-models", status=500)
    report = sync(overlay=ov)
    assert report.providers["openai"].startswith("error: HTTP 500")
    after = yaml.safe_load(ov.read_text())
    assert after["seen"]["openai"] == before["seen"]["openai"]


def test_without_keys_providers_are_skipped(sim: Simulator, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "REPLICATE_API_TOKEN", "FAL_KEY"):
        monkeypatch.delenv(name)
    report = sync(overlay=tmp_path / "o.yaml")
    assert report.providers["openai"] == "skipped: no OPENAI_API_KEY"
    assert report.providers["replicate"] == "skipped: no REPLICATE_API_TOKEN"
    assert report.providers["fal"].startswith("ok (listing only")
    assert not any(r.path == "/v1/models/pricing" for r in sim.requests("fal"))


def test_your_own_overlay_entries_are_kept(sim: Simulator, shipped: Catalog,
                                           tmp_path: Path) -> None:
    key = _fal_per_mp_offer(shipped)
    ov = tmp_path / "o.yaml"
    ov.write_text(f"as_of: 2026-11-01\nsource: negotiated\noffers:\n  {key}:\n"
                  "    price: {kind: per_image, usd: 0.001}\n    source: my contract\n")
    sim.platform.fal_prices[shipped.offer(key).endpoint] = (0.004, "megapixels")
    report = sync(overlay=ov)
    assert key in {f.offer for f in report.of("kept")}
    data = yaml.safe_load(ov.read_text())
    assert data["offers"][key]["source"] == "my contract" and data["source"] == "negotiated"
    assert Catalog.load(default_catalog_dir(), overlays=[ov]).offer(key).offer.price.usd == 0.001


def test_sync_never_writes_the_shipped_files(sim: Simulator, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in default_catalog_dir().rglob("*.yaml")}
    sync(overlay=tmp_path / "o.yaml")
    assert before == {p: p.read_bytes() for p in default_catalog_dir().rglob("*.yaml")}


def test_sync_refuses_to_rewrite_a_broken_overlay(sim: Simulator, tmp_path: Path) -> None:
    ov = tmp_path / "o.yaml"
    ov.write_text("offers: [unclosed\n")
    with pytest.raises(CatalogError, match="o.yaml:2: YAML syntax error(.|\n)*fix the overlay first"):
        sync(overlay=ov)


def test_no_key_reaches_the_overlay_or_the_report(sim: Simulator, tmp_path: Path) -> None:
    ov = tmp_path / "o.yaml"
    report = sync(overlay=ov)
    text = ov.read_text() + json.dumps(report.to_dict(), default=str)
    for secret in ("sim-fal-key", "sim-openai-key", "sim-replicate-token"):
        assert secret not in text


# --- mapping a unit price onto the catalog's kinds --------------------------------------------------

def test_price_from_unit_keeps_the_structure() -> None:
    res = Price(kind="per_image_resolution", usd=0.134, resolution_multipliers={"1K": 1, "4K": 2})
    new, _ = price_from_unit(res, 0.1, "image")
    assert new is not None and new.usd == 0.1 and new.resolution_multipliers == {"1K": 1, "4K": 2}
    unknown, note = price_from_unit(Price(kind="unknown"), 0.02, "megapixels")
    assert unknown is not None and unknown.round_up_megapixels and "was unknown" in note


@pytest.mark.parametrize(("price", "unit", "currency", "why"), [
    (1.0, "second", "USD", "billing unit"),
    (1.0, "image", "EUR", "EUR"),
    (float("nan"), "image", "USD", "finite"),
    (-1.0, "image", "USD", "finite"),
])
def test_price_from_unit_refuses_what_it_cannot_map(price: float, unit: str, currency: str,
                                                    why: str) -> None:
    new, note = price_from_unit(Price(kind="per_image", usd=0.01), price, unit, currency)
    assert new is None and why in note


def test_token_priced_offers_are_not_overwritten_by_a_unit_price() -> None:
    tok = Price.model_validate({"kind": "per_token", "usd_per_1m_image_output_tokens": 30,
                                "output_tokens": {"low": {"1024x1024": 200}}})
    new, note = price_from_unit(tok, 0.05, "image")
    assert new is None and "per_token" in note


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_sync_then_diff(sim: Simulator, shipped: Catalog, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    key = _fal_per_mp_offer(shipped)
    sim.platform.fal_prices[shipped.offer(key).endpoint] = (0.0042, "megapixels")
    ov = tmp_path / "user-overlay.yaml"
    monkeypatch.setenv("MODELGLASS_CATALOG_OVERLAY", str(ov))
    runner = CliRunner()
    r = runner.invoke(app, ["catalog", "sync", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["written"] and ov.is_file()
    r = runner.invoke(app, ["catalog", "diff", "--json"])
    assert r.exit_code == 0, r.output
    diff = json.loads(r.output)
    price_changes = [c for c in diff["changes"] if c["offer"] == key and c["what"] == "price"]
    assert price_changes and price_changes[0]["after"]["usd_per_megapixel"] == 0.0042
    assert "fal-ai/sim/undescribed-model" in diff["seen"]["fal"]
    r = runner.invoke(app, ["catalog", "diff"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and key in r.output and "not described" in r.output


def test_cli_sync_exits_1_when_a_provider_api_fails(sim: Simulator, tmp_path: Path) -> None:
    sim.platform.fail("fal-pricing", status=503)
    r = CliRunner().invoke(app, ["catalog", "sync", "--provider", "fal", "--overlay",
                                 str(tmp_path / "o.yaml")], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "error: HTTP 503" in r.output


def test_cli_diff_without_overlay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGLASS_CATALOG_OVERLAY", "")
    r = CliRunner().invoke(app, ["catalog", "diff"])
    assert r.exit_code == 0 and "No overlay" in r.output


def test_replicate_latest_version_is_reported(sim: Simulator, shipped: Catalog,
                                              tmp_path: Path) -> None:
    view = next(v for v in shipped.offers() if v.provider == "replicate")
    ref = view.endpoint.split(":")[0]
    sim.platform.replicate_models[ref] = "f" * 64
    report = sync(overlay=tmp_path / "o.yaml", providers=["replicate"])
    found = next(f for f in report.of("available") if f.offer == view.key)
    assert found.after == "f" * 64
    calls = [r for r in sim.requests("replicate") if r.path == f"/v1/models/{ref}"]
    assert calls and calls[0].header("authorization") == "Bearer sim-replicate-token"


def test_fal_endpoints_missing_from_the_active_listing_are_reported(sim: Simulator,
                                                                   shipped: Catalog,
                                                                   tmp_path: Path) -> None:
    view = next(v for v in shipped.offers() if v.provider == "fal")
    sim.platform.fal_models[view.endpoint]["status"] = "deprecated"
    report = sync(overlay=tmp_path / "o.yaml", providers=["fal"])
    assert view.key in {f.offer for f in report.of("unlisted")}
    assert view.key in {v.key for v in
                        Catalog.load(default_catalog_dir(), overlays=[tmp_path / "o.yaml"]).offers()}


def test_dry_run_writes_nothing_and_prints_a_table(sim: Simulator, tmp_path: Path) -> None:
    ov = tmp_path / "o.yaml"
    r = CliRunner().invoke(app, ["catalog", "sync", "--dry-run", "--overlay", str(ov)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert not ov.exists()
    assert "fal: ok" in r.output and "seen" in r.output and "overlay not written" in r.output


def test_malformed_platform_replies_are_errors_not_crashes(sim: Simulator, shipped: Catalog,
                                                           tmp_path: Path) -> None:
    view = next(v for v in shipped.offers() if v.provider == "fal"
                and v.offer.price.kind.value == "per_image")
    sim.platform.fal_prices[view.endpoint] = (float("nan"), "image")  # type: ignore[assignment]
    report = sync(overlay=tmp_path / "o.yaml", providers=["fal"])
    bad = next(f for f in report.of("unmapped") if f.offer == view.key)
    assert "finite" in bad.detail
    assert view.key not in (yaml.safe_load((tmp_path / "o.yaml").read_text()).get("offers") or {})


def test_a_per_image_unit_keeps_a_resolution_priced_kind(sim: Simulator, shipped: Catalog,
                                                          tmp_path: Path) -> None:
    """fal may state flux-dev's price per image (its docs: "with proportional adjustments for
    resolution"): the per-megapixel offer keeps its kind, and 2048² is still 4 MP."""
    view = shipped.offer("flux-dev@fal")
    assert view.offer.price.kind.value == "per_megapixel"
    sim.platform.fal_prices[view.endpoint] = (0.025, "image")
    ov = tmp_path / "o.yaml"
    report = sync(overlay=ov, providers=["fal"])
    assert "flux-dev@fal" in {f.offer for f in report.of("confirmed") + report.of("price")}
    after = Catalog.load(default_catalog_dir(), overlays=[ov]).offer("flux-dev@fal")
    assert after.offer.price.kind.value == "per_megapixel"
    assert after.estimate_cost(2048, 2048, 1).usd == pytest.approx(0.10)
    res = Price(kind="per_image_resolution", usd=0.134, resolution_multipliers={"1K": 1, "4K": 2})
    new, note = price_from_unit(res, 0.1, "megapixels")
    assert new is not None and new.kind.value == "per_image_resolution" and "base price" in note
    flat, note = price_from_unit(Price(kind="per_image", usd=0.03), 0.03, "megapixels")
    assert flat is not None and flat.kind.value == "per_megapixel" and "unit changed" in note
