"""One owner per journal: two runs on one journal never both pay; a dead holder's lock is taken
over; a simulated journal is never reused by a real run (nor the reverse)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.cli import app
from modelglass.errors import JournalError
from modelglass.jobs._journal import Journal
from modelglass.testing import simulate

#: `modelglass batch` as a user runs it, trusting the in-test simulators' loopback origins.
_MAIN = ("import sys\n"
         "from modelglass._destination import trust_origin\n"
         "for url in sys.argv.pop(1).split(): trust_origin(url)\n"
         "from modelglass.cli import app\n"
         "app(prog_name='modelglass')\n")


def _jobs(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"j{i}", "prompt": f"a tin robot number {i}",
                                        "model": "flux-schnell", "provider": "fal",
                                        "quality": "draft", "seed": i}) + "\n"
                            for i in range(n)))
    return path


def _env(sim: Any) -> dict[str, str]:
    env = {**os.environ, **sim.env, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("MODELGLASS_LIMITS", None)
    return env


def test_two_processes_on_one_journal_never_pay_twice(tmp_path):
    """Two `modelglass batch` processes started together on one journal: one runs, the other
    is refused before it sends anything (exit 2, naming the holder); every job is paid once."""
    jobs = _jobs(tmp_path / "jobs.jsonl", 12)
    with simulate(service_time=1.0, poll_interval=0.05) as sim:  # A runs >= 3 s
        cmd = [sys.executable, "-c", _MAIN, " ".join(sim._origins()), "batch", str(jobs),
               "--journal", str(tmp_path / "run.db"), "--json", "--concurrency", "4",
               "--assume-available", "fal"]
        procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"out{k}")], env=_env(sim),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k in range(2)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 2], [(c, e[-800:]) for c, _, e in results]
        _, stdout, _ = next(r for r in results if r[0] == 2)
        error = json.loads(stdout)["error"]
        assert error["type"] == "JournalError" and error["exit_code"] == 2
        winner = next(p for p, r in zip(procs, results, strict=True) if r[0] == 0)
        assert f"pid {winner.pid}" in error["message"]
        submits = Counter(r.json["prompt"] for r in sim.requests("fal", stage="submit"))
        assert sim.billed("fal") == 12 and set(submits.values()) == {1}


def test_the_lock_names_its_holder_and_frees_on_close(tmp_path):
    db = tmp_path / "run.db"
    first = Journal(db)
    with pytest.raises(JournalError) as info:
        Journal(db)
    assert info.value.holder["pid"] == os.getpid() and str(db) in str(info.value)
    with pytest.raises(JournalError):  # the batch API says the same, before anything is sent
        mg.Client().generate_many([{"prompt": "x"}], journal=db)
    first.close()
    with Journal(db) as again:
        assert again.jobs() == []


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    """A run SIGKILLed while it held the journal leaves its lock file behind; the next run takes
    the journal (the kernel freed the lock) and writes itself in as the holder."""
    db = tmp_path / "run.db"
    code = textwrap.dedent(f"""
        import os, signal
        from modelglass.jobs._journal import Journal
        j = Journal({str(db)!r})
        j.begin([("a", {{"prompt": "x"}})])
        print(os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    lock = Path(f"{db}.lock")
    assert json.loads(lock.read_text())["pid"] == int(proc.stdout)
    with Journal(db) as j:
        assert [r.id for r in j.jobs()] == ["a"]
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert lock.read_text() == ""  # released: no holder named


def test_the_journal_file_is_private(tmp_path):
    with Journal(tmp_path / "run.db") as j:
        j.begin([("a", {"prompt": "x"})])
    for suffix in ("", ".lock"):
        assert (tmp_path / f"run.db{suffix}").stat().st_mode & 0o777 == 0o600


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


def test_a_real_run_refuses_a_simulated_journal_and_the_reverse(tmp_path):
    jobs = _jobs(tmp_path / "jobs.jsonl", 3)
    base = ("batch", str(jobs), "--out", str(tmp_path / "out"),
            "--journal", str(tmp_path / "run.db"), "--json")
    code, _ = _cli(*base, "--simulate")
    assert code == 0
    t0 = time.monotonic()
    code, output = _cli(*base, "--assume-available", "fal")       # real now: refused
    assert code == 2 and time.monotonic() - t0 < 30
    error = json.loads(output)["error"]
    assert error["type"] == "JournalError" and "simulated" in error["message"]
    assert "new --journal" in error["message"]

    real = ("batch", str(jobs), "--out", str(tmp_path / "real"),
            "--journal", str(tmp_path / "real.db"), "--json", "--assume-available", "fal")
    with simulate() as sim:  # the "real" run here talks to simulators through the environment
        code, output = _cli(*real)
        assert code == 0, output
        billed = sim.billed("fal")
    code, output = _cli(*real, "--simulate")
    assert code == 2
    error = json.loads(output)["error"]
    assert error["type"] == "JournalError" and "real run" in error["message"]
    assert billed == 3


def test_a_journal_whose_real_run_made_nothing_may_be_reused_with_simulate(tmp_path):
    """A first real run without keys fails every job before anything is sent: the journal holds
    nothing real, so trying the same command with --simulate is not refused."""
    jobs = _jobs(tmp_path / "jobs.jsonl", 2)
    base = ("batch", str(jobs), "--out", str(tmp_path / "out"),
            "--journal", str(tmp_path / "run.db"), "--json")
    env_keys = {k: os.environ.pop(k) for k in ("FAL_KEY", "REPLICATE_API_TOKEN", "OPENAI_API_KEY")
                if k in os.environ}
    try:
        code, _ = _cli(*base)                      # no key: every job fails, nothing sent
        assert code in (1, 2)
    finally:
        os.environ.update(env_keys)
    code, output = _cli(*base, "--simulate", "--retry-failed")
    assert code == 0, output
