"""SIGKILL `modelglass batch --on-fail retry` while its outcome checks send paid retries, then
resume: every paid image is on disk (the job's image, or one a check rejected), or its job is
named as possibly charged; and a crash buys no extra tries (at most 1 + max_check_retries
creates per job, across all the runs).

Every simulated model misspells the quoted text, so every try fails its text check and every
job pays for a retry: kills land before, during and after retries. The rejected try's image is
saved (``<id>-rejected-<sha>.png``) and journaled before its retry is sent, so a run that stops
mid-retry loses none of it, and the rerun counts the tries already made.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _sim_fixtures
import pytest
from test_kill_resume import MIX, SUBMIT_STAGES, _batch_cmd, _env, _prompt, _submits

from modelglass._provenance import read_metadata
from modelglass.jobs._journal import file_sha256

TRIALS = 2
MAX_TRIES = 2  # the CLI's on_fail retry: max_check_retries 1
#: The simulated models of MIX, as each simulator names them (sim.text_accuracy keys).
ENDPOINTS = ("fal-ai/flux/schnell", "black-forest-labs/flux-schnell", "gpt-image-2")

sim = _sim_fixtures.sim_fixture(service_time=0.3)


def _write_jobs(path: Path, trial: int, n: int = 9) -> None:
    lines = []
    for i in range(n):
        provider, extra = MIX[i % len(MIX)]
        lines.append(json.dumps({"id": f"r{trial}-{i}", "seed": i, "provider": provider,
                                 "prompt": f'retry trial {trial} job {i}: a sign "OPEN LATE"',
                                 **extra}))
    path.write_text("\n".join(lines) + "\n")


def _run_and_kill(cmd: list[str], env: dict[str, str], sim: Any, rng: random.Random) -> int:
    """Start the batch, SIGKILL it a few creates later (at a random moment); 1 if it was
    killed, 0 if it had finished."""
    target = _submits(sim) + rng.randint(3, 8)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _submits(sim) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.4))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return int(killed)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_during_check_retries_loses_no_paid_image_and_buys_no_extra_try(
        sim, tmp_path, trial):
    rng = random.Random(4200 + trial)
    sim.reset()
    for endpoint in ENDPOINTS:
        sim.text_accuracy(endpoint, 0.0)
    _write_jobs(tmp_path / "jobs.jsonl", trial)
    cmd = _batch_cmd(tmp_path, sim) + ["--on-fail", "retry"]
    cmd[cmd.index("--budget") + 1] = "1.0"  # the budget is not what this test is about
    env = _env(sim)
    kills = sum(_run_and_kill(cmd, env, sim, rng) for _ in range(2))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert kills >= 1
    assert done.returncode in (0, 1), done.stderr[-2000:]

    # 1. No job paid for more tries than max_check_retries allows, crashes or not.
    sent = Counter(_prompt(r) for p, s in SUBMIT_STAGES.items()
                   for r in sim.requests(p, stage=s) if r.fault is None)  # type: ignore[arg-type]
    assert max(sent.values()) <= MAX_TRIES, sent

    # 2. Every create a job paid for left its image on disk (its own, or a rejected try's,
    #    each with the sha256 the manifest names), unless the job is named possibly charged.
    out = tmp_path / "out"
    manifest = {m["id"]: m for m in map(json.loads, (out / "manifest.jsonl").read_text()
                                        .splitlines())}
    jobs = [json.loads(x) for x in (tmp_path / "jobs.jsonl").read_text().splitlines()]
    retried = 0
    for job in jobs:
        m = manifest[job["id"]]
        rejected = m.get("rejected", [])
        for r in rejected:
            path = Path(r["file"])
            assert path.is_file() and file_sha256(path) == r["file_sha256"], r
            assert read_metadata(path)["rejected"] is True
            assert read_metadata(path)["sha256"] == r["sha256"]
        on_disk = len(m.get("files", [])) + len(rejected)
        paid = sent[job["prompt"]]
        retried += paid > 1
        if m["status"] in ("done", "skipped"):
            assert on_disk == paid, (job["id"], m["status"], paid, on_disk)
        else:
            assert m["status"] == "possibly_charged", m
            assert paid - 1 <= on_disk <= paid, (job["id"], paid, on_disk)  # one may be lost
    assert retried >= 3  # the kills landed among retries, not only first tries
    # nothing else was written: each file is a job's image or a rejected try's
    named = {Path(f).name for m in manifest.values() for f in m.get("files", [])} | {
        Path(r["file"]).name for m in manifest.values() for r in m.get("rejected", [])}
    assert {p.name for p in out.glob("*.png")} == named


def test_a_batch_saves_the_images_its_checks_rejected_and_names_them_in_the_manifest(
        sim, tmp_path):
    import modelglass as mg

    sim.reset()
    sim.text_accuracy("fal-ai/flux/schnell", 0.0)
    out = tmp_path / "out"
    job = {"id": "a", "prompt": 'a sign "OPEN LATE"', "model": "flux-schnell",
           "provider": "fal", "seed": 3}
    with mg.Client(available=["fal"], observed=False) as client:
        report = client.generate_many([job], out=out, journal=tmp_path / "run.db",
                                      check=["text"], on_fail="retry", max_check_retries=2)
    (outcome,) = report
    assert len(sim.requests("fal", stage="submit")) == 3 and outcome.ok
    rejected = outcome.manifest()["rejected"]
    # three paid tries (seeds 3, 4, 5), all misspelled: the first is returned, the other two
    # are on disk as rejected; the first's rejected copy (saved when its retry went out) is gone
    assert [r["seed"] for r in rejected] == [4, 5] and outcome.result.images[0].seed == 3
    assert {p.name for p in out.glob("*.png")} == {"a-0.png", *(Path(r["file"]).name
                                                               for r in rejected)}
    for r in rejected:
        meta = read_metadata(r["file"])
        assert (meta["rejected"], meta["sha256"], meta["offer"]) == (True, r["sha256"],
                                                                    "flux-schnell@fal")
        assert [c["verdict"] for c in meta["checks"]] == ["fail"]
        assert file_sha256(r["file"]) == r["file_sha256"]
    assert [img.sha256 for img in outcome.result.rejected] == [r["sha256"] for r in rejected]
    # the journal keeps them: a rerun skips the job and names the same rejected files
    with mg.Client(available=["fal"], observed=False) as client:
        (again,) = client.generate_many([job], out=out, journal=tmp_path / "run.db",
                                        check=["text"], on_fail="retry", max_check_retries=2)
    assert again.status == "skipped" and again.manifest()["rejected"] == rejected
    assert len(sim.requests("fal", stage="submit")) == 3


def test_a_rejected_try_that_cannot_be_kept_stops_the_retries(sim, tmp_path, monkeypatch):
    """Disk full when the rejected try's image is saved: no retry is paid for; the batch stops
    (a StorageError) and the one paid try is the job's image, on disk and in the journal."""
    import errno

    import modelglass as mg
    from modelglass.errors import StorageError
    from modelglass.result import GeneratedImage

    real_save = GeneratedImage.save

    def save(self: GeneratedImage, path: Any, **kw: Any) -> Any:
        if "-rejected-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, path, **kw)

    monkeypatch.setattr(GeneratedImage, "save", save)
    sim.reset()
    sim.text_accuracy("fal-ai/flux/schnell", 0.0)
    job = {"id": "a", "prompt": 'a sign "OPEN LATE"', "model": "flux-schnell",
           "provider": "fal", "seed": 3}
    with mg.Client(available=["fal"], observed=False) as client, \
            pytest.raises(StorageError, match="No space left"):
        client.generate_many([job], out=tmp_path / "out", journal=tmp_path / "run.db",
                             check=["text"], on_fail="retry", max_check_retries=2)
    assert len(sim.requests("fal", stage="submit")) == 1  # the retries were not sent
    from modelglass.jobs._journal import Journal

    with Journal(tmp_path / "run.db") as journal:
        (record,) = journal.jobs()
    assert record.state == "done" and [Path(p).name for p, _ in record.files] == ["a-0.png"]
    assert record.files_ok() == []


def test_a_rerun_that_fetches_the_rejected_try_again_still_gets_its_retry(sim, tmp_path):
    """The run stopped after a try was rejected and saved, before its retry went out: the rerun
    fetches that try again by its request id (free), and it is the same try, so the retry
    max_check_retries allows is still sent (once)."""
    import sqlite3

    import modelglass as mg
    from modelglass.jobs._spill import rejected_name

    sim.reset()
    sim.text_accuracy("fal-ai/flux/schnell", 0.0)
    out, journal = tmp_path / "out", tmp_path / "run.db"
    job = {"id": "a", "prompt": 'a sign "OPEN LATE"', "model": "flux-schnell",
           "provider": "fal", "seed": 3}
    with mg.Client(available=["fal"], observed=False) as client:  # one try, checked, kept
        (first,) = client.generate_many([job], out=out, journal=journal, check=["text"])
    image = first.result.images[0]
    assert len(sim.requests("fal", stage="submit")) == 1
    # what a run stopped right after the rejected save leaves: the try downloaded and saved as
    # rejected, its retry not sent, the job not done
    db = sqlite3.connect(journal)
    (rid,) = db.execute("SELECT request_id FROM calls WHERE job_id='a'").fetchone()
    assert rid
    rejected = out / rejected_name("a", image)
    (out / "a-0.png").rename(rejected)
    db.execute("UPDATE jobs SET state='downloaded', entry=NULL, cost=NULL WHERE id='a'")
    db.execute("DELETE FROM files WHERE job_id='a'")
    db.execute("INSERT INTO rejected (job_id, sha256, tries, seed, offer_key, path, file_sha256,"
               " request_id) VALUES ('a', ?, 1, 3, 'flux-schnell@fal', ?, ?, ?)",
               (image.sha256, str(rejected), file_sha256(rejected), rid))
    db.commit()
    db.close()
    with mg.Client(available=["fal"], observed=False) as client:
        (again,) = client.generate_many([job], out=out, journal=journal, check=["text"],
                                        on_fail="retry", max_check_retries=1)
    assert len(sim.requests("fal", stage="submit")) == 2  # the first try, and its one retry
    assert again.ok and again.resumed
    assert again.result.extra["checks"]["tries"] == 2
    # both paid images on disk: one the job's, the other rejected
    manifest = again.manifest()
    assert len(manifest["files"]) + len(manifest.get("rejected", [])) == 2
