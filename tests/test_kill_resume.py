"""SIGKILL the `modelglass batch` process at random points, then resume: nothing is paid twice,
every paid image is on disk with its sha256 or named as possibly charged, spend stays within
the budget.

The simulators run in this test process (they keep their state across the batch's restarts);
the batch runs as a subprocess pointed at them through the environment, as a user's would be.
Kill points are drawn from a seeded random generator and pinned to progress (after the k-th
request reached a simulator, plus a random delay), so they land before, during and after
submits, polls and downloads.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _sim_fixtures
import pytest

import modelglass as mg
from modelglass.jobs._journal import Journal, file_sha256

TRIALS = 3
KILLS_PER_TRIAL = 2
BUDGET = 0.04
#: (provider, extra request fields): resumable (fal, Replicate) and not (OpenAI).
MIX = [("fal", {"model": "flux-schnell", "quality": "draft"}),
       ("replicate", {"model": "flux-schnell", "quality": "draft"}),
       ("openai", {"model": "gpt-image-2", "quality": "thumbnail"})]
SUBMIT_STAGES = {"fal": "submit", "replicate": "create", "openai": "generate"}


def _write_jobs(path: Path, trial: int, n: int = 12) -> dict[str, str]:
    provider_of: dict[str, str] = {}
    lines = []
    for i in range(n):
        provider, extra = MIX[i % len(MIX)]
        prompt = f"trial {trial} job {i}: a lighthouse in fog"
        provider_of[prompt] = provider
        lines.append(json.dumps({"id": f"t{trial}-{i}", "prompt": prompt, "seed": i,
                                 "provider": provider, **extra}))
    path.write_text("\n".join(lines) + "\n")
    return provider_of


def _prompt(record: Any) -> str | None:
    body = record.json if isinstance(record.json, dict) else {}
    return body.get("prompt") or (body.get("input") or {}).get("prompt")


#: The batch process, as `modelglass batch` runs it, trusting the simulators' loopback origins
#: for downloads as `simulate()` does in the process that runs it.
_MAIN = ("import sys\n"
         "from modelglass._destination import trust_origin\n"
         "for url in sys.argv.pop(1).split(): trust_origin(url)\n"
         "from modelglass.cli import app\n"
         "app(prog_name='modelglass')\n")


def _batch_cmd(tmp: Path, sim: Any) -> list[str]:
    origins = " ".join(sim._origins())
    return [sys.executable, "-c", _MAIN, origins, "batch", str(tmp / "jobs.jsonl"),
            "--out", str(tmp / "out"), "--journal", str(tmp / "run.db"), "--json",
            "--budget", str(BUDGET), "--concurrency", "4",
            "--assume-available", "fal,replicate,openai"]


def _env(sim: Any) -> dict[str, str]:
    env = {**os.environ, **sim.env, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("MODELGLASS_LIMITS", None)
    return env


def _submits(sim: Any) -> int:
    return sum(len(sim.requests(p, stage=s)) for p, s in SUBMIT_STAGES.items())  # type: ignore[arg-type]


sim = _sim_fixtures.sim_fixture(service_time=0.3)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_random_points_then_resume_pays_nothing_twice(sim, tmp_path, trial):
    rng = random.Random(9000 + trial)
    sim.reset()
    _write_jobs(tmp_path / "jobs.jsonl", trial)
    cmd, env = _batch_cmd(tmp_path, sim), _env(sim)
    kills = 0
    for _ in range(KILLS_PER_TRIAL):
        target = _submits(sim) + rng.randint(1, 4)   # after a few more requests went out
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while _submits(sim) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))           # submit, poll or download: any of them
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert kills >= 1
    assert done.returncode in (0, 1), done.stderr[-2000:]
    summary = json.loads(done.stdout)

    # 1. No job was sent to a provider twice (ids known or not: nothing is re-sent blindly).
    sent = Counter(_prompt(r) for p, s in SUBMIT_STAGES.items()
                   for r in sim.requests(p, stage=s) if r.fault is None)  # type: ignore[arg-type]
    assert max(sent.values()) == 1, [k for k, v in sent.items() if v > 1]

    # 2. Every paid image is on disk with the sha256 the journal recorded, or its job is named.
    manifest = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text()
                .splitlines()]
    by_status = Counter(m["status"] for m in manifest)
    assert set(by_status) <= {"done", "skipped", "possibly_charged", "undone"}, by_status
    finished = [m for m in manifest if m["status"] in ("done", "skipped")]
    with Journal(tmp_path / "run.db") as journal:
        records = {r.id: r for r in journal.jobs()}
        spent = journal.spent()
    for m in finished:
        record = records[m["id"]]
        assert record.files and record.files_ok() == [], m["id"]
        assert [file_sha256(p) for p, _ in record.files] == [s for _, s in record.files]
    billed = sum(sim.billed(p) for p in ("fal", "replicate", "openai"))  # type: ignore[arg-type]
    named = by_status["possibly_charged"]
    resumed = sum(1 for m in manifest if m.get("resumed"))
    print(f"trial {trial}: {kills} kills; {dict(by_status)}; {resumed} resumed by request id; "
          f"billed {billed}; spent ${spent:.4f}")
    assert len(finished) <= billed <= len(finished) + named

    # 3. Spend stayed within the budget, counting every possible charge at its upper bound.
    assert spent <= BUDGET + 1e-9 and summary["spent_usd"] <= BUDGET + 1e-9
    charged_usd = sum(m["cost_usd"] or 0 for m in finished)
    assert charged_usd <= BUDGET + 1e-9

    # 4. With an engine that resumes, a job whose provider id reached the journal was polled
    #    to its end, never written off as possibly charged.
    if "resume" in inspect.signature(mg.Client.generate).parameters:
        for m in manifest:
            if m["status"] == "possibly_charged":
                assert records[m["id"]].resumable_call() is None, m["id"]
