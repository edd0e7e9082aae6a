"""Budget: reserve before sending, settle after, shared across threads and tasks."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

import modelglass as mg
from modelglass.budget import Budget


def test_budget_is_exported_lazily_from_the_package() -> None:
    assert mg.Budget is Budget


def test_reserve_then_settle_moves_money_from_reserved_to_spent() -> None:
    b = Budget(1.0)
    r = b.reserve(0.25, label="flux-dev@fal")
    assert b.reserved == pytest.approx(0.25)
    assert b.remaining == pytest.approx(0.75)
    b.settle(r, 0.2)
    assert b.reserved == 0
    assert b.spent == pytest.approx(0.2)
    assert b.remaining == pytest.approx(0.8)


def test_settle_without_an_actual_cost_spends_the_amount_held() -> None:
    b = Budget(1.0)
    b.settle(b.reserve(0.3), None)
    assert b.spent == pytest.approx(0.3)


def test_release_gives_the_reservation_back() -> None:
    b = Budget(1.0)
    r = b.reserve(0.6)
    b.release(r)
    assert b.spent == 0 and b.reserved == 0 and b.remaining == pytest.approx(1.0)


def test_reservation_past_the_limit_is_refused_and_holds_nothing() -> None:
    b = Budget(0.10)
    b.reserve(0.08)
    with pytest.raises(mg.BudgetExceeded, match=r"\$0\.0200 left") as info:
        b.reserve(0.05, label="gpt-image-2@openai")
    assert info.value.estimate_usd == 0.05 and info.value.limit_usd == 0.10
    assert "gpt-image-2@openai" in str(info.value)
    assert b.reserved == pytest.approx(0.08)


def test_an_unknown_price_cannot_be_reserved() -> None:
    with pytest.raises(mg.BudgetExceeded, match="unknown"):
        Budget(100).reserve(None)


def test_a_limit_met_exactly_is_allowed() -> None:
    b = Budget(0.3)
    for _ in range(3):
        b.settle(b.reserve(0.1), 0.1)
    assert b.remaining == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(mg.BudgetExceeded):
        b.reserve(0.01)


def test_settling_twice_is_an_error() -> None:
    b = Budget(1)
    r = b.reserve(0.1)
    b.release(r)
    with pytest.raises(ValueError, match="not held"):
        b.settle(r, 0.1)


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_a_negative_or_nan_limit_is_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        Budget(bad)


def test_threads_never_overshoot_the_limit_together() -> None:
    b = Budget(1.0)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            try:
                r = b.reserve(0.01)
            except mg.BudgetExceeded:
                continue
            with lock:
                granted.append(r.id)
            b.settle(r, 0.01)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100
    assert b.spent == pytest.approx(1.0)


def test_tasks_share_one_budget() -> None:
    b = Budget(0.05)

    async def job() -> bool:
        try:
            r = b.reserve(0.01)
        except mg.BudgetExceeded:
            return False
        await asyncio.sleep(0.001)
        b.settle(r, 0.01)
        return True

    async def main() -> list[bool]:
        return await asyncio.gather(*(job() for _ in range(20)))

    assert sum(asyncio.run(main())) == 5


# -- issue 8, item 2: every number checked; spend never passes the limit --------------------------

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelglass.budget import amount_to_hold

BAD = [float("nan"), float("inf"), -float("inf"), -0.01, "0.1", True, None]


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True])
def test_a_bad_limit_is_a_typed_error_naming_the_field(bad: object) -> None:
    with pytest.raises(mg.InvalidRequest, match="limit_usd") as info:
        Budget(bad)  # type: ignore[arg-type]
    assert info.value.field == "limit_usd"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.01, "0.1", True])
def test_a_poisoned_estimate_is_refused_and_holds_nothing(bad: object) -> None:
    b = Budget(1.0)
    with pytest.raises(mg.BudgetExceeded, match="not a finite number"):
        b.reserve(bad, label="x@y")  # type: ignore[arg-type]
    assert b.reserved == 0 and b.spent == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -5.0, "1"])
def test_a_poisoned_actual_cost_is_not_trusted(bad: object,
                                               caplog: pytest.LogCaptureFixture) -> None:
    b = Budget(1.0)
    b.settle(b.reserve(0.2, label="x@y"), bad)  # type: ignore[arg-type]
    assert b.spent == pytest.approx(0.2)  # the amount held, never NaN or negative
    assert "not a number of USD" in caplog.text
    b.reserve(0.8)  # the limit still works after it
    with pytest.raises(mg.BudgetExceeded):
        b.reserve(0.01)


def test_an_actual_above_the_reservation_is_recorded_flagged_and_blocks_new_reservations(
        caplog: pytest.LogCaptureFixture) -> None:
    b = Budget(0.10)
    b.settle(b.reserve(0.05, label="gpt-image-2@openai"), 0.135)
    assert b.spent == pytest.approx(0.135) and b.over_limit
    assert b.overruns[0].held_usd == 0.05 and b.overruns[0].actual_usd == 0.135
    assert "more than the $0.0500 it reserved" in caplog.text
    with pytest.raises(mg.BudgetExceeded, match="passed the limit"):
        b.reserve(0.0)


def test_the_upper_bound_is_what_is_held() -> None:
    from types import SimpleNamespace

    assert amount_to_hold(SimpleNamespace(usd=0.04, max_usd=0.09)) == 0.09
    assert amount_to_hold(SimpleNamespace(usd=0.04, max_usd=None)) == 0.04
    assert amount_to_hold(SimpleNamespace(usd=0.04)) == 0.04
    assert amount_to_hold(SimpleNamespace(usd=None, max_usd=None)) is None
    assert amount_to_hold(SimpleNamespace(usd=0.04, max_usd=float("nan"))) == 0.04


jobs = st.lists(st.tuples(st.floats(0, 0.5), st.floats(0, 1)), min_size=1, max_size=40)


def _run_job(b: Budget, upper: float, fraction: float) -> None:
    try:
        r = b.reserve(upper)
    except mg.BudgetExceeded:
        return
    if fraction < 0.2:
        b.release(r)  # failed before billing
    else:
        b.settle(r, upper * fraction)  # actual <= the upper bound held


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.floats(0, 2), work=jobs)
def test_threads_spend_never_exceeds_the_limit(limit: float, work: list[tuple[float, float]]) -> None:
    b = Budget(limit)
    threads = [threading.Thread(target=_run_job, args=(b, upper, frac)) for upper, frac in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert b.spent <= limit + 1e-9 and b.reserved == 0 and not b.over_limit


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.floats(0, 2), work=jobs)
def test_tasks_spend_never_exceeds_the_limit(limit: float, work: list[tuple[float, float]]) -> None:
    b = Budget(limit)

    async def job(upper: float, fraction: float) -> None:
        try:
            r = b.reserve(upper)
        except mg.BudgetExceeded:
            return
        await asyncio.sleep(0)
        b.settle(r, upper * fraction)

    async def main() -> None:
        await asyncio.gather(*(job(u, f) for u, f in work))

    asyncio.run(main())
    assert b.spent <= limit + 1e-9 and b.reserved == 0


@settings(max_examples=25, deadline=None)
@given(limit=st.floats(0, 2), work=jobs, bad=st.sampled_from(BAD))
def test_poisoned_actuals_in_a_mix_never_make_spend_nan_or_pass_the_limit(
        limit: float, work: list[tuple[float, float]], bad: object) -> None:
    b = Budget(limit)
    for i, (upper, fraction) in enumerate(work):
        try:
            r = b.reserve(upper)
        except mg.BudgetExceeded:
            continue
        b.settle(r, bad if i % 3 == 0 else upper * fraction)  # type: ignore[arg-type]
    assert math.isfinite(b.spent) and 0 <= b.spent <= limit + 1e-9


# -- the scenario, end to end on the simulator ---------------------------------------------

def test_threads_of_long_prompts_on_a_token_priced_model_never_pass_the_budget() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from modelglass.testing import simulate

    prompt = ("a lighthouse at dusk, " * 1500)[:32000]  # 8,000 text tokens, billed per call
    budget = Budget(0.40)  # the reservation is the upper bound (about $0.17 here), not $0.046
    with simulate() as sim, mg.Client(budget=budget, observed=False) as client:
        def job(_: int) -> float | None:
            try:
                return client.generate(prompt, model="gpt-image-2", provider="openai",
                                       quality="thumbnail", max_cost_usd=1.0).cost_usd
            except mg.errors.ModelglassError:
                return None

        with ThreadPoolExecutor(4) as pool:
            costs = [c for c in pool.map(job, range(8)) if c is not None]
        billed = sim.billed("openai")
    assert budget.spent <= 0.40 + 1e-9, budget
    assert not budget.overruns and budget.reserved == 0
    assert len(costs) == billed  # every billed generation came back, and was counted
    assert sum(costs) == pytest.approx(budget.spent)
    assert billed >= 1  # the budget let at least one through: the test is not vacuous
