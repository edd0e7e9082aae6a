"""Quotes against the bill (issue 17, item 5): each provider's own account of a job, compared
with the quote per offer; `catalog verify --simulate` detects a scripted price change on each
provider; "no data" is said as such, never "no drift"."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.catalog._bills import bill_summary
from modelglass.catalog._observed import ObservedStore
from modelglass.catalog_tools._fal_bills import fetch_fal_bills
from modelglass.catalog_tools._verify import verify
from modelglass.cli import app
from modelglass.testing import simulate, simulate_verify
from modelglass.testing._verify_sim import SIMULATED_OFFERS


def _bills(report: mg.catalog_tools._verify.VerifyReport) -> dict[str, tuple[str, object]]:
    return {c.offer: (c.status, c.observed) for c in report.checks if c.check == "bill"}


def test_an_unchanged_price_bills_what_was_quoted_on_every_provider() -> None:
    bills = _bills(simulate_verify())
    assert set(bills) == {k for k, _ in SIMULATED_OFFERS.values()}
    assert all(status == "ok" and ratio == pytest.approx(1.0, abs=0.01)
               for status, ratio in bills.values()), bills


@pytest.mark.parametrize("provider", ["fal", "openai", "replicate"])
@pytest.mark.parametrize("factor", [1.2, 0.9])
def test_a_scripted_price_change_is_detected_on_each_provider(provider: str,
                                                              factor: float) -> None:
    report = simulate_verify({provider: factor})
    bills = _bills(report)
    changed = SIMULATED_OFFERS[provider][0]
    status, ratio = bills[changed]
    assert status == "drift" and ratio == pytest.approx(factor, rel=0.01)
    assert all(s == "ok" for k, (s, _) in bills.items() if k != changed), bills
    assert not report.ok


def test_a_change_within_5_percent_is_not_drift() -> None:
    status, ratio = _bills(simulate_verify({"fal": 1.03}))[SIMULATED_OFFERS["fal"][0]]
    assert status == "ok" and ratio == pytest.approx(1.03, rel=0.01)


def test_cli_verify_simulate_exits_1_on_a_scripted_change() -> None:
    r = CliRunner().invoke(app, ["catalog", "verify", "--simulate", "--simulate-change",
                                 "openai=1.25"], env={"COLUMNS": "200"})
    assert r.exit_code == 1, r.output
    assert "1 drift(s)" in r.output and "openai bills ×1.25" in r.output
    r = CliRunner().invoke(app, ["catalog", "verify", "--simulate", "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["catalog", "verify", "--simulate", "--simulate-change", "fal"])
    assert r.exit_code == 2 and "PROVIDER=FACTOR" in r.output


def test_no_observations_say_no_data_never_no_drift(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(tmp_path / "empty.sqlite"))
    r = CliRunner().invoke(app, ["catalog", "verify"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "no data" in r.output and "no drift" not in r.output.replace('"no drift"', "")


def test_fal_bills_wait_for_a_key_and_are_read_from_billing_events(tmp_path: Path) -> None:
    store = ObservedStore(tmp_path / "o.sqlite")
    cat = mg.Catalog.default()
    with simulate() as sim:
        with mg.Client(catalog=cat, observed=store) as client:
            client.generate("a fox", model="flux-dev", provider="fal", size="1024x1024",
                            quality="draft", max_cost_usd=1.0)
        assert bill_summary(store, "flux-dev@fal").pending == 1
        check = next(c for c in verify(cat, store, offers=["flux-dev@fal"]).checks
                     if c.check == "bill")
        assert check.status == "no data" and "pending" in check.detail
        assert "FAL_ADMIN_KEY" in fetch_fal_bills(store, {})
        note = fetch_fal_bills(store, dict(sim.env) | {"FAL_KEY": "sim-fal-key"})
        assert "1 of 1" in note
        calls = [r for r in sim.requests("fal") if r.path == "/v1/models/billing-events"]
        assert calls and calls[0].header("authorization") == "Key sim-fal-key"
    s = bill_summary(store, "flux-dev@fal")
    assert (s.pending, s.n, s.ratio) == (0, 1, pytest.approx(1.0))


def test_a_failing_billing_api_is_said_not_raised(tmp_path: Path) -> None:
    store = ObservedStore(tmp_path / "o.sqlite")
    with simulate() as sim:
        with mg.Client(observed=store) as client:
            client.generate("a fox", model="flux-dev", provider="fal", size="1024x1024",
                            quality="draft", max_cost_usd=1.0)
        sim.platform.fail("fal-billing", status=500)
        note = fetch_fal_bills(store, dict(sim.env) | {"FAL_KEY": "sim-fal-key"})
    assert "HTTP 500" in note
    assert bill_summary(store, "flux-dev@fal").pending == 1
