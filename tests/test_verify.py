"""`catalog verify`: declared vs observed (offline), and `--live` probes under a hard spend cap
against the simulators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _catalogs import AS_OF, catalog, model
from typer.testing import CliRunner

from modelglass.catalog import Catalog
from modelglass.catalog._observed import ObservedStore, request_fingerprint
from modelglass.catalog_tools._verify import live_probe, verify
from modelglass.cli import app
from modelglass.testing import simulate


def _cat(seed: bool = True) -> Catalog:
    offer = {"provider": "fal", "endpoint": "fal-ai/test", "as_of": AS_OF, "source": "T",
             "price": {"kind": "per_image", "usd": 0.01}, "latency": {"p50_s": 4.0}}
    controls = {"negative_prompt": "native", "seed": seed, "max_images_per_call": 4,
                "guidance": {"kind": "true-cfg", "min": 1, "max": 20, "default": 7},
                "steps": {"min": 1, "max": 50, "default": 30}}
    return catalog({"t": model(offers=[offer], controls=controls)})


@pytest.fixture
def store(tmp_path: Path) -> ObservedStore:
    return ObservedStore(tmp_path / "o.sqlite")


def _by_check(report: object, check: str) -> object:
    return next(c for c in report.checks if c.check == check)  # type: ignore[attr-defined]


def test_matching_observations_are_ok(store: ObservedStore) -> None:
    for lat in (3.5, 4.0, 4.6):
        store.record_result("t@fal", latency_s=lat, cost_usd=0.01, cost_reported=True,
                            estimated_usd=0.01, width=1024, height=1024,
                            requested_size="1024x1024")
    report = verify(_cat(), store)
    assert report.ok, report.checks
    assert {c.check: c.status for c in report.checks} == {
        "price": "ok", "latency": "ok", "sizes": "ok", "bill": "no data"}


def test_price_drift_from_provider_reported_costs(store: ObservedStore) -> None:
    store.record_result("t@fal", cost_usd=0.015, cost_reported=True, estimated_usd=0.01)
    store.record_result("t@fal", cost_usd=0.5, cost_reported=False, estimated_usd=0.01)  # estimate
    report = verify(_cat(), store)
    price = _by_check(report, "price")
    assert (price.status, price.observed) == ("drift", 1.5)  # type: ignore[attr-defined]
    assert not report.ok


def test_latency_drift_either_way(store: ObservedStore) -> None:
    for _ in range(3):
        store.record_result("t@fal", latency_s=12.0)
    lat = _by_check(verify(_cat(), store), "latency")
    assert lat.status == "drift" and lat.declared == 4.0  # type: ignore[attr-defined]
    store.forget()
    for _ in range(3):
        store.record_result("t@fal", latency_s=1.0)
    assert _by_check(verify(_cat(), store), "latency").status == "drift"  # type: ignore[attr-defined]


def test_failure_rate_drift_needs_enough_events(store: ObservedStore) -> None:
    store.record_result("t@fal")
    store.record_failure("t@fal", "ProviderError")
    assert not any(c.check == "failures" for c in verify(_cat(), store).checks)
    for _ in range(3):
        store.record_failure("t@fal", "RateLimited")
    fails = _by_check(verify(_cat(), store), "failures")
    assert fails.status == "drift" and "RateLimited ×3" in fails.detail  # type: ignore[attr-defined]


def test_size_and_seed_drift(store: ObservedStore) -> None:
    fp = request_fingerprint(prompt="x")
    store.record_result("t@fal", width=1024, height=1024, requested_size="1000x1000",
                        seeds=[5], sha256=["a"], fingerprint=fp)
    store.record_result("t@fal", width=1024, height=1024, requested_size="1000x1000",
                        seeds=[5], sha256=["b"], fingerprint=fp)
    report = verify(_cat(seed=True), store)
    assert _by_check(report, "sizes").status == "drift"  # type: ignore[attr-defined]
    assert _by_check(report, "seed").status == "drift"  # type: ignore[attr-defined]
    # An offer that does not declare seeds is not in drift for it.
    assert _by_check(verify(_cat(seed=False), store), "seed").status == "ok"  # type: ignore[attr-defined]


def test_offers_never_observed_have_no_data_not_drift(store: ObservedStore) -> None:
    report = verify(_cat(), store)
    assert report.ok and [c.status for c in report.checks] == ["no data", "no data"]
    assert not report.compared  # nothing was compared: no data, not "no drift"


# --- live probes ----------------------------------------------------------------------------------

def _cheap_fal_model() -> tuple[str, float]:
    cat = Catalog.default()
    best = min((v for v in cat.offers() if v.provider == "fal"
                and v.offer.price.kind.value == "per_image" and v.controls.seed
                and v.model.lifecycle.status.value == "active"),
               key=lambda v: v.offer.price.usd or 1.0)
    return best.model_id, float(best.offer.price.usd or 0)


def test_live_probe_stays_under_the_spend_cap_and_records_observations(store: ObservedStore) -> None:
    model_id, each = _cheap_fal_model()
    cap = each * 1.5  # room for one probe, not two
    with simulate() as sim:
        report = live_probe(store=store, max_spend_usd=cap, offers=[model_id],
                            providers=["fal"])
        billed = sim.billed("fal")
    ran = [p for p in report.probes if p.sha256]
    skipped = [p for p in report.probes if p.skipped]
    assert len(ran) == 1 and billed == 1
    assert skipped and "does not fit" in (skipped[0].skipped or "")
    assert report.spent_usd <= cap + 1e-12
    assert store.observations(ran[0].offer).results == 1


def test_live_probe_checks_seed_and_controls(store: ObservedStore) -> None:
    model_id, _ = _cheap_fal_model()
    with simulate():
        report = live_probe(store=store, max_spend_usd=1.0, offers=[model_id],
                            providers=["fal"])
    purposes = [p.purpose for p in report.probes if p.sha256]
    assert purposes[:2] == ["base", "same seed"]
    seed = [c for c in report.checks if c.check == "seed"]
    assert seed and seed[0].status == "ok"   # the simulator renders by seed
    for control in ("guidance", "steps"):    # the simulator ignores both: reported as drift
        if f"other {control}" in purposes:
            ctl = next(c for c in report.checks if c.check == f"controls: {control}")
            assert ctl.status == "drift" and f"{control} appears ignored" in ctl.detail


def test_live_probe_never_sends_an_unbounded_request(store: ObservedStore) -> None:
    offer = {"provider": "fal", "endpoint": "fal-ai/test", "as_of": AS_OF, "source": "T",
             "price": {"kind": "unknown"}}
    cat = catalog({"t": model(offers=[offer])})
    with simulate() as sim:
        report = live_probe(cat, store, max_spend_usd=10.0)
        assert sim.billed("fal") == 0
    assert report.probes[0].skipped == "price unknown: the spend cannot be bounded"
    assert report.spent_usd == 0


def test_cli_verify_live_needs_a_spend_cap() -> None:
    r = CliRunner().invoke(app, ["catalog", "verify", "--live"])
    assert r.exit_code == 2 and "--max-spend" in r.output


def test_cli_verify_exits_1_on_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGLASS_OBSERVE", "1")
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(tmp_path / "o.sqlite"))
    key = Catalog.default().offers()[0].key
    runner = CliRunner()
    r = runner.invoke(app, ["catalog", "verify", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ok"]
    store = ObservedStore.default()
    store.record_result(key, cost_usd=9.0, cost_reported=True, estimated_usd=1.0)
    r = runner.invoke(app, ["catalog", "verify", "--offer", key], env={"COLUMNS": "200"})
    assert r.exit_code == 1 and "drift" in r.output and key in r.output


def test_cli_verify_live_against_the_simulators(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGLASS_OBSERVE", "1")
    model_id, each = _cheap_fal_model()
    with simulate():
        r = CliRunner().invoke(app, ["catalog", "verify", "--live", "--max-spend", str(each * 1.5),
                                     "--offer", model_id, "--provider", "fal", "--json"])
    data = json.loads(r.output)
    assert data["spent_usd"] <= each * 1.5 + 1e-12
    assert [p["purpose"] for p in data["probes"] if p["sha256"]] == ["base"]
    assert r.exit_code == (1 if not data["ok"] else 0)
