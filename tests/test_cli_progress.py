"""The CLI's progress line: fed by the job's events, it names the step and counts a Retry-After
wait down; shown only on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

import modelglass as mg
from modelglass._cli_progress import Progress, describe
from modelglass.jobs import JobEvent
from modelglass.testing import simulate


def test_a_wait_counts_down_with_its_reason() -> None:
    ev = JobEvent(job_id="j", state="waiting", offer_key="flux-schnell@fal", wait_s=20.0,
                  message="rate limited; Retry-After 20 s", at=1000.0)
    assert describe(ev, now=1000.0).startswith("flux-schnell@fal: waiting 20 s of 20 s")
    assert "waiting 15 s of 20 s — rate limited; Retry-After 20 s" in describe(ev, now=1005.0)
    assert "waiting 0 s" in describe(ev, now=1100.0)


def test_the_line_follows_the_steps() -> None:
    states = ["pending", "submitted", "generated", "downloaded", "done"]
    lines = [describe(JobEvent(job_id="j", state=s, offer_key="sdxl@fal", request_id="r1"))
             for s in states]
    assert "submitted" in lines[1] and "r1" in lines[1]
    assert "downloading" in lines[2] and "verifying" in lines[3] and lines[4].endswith("done")


def test_generate_feeds_the_progress_with_a_retry_after_wait(tmp_path: Path) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    with simulate() as sim, mg.Client(available=["fal"]) as client:
        sim.fail("fal", status=429, retry_after=1, times=1)
        with Progress(console) as progress:
            client.generate("a fox", quality="draft", provider="fal", events=progress)
    states = [e.state for e in progress.events]
    assert "waiting" in states and states[-1] == "done"
    wait = next(e for e in progress.events if e.state == "waiting")
    assert wait.wait_s is not None and wait.wait_s >= 1
    assert "asked to wait 1 s (Retry-After)" in wait.message  # the line says why it waits
    assert "waiting" in buf.getvalue()  # drawn on the terminal while it lasted


def test_not_a_terminal_shows_nothing() -> None:
    buf = io.StringIO()
    with Progress(Console(file=buf, force_terminal=False)) as progress:
        progress(JobEvent(job_id="j", state="pending"))
    assert buf.getvalue() == "" and len(progress.events) == 1
