"""The batch journal: SQLite in WAL mode; every transition committed before it is acted on."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from modelglass.errors import InvalidRequest
from modelglass.jobs import JobEvent
from modelglass.jobs._journal import Journal, file_sha256


def test_journal_uses_wal_and_normal_sync_by_default(tmp_path):
    with Journal(tmp_path / "run.db") as j:
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with Journal(tmp_path / "durable.db", durable=True) as j:
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_begin_adds_jobs_once_and_keeps_their_state(tmp_path):
    with Journal(tmp_path / "run.db") as j:
        jobs = j.begin([("a", {"prompt": "x"}), ("b", {"prompt": "y"})])
        assert [r.state for r in jobs.values()] == ["pending", "pending"]
        j.started("a", offer_key="flux-schnell@fal", provider="fal", estimate=0.003)
    with Journal(tmp_path / "run.db") as j:
        jobs = j.begin([("a", {"prompt": "x"}), ("b", {"prompt": "y"}), ("c", {"prompt": "z"})])
        assert {k: r.state for k, r in jobs.items()} == {"a": "started", "b": "pending",
                                                         "c": "pending"}
        assert jobs["a"].estimate == 0.003


def test_a_changed_request_under_a_known_id_is_refused(tmp_path):
    with Journal(tmp_path / "run.db") as j:
        j.begin([("a", {"prompt": "x"})])
        with pytest.raises(InvalidRequest, match="different request"):
            j.begin([("a", {"prompt": "something else"})])


def test_submitted_event_records_the_request_id_for_resume(tmp_path):
    with Journal(tmp_path / "run.db") as j:
        j.begin([("a", {"prompt": "x"})])
        j.started("a", offer_key="flux-dev@fal", provider="fal", estimate=0.025)
        j.record(JobEvent("a", "submitted", offer_key="flux-dev@fal", provider="fal",
                          request_id="req-123"))
        job = j.get("a")
        assert job is not None and job.state == "submitted"
        call = job.resumable_call()
        assert call is not None and (call.offer_key, call.request_id) == ("flux-dev@fal",
                                                                        "req-123")
        j.record(JobEvent("a", "generated", offer_key="flux-dev@fal", request_id="req-123",
                          urls=("https://x/1.png",), cost_usd=0.025))
        j.record(JobEvent("a", "downloaded", offer_key="flux-dev@fal", sha256=("ab" * 32,)))
        job = j.get("a")
        assert job is not None and job.state == "downloaded"
        assert job.calls[0].urls == ("https://x/1.png",) and job.calls[0].cost == 0.025
        assert job.calls[0].request_id == "req-123"   # kept through later events
        assert job.resumable_call() is None            # its images arrived


def test_waiting_events_are_not_written(tmp_path):
    with Journal(tmp_path / "run.db") as j:
        j.begin([("a", {"prompt": "x"})])
        j.record(JobEvent("a", "waiting", wait_s=2.0, message="429"))
        assert j.get("a").state == "pending"  # type: ignore[union-attr]


def test_done_files_are_verified_by_sha256(tmp_path):
    img = tmp_path / "a-0.png"
    img.write_bytes(b"png bytes")
    with Journal(tmp_path / "run.db") as j:
        j.begin([("a", {"prompt": "x"})])
        j.done("a", cost=0.01, entry={"id": "a"}, files=[(str(img), file_sha256(img))])
        assert j.get("a").files_ok() == []  # type: ignore[union-attr]
        img.write_bytes(b"tampered")
        assert "sha256 differs" in j.get("a").files_ok()[0]  # type: ignore[union-attr]
        img.unlink()
        assert "missing" in j.get("a").files_ok()[0]  # type: ignore[union-attr]


def test_spent_counts_settled_costs_and_possible_charges(tmp_path):
    with Journal(tmp_path / "run.db") as j:
        j.begin([(k, {"prompt": k}) for k in "abcde"])
        j.done("a", cost=0.5, entry={}, files=[])
        j.started("b", offer_key="gpt-image-2@openai", provider="openai", estimate=0.2)
        j.started("c", offer_key="flux-dev@fal", provider="fal", estimate=0.3)
        j.record(JobEvent("c", "submitted", offer_key="flux-dev@fal", request_id="r"))
        j.failed("d", error={"type": "ContentRejected"}, cost=None)
        # a: settled; b: started with no id (possibly charged, its estimate); c: resumable,
        # counted when it settles; d: failed before any charge; e: never ran.
        assert j.spent() == pytest.approx(0.7)
        j.reset("b", carry=0.2)  # re-sent with the caller's consent: the first try still counts
        assert j.spent() == pytest.approx(0.7)


def test_a_sigkill_between_commits_loses_nothing_committed(tmp_path):
    """A child process commits events, then is SIGKILLed mid-stream; what it committed is there."""
    db = tmp_path / "run.db"
    code = textwrap.dedent(f"""
        import os, signal, sys
        from modelglass.jobs import JobEvent
        from modelglass.jobs._journal import Journal
        j = Journal({str(db)!r})
        j.begin([(f"j{{i}}", {{"prompt": str(i)}}) for i in range(50)])
        for i in range(50):
            j.started(f"j{{i}}", offer_key="m@fal", provider="fal", estimate=0.01)
            j.record(JobEvent(f"j{{i}}", "submitted", offer_key="m@fal", request_id=f"r{{i}}"))
            if i == 29:
                print("committed", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL and "committed" in proc.stdout
    assert os.path.exists(str(db) + "-wal")  # the commits sit in the WAL, not yet checkpointed
    with Journal(db) as j:
        jobs = {r.id: r for r in j.jobs()}
    submitted = [k for k, r in jobs.items() if r.state == "submitted"]
    assert len(submitted) == 30
    assert all(jobs[f"j{i}"].resumable_call().request_id == f"r{i}"  # type: ignore[union-attr]
               for i in range(30))
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_failed_offer_is_never_resumed(tmp_path):
    """Offer A failed after its submit and the job fell back to B: a restart must not poll A."""
    with Journal(tmp_path / "run.db") as j:
        j.begin([("a", {"prompt": "x"})])
        j.record(JobEvent("a", "submitted", offer_key="flux-dev@fal", request_id="r-fal"))
        j.record(JobEvent("a", "failed", offer_key="flux-dev@fal", possibly_charged=True))
        assert j.get("a").resumable_call() is None  # type: ignore[union-attr]
        j.record(JobEvent("a", "submitted", offer_key="flux-dev@replicate", request_id="r-rep"))
        call = j.get("a").resumable_call()  # type: ignore[union-attr]
        assert call is not None and call.request_id == "r-rep"
        assert j.get("a").possibly_charged  # type: ignore[union-attr]
