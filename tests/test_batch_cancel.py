"""Ctrl-C on a sync batch (`generate_many`, `modelglass batch`) cancels the jobs in flight
(issue 9, deliverables 3-5).

A real SIGINT reaches the process while fal and Replicate jobs are held in the simulators'
queues: the providers' cancels must reach the wire, the budget must hold nothing afterwards and
count as spent exactly what may have been billed, the journal must say which jobs were
cancelled with a request out (possibly charged) and which go back to pending, and a rerun with
the same journal must never submit again a job whose request id was known.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _sim_fixtures
import pytest
from test_client import make_client

import modelglass as mg
from modelglass.jobs._journal import Journal
from modelglass.testing import Simulator

SUBMIT = {"fal": "submit", "replicate": "create"}
ESTIMATE = 0.003  # flux-schnell, draft, one image: fal and Replicate alike
HELD_S = 8.0  # how long a submitted job stays in the simulator's queue


sim = _sim_fixtures.sim


@pytest.fixture(autouse=True)
def _sigint_raises() -> Iterator[None]:
    # Under a background job (`pytest &`) SIGINT starts ignored and would never reach the runner:
    # install Python's own handler, as an interactive terminal has it, and put back what was there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _fresh(sim: Simulator) -> Iterator[None]:
    sim.reset()
    yield
    for p in ("fal", "replicate"):
        sim.service_time(p, 0)  # type: ignore[arg-type]


def _requests(n: int) -> list[dict[str, Any]]:
    providers = ["fal", "replicate"]
    return [{"id": f"job-{i}", "prompt": f"a paper lantern number {i}", "seed": i,
             "model": "flux-schnell", "quality": "draft", "provider": providers[i % 2]}
            for i in range(n)]


def _prompt(record: Any) -> str | None:
    body = record.json if isinstance(record.json, dict) else {}
    return body.get("prompt") or (body.get("input") or {}).get("prompt")


def _submitted(sim: Simulator) -> Counter[str | None]:
    return Counter(_prompt(r) for p, stage in SUBMIT.items()
                   for r in sim.requests(p, stage=stage))  # type: ignore[arg-type]


def _sigint_after_submits(sim: Simulator, count: int, pid: int | None = None) -> None:
    """From a timer thread: once ``count`` jobs were submitted, a real SIGINT (to this
    process's main thread, or to ``pid``)."""
    main = threading.main_thread().ident
    assert main is not None

    def fire() -> None:
        t0 = time.monotonic()
        while sum(_submitted(sim).values()) < count:
            if time.monotonic() - t0 > 20:
                return
            time.sleep(0.01)
        time.sleep(0.2)  # let the request ids reach the journal
        if pid is None:
            signal.pthread_kill(main, signal.SIGINT)
        else:
            os.kill(pid, signal.SIGINT)

    threading.Thread(target=fire, daemon=True).start()


def test_ctrl_c_cancels_the_jobs_in_flight_and_a_rerun_pays_nothing_twice(
        sim: Simulator, tmp_path: Path) -> None:
    for p in ("fal", "replicate"):
        sim.service_time(p, HELD_S)  # type: ignore[arg-type]
    journal = tmp_path / "run.db"
    requests = _requests(10)
    budget = mg.Budget(1.0)
    _sigint_after_submits(sim, 4)
    t0 = time.monotonic()
    with make_client() as client, pytest.raises(KeyboardInterrupt) as info:
        client.generate_many(requests, concurrency=4, budget=budget, journal=journal,
                             out=tmp_path / "out", limits={})
    elapsed = time.monotonic() - t0
    assert elapsed < HELD_S - 2, elapsed  # it cancelled them; it did not wait them out

    # The providers' cancels reached the wire, one per job in flight.
    sent = _submitted(sim)
    prompts = {r["prompt"]: r["id"] for r in requests}
    in_flight = sorted(prompts[p] for p in sent if p is not None)
    assert len(in_flight) == 4 and set(sent.values()) == {1}
    for p, stage in SUBMIT.items():
        submits = sim.requests(p, stage=stage)  # type: ignore[arg-type]
        assert submits and len(sim.requests(p, stage="cancel")) == len(submits)  # type: ignore[arg-type]

    # Nothing stays reserved; what may have been billed (every create that went out) is spent.
    assert budget.reserved == pytest.approx(0.0, abs=1e-12)
    assert budget.spent == pytest.approx(len(in_flight) * ESTIMATE)

    # The report on the interrupt, and the journal: cancelled with a request out -> possibly
    # charged (with the request id); never started -> pending.
    report = info.value.report  # type: ignore[attr-defined]
    assert report.stopped["cancelled"] == in_flight
    assert report.stopped["possibly_charged"] == in_flight
    assert report.stopped["still_running"] == []
    assert report.stopped["pending"] == sorted(set(prompts.values()) - set(in_flight),
                                               key=lambda j: int(j.split("-")[1]))
    with Journal(journal) as j:
        rows = {r.id: r for r in j.jobs()}
        assert j.spent() == pytest.approx(budget.spent)
    for job_id, row in rows.items():
        if job_id in in_flight:
            assert row.state == "failed" and row.possibly_charged, (job_id, row)
            assert row.error is not None and row.error["type"] == "Cancelled"
            assert row.error["request_id"] and "cancelled" in row.error["message"]
            assert row.calls and row.calls[0].request_id == row.error["request_id"]
        else:
            assert row.state == "pending" and not row.possibly_charged and not row.calls

    # A rerun with the same journal: the pending jobs run; the cancelled ones are named, never
    # submitted again.
    for p in ("fal", "replicate"):
        sim.service_time(p, 0)  # type: ignore[arg-type]
    with make_client() as client:
        again = client.generate_many(requests, concurrency=4, budget=budget, journal=journal,
                                     out=tmp_path / "out", limits={})
    assert set(_submitted(sim).values()) == {1}  # nobody twice
    status = {o.id: o.status for o in again}
    assert {status[i] for i in in_flight} == {"possibly_charged"}
    assert {s for i, s in status.items() if i not in in_flight} == {"done"}
    assert budget.reserved == pytest.approx(0.0, abs=1e-12)


def test_ctrl_c_before_any_request_id_sends_nothing_again_blindly(
        sim: Simulator, tmp_path: Path) -> None:
    # A job that sent nothing yet (waiting out a 429 before its create) goes back to pending,
    # its hold released; the rerun sends it once.
    sim.fail("fal", status=429, times=50, retry_after=3)
    journal = tmp_path / "run.db"
    requests = [r for r in _requests(2) if r["provider"] == "fal"]
    budget = mg.Budget(1.0)
    main = threading.main_thread().ident
    assert main is not None

    def fire() -> None:
        t0 = time.monotonic()
        while not sim.requests("fal", stage="submit") and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        time.sleep(0.3)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=fire, daemon=True).start()
    t0 = time.monotonic()
    with make_client() as client, pytest.raises(KeyboardInterrupt) as info:
        client.generate_many(requests, concurrency=2, budget=budget, journal=journal,
                             limits={})
    assert time.monotonic() - t0 < 2.5  # the 3 s Retry-After wait ended early
    assert budget.reserved == pytest.approx(0.0, abs=1e-12) and budget.spent == 0
    assert sim.requests("fal", stage="cancel") == []  # nothing to cancel
    stopped = info.value.report.stopped  # type: ignore[attr-defined]
    assert stopped["cancelled"] == ["job-0"] and stopped["pending"] == ["job-0"]
    assert stopped["possibly_charged"] == []
    with Journal(journal) as j:
        assert j.get("job-0").state == "pending"  # type: ignore[union-attr]
    sim.reset()
    with make_client() as client:
        again = client.generate_many(requests, concurrency=2, budget=budget, journal=journal,
                                     limits={})
    assert [o.status for o in again] == ["done"]
    assert len(sim.requests("fal", stage="submit")) == 1


#: `modelglass batch` as a user runs it, trusting the simulators' loopback origins for
#: downloads as `simulate()` does in the process that runs it (as tests/test_kill_resume.py).
_MAIN = ("import signal, sys\n"
         # a background job starts with SIGINT ignored; a terminal's Ctrl-C is what is tested
         "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
         "from modelglass._destination import trust_origin\n"
         "for url in sys.argv.pop(1).split(): trust_origin(url)\n"
         "from modelglass.cli import app\n"
         "app(prog_name='modelglass')\n")


def test_cli_batch_ctrl_c_exits_130_with_a_one_line_summary(
        sim: Simulator, tmp_path: Path) -> None:
    for p in ("fal", "replicate"):
        sim.service_time(p, HELD_S)  # type: ignore[arg-type]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(r) for r in _requests(6)) + "\n")
    cmd = [sys.executable, "-c", _MAIN, " ".join(sim._origins()), "batch", str(jobs),
           "--out", str(tmp_path / "out"), "--journal", str(tmp_path / "run.db"),
           "--budget", "1", "--concurrency", "2", "--assume-available", "fal,replicate"]
    env = {**os.environ, **sim.env, "PYTHONPATH": str(Path(__file__).parents[1]),
           "COLUMNS": "400"}
    env.pop("MODELGLASS_LIMITS", None)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _sigint_after_submits(sim, 2, pid=proc.pid)
    stdout, stderr = proc.communicate(timeout=HELD_S + 20)
    assert proc.returncode == 130, stderr[-2000:]
    [line] = [x for x in stdout.splitlines() if x.startswith("Interrupted:")]
    assert ("2 job(s) in flight cancelled, 2 possibly charged" in line
            and "4 left pending" in line and "--journal" in line), line
    for p in SUBMIT:
        assert len(sim.requests(p, stage="cancel")) == 1  # type: ignore[arg-type]
    manifest = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text()
                .splitlines()]
    assert Counter(x["status"] for x in manifest) == {"possibly_charged": 2, "cancelled": 4}


def test_ctrl_c_lets_an_openai_call_under_way_finish_and_keeps_its_image(
        sim: Simulator, tmp_path: Path) -> None:
    # OpenAI has no cancel: the call under way is not cut short; the runner waits for it (within
    # STOP_WAIT_S), so the paid image is saved and the job is done, not lost.
    sim.service_time("openai", 1.0)
    journal = tmp_path / "run.db"
    requests = [{"id": "oa", "prompt": "a paper lantern over water", "model": "gpt-image-2",
                 "quality": "thumbnail", "provider": "openai"},
                {"id": "later", "prompt": "a second lantern", "model": "gpt-image-2",
                 "quality": "thumbnail", "provider": "openai"}]
    budget = mg.Budget(1.0)
    main = threading.main_thread().ident
    assert main is not None

    def fire() -> None:
        t0 = time.monotonic()
        while not sim.requests("openai", stage="generate") and time.monotonic() - t0 < 10:
            time.sleep(0.01)
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=fire, daemon=True).start()
    try:
        with make_client() as client, pytest.raises(KeyboardInterrupt) as info:
            client.generate_many(requests, concurrency=1, budget=budget, journal=journal,
                                 out=tmp_path / "out", limits={})
    finally:
        sim.service_time("openai", 0)
    report = info.value.report  # type: ignore[attr-defined]
    assert [o.status for o in report] == ["done", "cancelled"]
    assert report[0].files and report[0].files[0].is_file()
    assert report.stopped["pending"] == ["later"] and report.stopped["cancelled"] == []
    assert len(sim.requests("openai", stage="generate")) == 1  # the second never went out
    assert budget.reserved == pytest.approx(0.0, abs=1e-12)
    assert budget.spent == pytest.approx(report[0].cost_usd)
    with Journal(journal) as j:
        assert j.get("oa").state == "done" and j.get("later").state == "pending"  # type: ignore[union-attr]


def test_ctrl_c_while_a_check_retry_is_out_keeps_the_rejected_try_on_disk(
        sim: Simulator, tmp_path: Path) -> None:
    """The first try was paid for and failed its text check; its retry is out when Ctrl-C
    comes: the retry is cancelled (named as possibly charged), the first try's image stays on
    disk, named in the outcome's manifest line, and a rerun sends nothing more."""
    from modelglass.jobs._journal import file_sha256

    sim.text_accuracy("fal-ai/flux/schnell", 0.0)
    sim.service_time("fal", 1.0)
    job = {"id": "sign", "prompt": 'a shop sign that says "OPEN LATE"', "seed": 3,
           "model": "flux-schnell", "quality": "draft", "provider": "fal"}
    options: dict[str, Any] = {"out": tmp_path / "out", "journal": tmp_path / "run.db",
                               "check": ["text"], "on_fail": "retry", "max_check_retries": 1}
    _sigint_after_submits(sim, 2)  # the retry
    with make_client(available=["fal"]) as client, pytest.raises(KeyboardInterrupt) as info:
        client.generate_many([job], concurrency=1, **options)
    (outcome,) = info.value.report  # type: ignore[attr-defined]
    assert outcome.status == "possibly_charged"
    assert len(sim.requests("fal", stage="submit")) == 2
    assert len(sim.requests("fal", stage="cancel")) == 1
    (rejected,) = outcome.manifest()["rejected"]
    assert file_sha256(rejected["file"]) == rejected["file_sha256"]
    sim.service_time("fal", 0)
    with make_client(available=["fal"]) as client:
        (again,) = client.generate_many([job], concurrency=1, **options)
    assert len(sim.requests("fal", stage="submit")) == 2  # nothing bought again
    assert again.status == "possibly_charged" and again.manifest()["rejected"] == [rejected]
