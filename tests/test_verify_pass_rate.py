"""`catalog verify` flags offers whose observed outcome-check pass rate contradicts their score."""

from __future__ import annotations

from pathlib import Path

import pytest
from _routing_models import catalog, good, model, offer

from modelglass.catalog._observed import ObservedStore
from modelglass.catalog._pass_rate import wilson_interval
from modelglass.catalog_tools._verify import verify

# speller declares text_rendering 9 (a 0.90 prior); muddle declares 3 (0.30)
CAT = catalog(speller=model(good(text_rendering=9.0), [offer("fal", 0.01)]),
              muddle=model(good(text_rendering=3.0), [offer("fal", 0.01)]))


@pytest.fixture
def store(tmp_path: Path) -> ObservedStore:
    s = ObservedStore(tmp_path / "o.sqlite")
    for key in ("speller@fal", "muddle@fal"):
        s.record_result(key, latency_s=3.0)  # an observed offer (verify skips unobserved ones)
    return s


def record(store: ObservedStore, key: str, passed: int, failed: int, cls: str = "latin",
           unknown: int = 0) -> None:
    for verdict, n in (("pass", passed), ("fail", failed), ("unknown", unknown)):
        for _ in range(n):
            store.record_check(key, "text", verdict, prompt_class=cls)


def finding(report: object, key: str, cls: str = "latin") -> object:
    return next(c for c in report.checks  # type: ignore[attr-defined]
                if c.offer == key and c.check == f"text pass rate ({cls})")


def test_a_pass_rate_far_below_the_declared_score_is_drift(store: ObservedStore) -> None:
    record(store, "speller@fal", passed=8, failed=32)
    report = verify(CAT, store, offers=["speller"])
    f = finding(report, "speller@fal")
    assert (f.status, f.declared, f.observed) == ("drift", 0.9, 0.2)  # type: ignore[attr-defined]
    assert "8 of 40 latin text checks passed" in f.detail  # type: ignore[attr-defined]
    assert "contradicts text_rendering 9.0" in f.detail  # type: ignore[attr-defined]
    assert not report.ok


def test_a_pass_rate_far_above_a_low_score_is_drift_too(store: ObservedStore) -> None:
    record(store, "muddle@fal", passed=38, failed=2)
    assert finding(verify(CAT, store), "muddle@fal").status == "drift"  # type: ignore[attr-defined]


def test_a_rate_that_agrees_is_ok(store: ObservedStore) -> None:
    record(store, "speller@fal", passed=34, failed=6, unknown=30)  # unknown verdicts don't count
    f = finding(verify(CAT, store), "speller@fal")
    assert f.status == "ok" and f.observed == 0.85  # type: ignore[attr-defined]


def test_below_the_minimum_sample_nothing_is_said(store: ObservedStore) -> None:
    record(store, "speller@fal", passed=0, failed=19)
    report = verify(CAT, store)
    assert not [c for c in report.checks if c.check.startswith("text pass rate")]


def test_other_scripts_are_reported_not_flagged(store: ObservedStore) -> None:
    record(store, "speller@fal", passed=2, failed=38, cls="other")
    f = finding(verify(CAT, store), "speller@fal", "other")
    assert f.status == "info" and "contradicts" in f.detail  # type: ignore[attr-defined]


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(8, 40)
    assert round(lo, 3) == 0.105 and round(hi, 3) == 0.348  # 8 of 40: 0.20, 95 % 0.105–0.348
    assert wilson_interval(0, 0) == (0.0, 1.0)
