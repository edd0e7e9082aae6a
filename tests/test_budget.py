"""Budget: reserve before sending, settle after, shared across threads and tasks."""

from __future__ import annotations

import asyncio
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
