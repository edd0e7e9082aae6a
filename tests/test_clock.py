"""The clock: lifecycles and staleness read "today" from one place, and it can be pinned."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import _catalogs
import pytest

import modelglass as mg
from modelglass import _clock
from modelglass.catalog._schema import Lifecycle

LIB = Path(mg.__file__).parent


def _sunset_catalog() -> mg.Catalog:
    """Two test models: one deprecated with a shutdown date, one active for good."""
    gone = _catalogs.model(lifecycle=Lifecycle(status="deprecated", shutdown_on=dt.date(2027, 3, 1),
                                               replacement="test-new"))
    return _catalogs.catalog({"test-old": gone, "test-new": _catalogs.model()})


def test_suite_pins_the_clock_in_conftest() -> None:
    assert _clock.today() == dt.date.fromisoformat(os.environ["MODELGLASS_TODAY"])


def test_env_pins_today_and_a_pinned_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGLASS_TODAY", "2031-02-03")
    assert _clock.today() == dt.date(2031, 2, 3)
    assert _clock.today(dt.date(2020, 1, 1)) == dt.date(2020, 1, 1)


def test_without_a_pin_today_is_the_system_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELGLASS_TODAY")
    assert _clock.today() == dt.date.today()


@pytest.mark.parametrize("bad", ["tomorrow", "2026-13-01", "06/12/2026"])
def test_a_malformed_env_date_is_an_invalid_request(monkeypatch: pytest.MonkeyPatch,
                                                    bad: str) -> None:
    monkeypatch.setenv("MODELGLASS_TODAY", bad)
    with pytest.raises(mg.InvalidRequest, match="YYYY-MM-DD") as exc:
        _clock.today()
    assert exc.value.field == "MODELGLASS_TODAY"


def test_client_today_decides_which_deprecated_model_has_shut_down() -> None:
    cat = _sunset_catalog()
    req = mg.ImageRequest(prompt="a fox", quality="draft", model="test-old")
    before = mg.Client(catalog=cat, available=["fal"], today="2027-02-28").route(req)
    assert before.choice is not None and before.choice.offer.model_id == "test-old"
    after = mg.Client(catalog=cat, available=["fal"], today=dt.date(2027, 3, 1)).route(req)
    assert after.choice is None
    assert any("shutdown date passed as of 2027-03-01" in r.reason for r in after.rejected)


def test_env_clock_moves_routing_too(monkeypatch: pytest.MonkeyPatch) -> None:
    cat = _sunset_catalog()
    req = mg.ImageRequest(prompt="a fox", quality="draft", model="test-old")
    monkeypatch.setenv("MODELGLASS_TODAY", "2027-03-02")
    assert mg.Client(catalog=cat, available=["fal"]).route(req).choice is None
    monkeypatch.setenv("MODELGLASS_TODAY", "2027-01-02")
    assert mg.Client(catalog=cat, available=["fal"]).route(req).choice is not None


def test_client_refuses_a_malformed_today() -> None:
    with pytest.raises(mg.InvalidRequest) as exc:
        mg.Client(catalog=_catalogs.catalog(), today="next week")
    assert exc.value.field == "today"


def test_price_age_is_counted_from_the_pinned_day(monkeypatch: pytest.MonkeyPatch) -> None:
    view = _catalogs.catalog().offer("test-sd@fal")  # as_of 2026-11-01
    monkeypatch.setenv("MODELGLASS_TODAY", "2026-11-11")
    assert view.price_age_days() == 10 and not view.price_stale
    monkeypatch.setenv("MODELGLASS_TODAY", "2027-11-11")
    assert view.price_stale


def test_library_reads_the_date_only_through_the_clock() -> None:
    """A direct date.today() / datetime.now() for lifecycle or staleness would escape the pin."""
    offenders = []
    for path in LIB.rglob("*.py"):
        if path.name == "_clock.py" or "testing" in path.parts:
            continue  # the simulators stamp wire timestamps with the real time, as the APIs do
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bdate\.today\(\)|\bdatetime\.now\(", line):
                offenders.append(f"{path.relative_to(LIB)}:{n}: {line.strip()}")
    assert offenders == []


def test_cli_honours_the_env_clock(tmp_path: Path) -> None:
    """`modelglass route` on the shipped catalog: a model shut down on 2026-12-01 is routed the
    day before and refused on the day, by MODELGLASS_TODAY alone."""
    def pinned(day: str) -> dict:
        out = subprocess.run(
            [str(Path(sys.executable).parent / "modelglass"), "route", "a fox", "--quality",
             "thumbnail", "--model", "gpt-image-1-mini", "--assume-available", "openai", "--json"],
            check=False, capture_output=True, text=True,
            env={**os.environ, "MODELGLASS_TODAY": day}, timeout=120)
        return json.loads(out.stdout)
    assert pinned("2026-11-30")["choice"]["model"] == "gpt-image-1-mini"
    refused = pinned("2026-12-01")
    assert refused["choice"] is None
    assert any("passed as of 2026-12-01" in r["reason"] for r in refused["rejected"])
