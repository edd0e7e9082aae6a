"""Provider health: repeated failures cool a provider (or one offer) down for a while; routing
skips it and says so; one board per process, safe under threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import _sim_fixtures
import pytest
from _routing_models import TODAY, catalog, good, model, offer
from hypothesis import given, settings
from hypothesis import strategies as st

import modelglass as mg
from modelglass.errors import ContentRejected, InvalidRequest, ProviderError, RateLimited
from modelglass.request import ImageRequest
from modelglass.routing import HealthBoard, HealthRules, Policy, route

RULES = HealthRules(failures=3, window_s=60, cooldown_s=120)
CAT = catalog(a=model(good(), [offer("fal", 0.01), offer("replicate", 0.012)]),
              b=model(good(prompt_adherence=7), [offer("fal", 0.01)]))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(clock: Clock) -> HealthBoard:
    return HealthBoard(clock=clock)


def fail(board: HealthBoard, key: str = "a@fal", provider: str = "fal", n: int = 1) -> None:
    for _ in range(n):
        board.record(key, provider, ok=False, error="ProviderError")


def decide(board: HealthBoard, policy: Policy | None = None) -> Any:
    return route(ImageRequest(prompt="p", quality="hero"), CAT, today=TODAY, health=board,
                 policy=policy)


def test_three_failures_in_the_window_cool_the_provider_down(board: HealthBoard,
                                                             clock: Clock) -> None:
    fail(board, n=2)
    assert board.cooling("a@fal", "fal", RULES) is None
    clock.now += 10
    fail(board)
    why = board.cooling("b@fal", "fal", RULES)  # provider scope: every fal offer
    assert why == ("provider 'fal' is cooling down: 3 failed attempt(s) within 60 s (last: "
                   "ProviderError); tried again in 120 s (policy health: failures 3, window_s 60, "
                   "cooldown_s 120)")
    d = decide(board)
    assert [c.key for c in d.ranked] == ["a@replicate"]
    assert {r.offer_key for r in d.rejected_by("health")} == {"a@fal", "b@fal"}
    text = d.explain()
    assert "health (2):" in text and "provider 'fal' is cooling down" in text


def test_failures_spread_wider_than_the_window_do_not(board: HealthBoard, clock: Clock) -> None:
    for _ in range(5):
        fail(board)
        clock.now += 31  # never 3 within 60 s
    assert board.cooling("a@fal", "fal", RULES) is None


def test_the_cooldown_ends(board: HealthBoard, clock: Clock) -> None:
    fail(board, n=3)
    clock.now += 119
    assert board.cooling("a@fal", "fal", RULES) is not None
    assert "tried again in 1 s" in board.cooling("a@fal", "fal", RULES)  # type: ignore[operator]
    clock.now += 1
    assert board.cooling("a@fal", "fal", RULES) is None
    assert decide(board).choice.key == "a@fal"


def test_a_success_clears_the_failures(board: HealthBoard) -> None:
    fail(board, n=2)
    board.record("a@fal", "fal", ok=True)
    fail(board)
    assert board.cooling("a@fal", "fal", RULES) is None


def test_offer_scope_cools_only_that_offer(board: HealthBoard) -> None:
    fail(board, "a@fal", n=3)
    rules = HealthRules(scope="offer")
    assert board.cooling("a@fal", "fal", rules) is not None
    assert board.cooling("b@fal", "fal", rules) is None
    d = decide(board, Policy({"health": {"scope": "offer"}}))
    assert [r.offer_key for r in d.rejected_by("health")] == ["a@fal"]


def test_thresholds_come_from_the_policy_and_health_can_be_off(board: HealthBoard) -> None:
    fail(board, n=3)
    assert decide(board, Policy({"health": {"failures": 4}})).rejected_by("health") == []
    assert decide(board, Policy({"health": {"enabled": False}})).rejected_by("health") == []
    assert len(decide(board).rejected_by("health")) == 2


def test_only_provider_failures_count(board: HealthBoard) -> None:
    for exc in (ContentRejected("no"), InvalidRequest("bad"), ValueError("x")):
        for _ in range(5):
            board.observe("a@fal", "fal", exc)
    assert board.cooling("a@fal", "fal", RULES) is None
    for _ in range(3):
        board.observe("a@fal", "fal", RateLimited("slow down", retry_after=1))
    assert board.cooling("a@fal", "fal", RULES) is not None


def test_when_everything_is_cooling_the_error_says_to_wait(board: HealthBoard) -> None:
    fail(board, n=3)
    fail(board, "a@replicate", "replicate", n=3)
    d = decide(board)
    with pytest.raises(mg.NoEligibleModel, match="wait for the cooldown"):
        d.require()


def test_the_shared_board_is_one_per_process() -> None:
    assert HealthBoard.shared() is HealthBoard.shared()
    c1, c2 = mg.Client(catalog=CAT), mg.Client(catalog=CAT)
    assert c1.health is c2.health is HealthBoard.shared()


# -- concurrency --------------------------------------------------------------------------------------
def test_concurrent_failures_from_threads_are_all_counted(board: HealthBoard) -> None:
    threads, each = 16, 10
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            for _ in range(each):
                board.record("a@fal", "fal", ok=False, error="ProviderError")
                board.cooling("a@fal", "fal", RULES)  # reads interleave with writes
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    for t in ts:
        t.join()
    assert errors == []
    cd = board.cooldown("provider:fal", HealthRules(failures=threads * each, window_s=60))
    assert cd is not None and cd.failures == threads * each


@pytest.mark.parametrize("failures", [2, 3])
def test_the_threshold_holds_exactly_under_concurrent_threads(board: HealthBoard,
                                                              failures: int) -> None:
    start = threading.Barrier(failures)

    def worker() -> None:
        start.wait()
        board.record("a@fal", "fal", ok=False, error="ProviderError")

    ts = [threading.Thread(target=worker) for _ in range(failures)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert (board.cooling("a@fal", "fal", RULES) is not None) is (failures >= 3)


def test_concurrent_asyncio_tasks_share_the_board_while_routing(board: HealthBoard) -> None:
    async def attempt(i: int) -> list[str]:
        for _ in range(i):  # task i fails on the loop's i-th round: a known interleaving
            await asyncio.sleep(0)
        board.observe("a@fal", "fal", ProviderError(f"HTTP 503 #{i}"))
        return [r.offer_key for r in decide(board).rejected_by("health")]

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(attempt(i) for i in range(50)))

    seen = asyncio.run(main())
    # Every route after the third failure saw fal cooling; none before it did.
    assert seen[-1] == ["a@fal", "b@fal"]
    cooled = [bool(s) for s in seen]
    assert cooled == sorted(cooled) and cooled.count(False) == 2


# -- the client feeds it -----------------------------------------------------------------------------
sim = _sim_fixtures.sim_fixture(scope="function")


def test_a_clients_failed_attempts_cool_the_provider_for_every_client(sim: Any) -> None:
    from modelglass.providers.fal import FalProvider
    from modelglass.providers.replicate import ReplicateProvider

    def client() -> mg.Client:
        return mg.Client(available=["fal", "replicate"], max_retries=2, retry_backoff_s=0.01,
                         deadline_s=20,
                         providers={"fal": FalProvider(poll_interval_s=0.01,
                                                       poll_retry_backoff_s=0.01),
                                    "replicate": ReplicateProvider(poll_interval_s=0.01,
                                                                   poll_retry_backoff_s=0.01)})

    sim.fail("fal", status=500, times=50)
    with client() as first:
        r = first.generate("a red bicycle", quality="draft")
    assert r.provider == "replicate"
    fal_tries = [a for a in r.attempts if a.provider == "fal"]
    assert len(fal_tries) == 3 and not any(a.ok for a in fal_tries)
    submitted = len(sim.requests("fal", stage="submit"))
    with client() as second:  # another client of the same process
        d = second.route("a red bicycle", quality="draft")
        assert d.rejected_by("health") and all(c.provider != "fal" for c in d.ranked)
        assert "provider 'fal' is cooling down: 3 failed attempt(s)" in d.explain()
        r2 = second.generate("a red bicycle", quality="draft")
    assert r2.provider == "replicate" and [a.provider for a in r2.attempts] == ["replicate"]
    assert len(sim.requests("fal", stage="submit")) == submitted  # nothing more sent to fal


def test_concurrent_async_jobs_failing_on_one_provider_cool_it_for_the_next(sim: Any) -> None:
    from modelglass.providers.fal import FalProvider
    from modelglass.providers.replicate import ReplicateProvider

    sim.fail("fal", status=503, times=100)

    async def main() -> tuple[list[Any], Any]:
        async with mg.AsyncClient(
                available=["fal", "replicate"], max_retries=0, retry_backoff_s=0.01,
                deadline_s=20,
                providers={"fal": FalProvider(poll_interval_s=0.01, poll_retry_backoff_s=0.01),
                           "replicate": ReplicateProvider(poll_interval_s=0.01,
                                                          poll_retry_backoff_s=0.01)}) as c:
            results = await asyncio.gather(*(c.generate(f"a red bicycle {i}", quality="draft")
                                             for i in range(6)))
            return list(results), c.route("a red bicycle", quality="draft")

    results, after = asyncio.run(main())
    # Jobs routed before the third failure tried fal once and fell back; later ones skipped it.
    assert all(r.provider == "replicate" for r in results)
    assert 3 <= sum(a.provider == "fal" for r in results for a in r.attempts) <= 6
    assert after.rejected_by("health") and all(c.provider != "fal" for c in after.ranked)


@settings(max_examples=150, deadline=None)
@given(gaps=st.lists(st.floats(min_value=0, max_value=100), min_size=0, max_size=12),
       after=st.floats(min_value=0, max_value=300), failures=st.integers(1, 4),
       window=st.floats(min_value=1, max_value=90), cooldown=st.floats(min_value=0, max_value=200))
def test_cooling_matches_the_rule_for_any_timeline(gaps: list[float], after: float,
                                                   failures: int, window: float,
                                                   cooldown: float) -> None:
    clock = Clock()
    board = HealthBoard(clock=clock)
    times = []
    for g in gaps:
        clock.now += g
        times.append(clock.now)
        board.record("a@fal", "fal", ok=False)
    clock.now += after
    rules = HealthRules(failures=failures, window_s=window, cooldown_s=cooldown)
    # The rule, by brute force: some `failures` consecutive failures fit in the window and the
    # last of them is less than `cooldown` ago.
    expected = any(times[i + failures - 1] - times[i] <= window
                   and clock.now < times[i + failures - 1] + cooldown
                   for i in range(len(times) - failures + 1))
    assert (board.cooling("a@fal", "fal", rules) is not None) is expected


def test_a_fallback_whose_provider_started_cooling_during_the_job_is_skipped(sim: Any) -> None:
    from modelglass.providers.fal import FalProvider

    sim.fail("fal", status=500, times=50)
    with mg.Client(available=["fal"], max_retries=2, retry_backoff_s=0.01, deadline_s=20,
                   providers={"fal": FalProvider(poll_interval_s=0.01,
                                                 poll_retry_backoff_s=0.01)}) as client:
        decision = client.route("a red bicycle", quality="thumbnail")
        fal_offers = [c.key for c in decision.ranked]
        assert len(fal_offers) >= 2  # there are fal fallbacks the job could have tried
        with pytest.raises(ProviderError) as err:
            client.generate("a red bicycle", quality="thumbnail")
    # The first offer's three tries cooled fal down (3 failures in the window): the fal
    # fallbacks ranked before that are skipped instead of sending more doomed requests.
    tried = {a.offer_id for a in err.value.attempts}
    assert tried == {fal_offers[0]} and len(err.value.attempts) == 3
    assert len(sim.requests("fal", stage="submit")) == 3
