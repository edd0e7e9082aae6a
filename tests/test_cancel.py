"""Cancellation: a cancelled task, Ctrl-C or the deadline cancels the provider's job, settles the
budget and records the attempt — on each provider, sync and async (issue 9, deliverable 3).

The simulators keep a submitted job running for the service time, record every request (so the
cancel that reached the wire is asserted), and count what they would have billed.
"""

from __future__ import annotations

import _thread
import asyncio
import gc
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import _sim_fixtures
import pytest
from test_client import PROMPT, make_client

import modelglass as mg
from modelglass.jobs import JobEvent
from modelglass.testing import Simulator

SUBMIT = {"fal": "submit", "replicate": "create", "openai": "generate"}
ESTIMATE = {"fal": 0.003, "replicate": 0.003}


sim = _sim_fixtures.sim  # one simulator per module, reset before each test
_fresh = _sim_fixtures.fresh


@pytest.fixture(autouse=True)
def _sigint_raises() -> Iterator[None]:
    # Under a background job (`pytest &`) SIGINT starts ignored and would never reach the job:
    # install Python's own handler, as an interactive terminal has it, and put back what was there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    # A KeyboardInterrupt is raised in whatever Python code the main thread runs next: when
    # that is a finalizer the collector runs (an earlier test's client, freed now), Python only
    # prints it as "ignored" and the interrupt never reaches the job (seen once in CI, in
    # SyncHttpxClientWrapper.__del__). Collect earlier tests' garbage first and keep the
    # collector off while a test runs, so the interrupt lands in the code under test.
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        signal.signal(signal.SIGINT, previous)


def _wait_for_submit(sim: Simulator, provider: str, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not sim.requests(provider, stage=SUBMIT[provider]):  # type: ignore[arg-type]
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"no {provider} submit within {timeout} s")
        time.sleep(0.005)
    time.sleep(0.05)  # let the job's id reach the client


def _cancels(sim: Simulator, provider: str) -> list[Any]:
    return sim.requests(provider, stage="cancel")  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", ["fal", "replicate"])
def test_ctrl_c_on_a_running_job_sends_the_providers_cancel_and_keeps_the_estimate(
        sim: Simulator, provider: str) -> None:
    sim.service_time(provider, 5)  # type: ignore[arg-type]
    budget = mg.Budget(1.0)
    events: list[JobEvent] = []
    threading.Thread(target=lambda: (_wait_for_submit(sim, provider), _thread.interrupt_main()),
                     daemon=True).start()
    t0 = time.monotonic()
    with make_client(budget=budget) as client, pytest.raises(KeyboardInterrupt) as info:
        client.generate(PROMPT, quality="draft", provider=provider, events=events.append,
                        job_id="ctrl-c")
    assert time.monotonic() - t0 < 4  # it did not wait for the job to finish
    assert len(_cancels(sim, provider)) == 1
    # The job was submitted and may bill: the estimate stays spent, nothing stays reserved.
    assert budget.reserved == 0 and budget.spent == pytest.approx(ESTIMATE[provider])
    [attempt] = info.value.attempts  # type: ignore[attr-defined]
    assert attempt.possibly_charged and attempt.error_type == "KeyboardInterrupt"
    assert "cancelled" in (attempt.error or "") and attempt.request_id
    states = [e.state for e in events]
    assert states[:2] == ["pending", "pending"] and "submitted" in states
    assert states[-1] == "failed" and events[-1].possibly_charged
    submitted = next(e for e in events if e.state == "submitted")
    assert submitted.request_id == attempt.request_id and submitted.job_id == "ctrl-c"


@pytest.mark.parametrize("provider", ["fal", "replicate"])
def test_cancelling_an_async_generate_task_cancels_the_providers_job(
        sim: Simulator, provider: str) -> None:
    sim.service_time(provider, 5)  # type: ignore[arg-type]
    budget = mg.Budget(1.0)
    seen: list[JobEvent] = []

    async def main() -> Any:
        async with make_client(mg.AsyncClient, budget=budget) as client:
            task = asyncio.create_task(client.generate(
                PROMPT, quality="draft", provider=provider, events=seen.append))
            while not any(e.state == "submitted" for e in seen):
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            return info.value

    t0 = time.monotonic()
    err = asyncio.run(main())
    assert time.monotonic() - t0 < 4
    assert len(_cancels(sim, provider)) == 1
    assert budget.reserved == 0 and budget.spent == pytest.approx(ESTIMATE[provider])
    [attempt] = err.attempts
    assert attempt.possibly_charged and attempt.error_type == "CancelledError"
    assert seen[-1].state == "failed"


def test_cancelling_before_anything_was_sent_releases_the_reservation(sim: Simulator) -> None:
    # A 429 with a long Retry-After: the task is cancelled while it waits to retry.
    sim.fail("fal", status=429, retry_after=5, times=1)
    budget = mg.Budget(1.0)
    seen: list[JobEvent] = []

    async def main() -> None:
        async with make_client(mg.AsyncClient, budget=budget, retry_after_cap_s=10) as client:
            task = asyncio.create_task(client.generate(PROMPT, quality="draft", provider="fal",
                                                       events=seen.append))
            while not any(e.state == "waiting" for e in seen):
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    waiting = next(e for e in seen if e.state == "waiting")
    assert waiting.wait_s == pytest.approx(5)
    assert _cancels(sim, "fal") == []
    assert budget.reserved == 0 and budget.spent == 0  # nothing was charged: all released


def test_cancelling_an_openai_call_keeps_the_estimate_it_may_have_billed(sim: Simulator) -> None:
    sim.service_time("openai", 5)
    budget = mg.Budget(1.0)

    async def main() -> None:
        async with make_client(mg.AsyncClient, budget=budget) as client:
            task = asyncio.create_task(client.generate(PROMPT, quality="thumbnail",
                                                       provider="openai"))
            await asyncio.to_thread(_wait_for_submit, sim, "openai")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    # OpenAI has no cancel: the POST was sent, so its estimate stays spent.
    assert budget.reserved == 0 and budget.spent > 0


def test_ctrl_c_during_a_blocking_openai_post_keeps_the_estimate(sim: Simulator) -> None:
    # A real SIGINT, as a terminal sends it: it interrupts the blocking read of the POST.
    sim.service_time("openai", 5)
    budget = mg.Budget(1.0)
    main = threading.main_thread().ident
    assert main is not None
    threading.Thread(target=lambda: (_wait_for_submit(sim, "openai"),
                                     signal.pthread_kill(main, signal.SIGINT)),
                     daemon=True).start()
    t0 = time.monotonic()
    with make_client(budget=budget) as client, pytest.raises(KeyboardInterrupt) as info:
        client.generate(PROMPT, quality="thumbnail", provider="openai")
    assert time.monotonic() - t0 < 4
    assert budget.reserved == 0 and budget.spent > 0  # the POST was sent: it may bill
    [attempt] = info.value.attempts  # type: ignore[attr-defined]
    assert attempt.possibly_charged and "already sent" in (attempt.error or "")


@pytest.mark.parametrize("provider", ["fal", "replicate"])
def test_a_deadline_cancels_the_providers_job_within_the_deadline(
        sim: Simulator, provider: str) -> None:
    sim.service_time(provider, 10)  # type: ignore[arg-type]
    budget = mg.Budget(1.0)
    with make_client(budget=budget, deadline_s=1.0) as client:
        t0 = time.monotonic()
        with pytest.raises(mg.GenerationTimeout) as info:
            client.generate(PROMPT, quality="draft", provider=provider)
        elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + 0.5  # the cancel fits in the deadline (a little slack for the test)
    assert len(_cancels(sim, provider)) == 1
    assert budget.reserved == 0
    assert info.value.attempts[0].error_type == "GenerationTimeout"  # type: ignore[attr-defined]
