"""Faults of the disk and the file: a full disk (RLIMIT_FSIZE in a child), a damaged journal, a
journal that is a folder or not SQLite, a file at --out. Each is a typed error with exit 2
before anything more is sent; the next run resumes without buying anything twice, adopting
paid images already on disk; --repair rebuilds a damaged journal from the images."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.cli import app
from modelglass.jobs._journal import file_sha256
from modelglass.testing import simulate

_MAIN = ("import sys\n"
         "from modelglass._destination import trust_origin\n"
         "for url in sys.argv.pop(1).split(): trust_origin(url)\n"
         "from modelglass.cli import app\n"
         "app(prog_name='modelglass')\n")
MIX = [("fal", {"model": "flux-schnell", "quality": "draft"}),
       ("replicate", {"model": "flux-schnell", "quality": "draft"}),
       ("openai", {"model": "gpt-image-2", "quality": "thumbnail"})]
CREATES = {"fal": "submit", "replicate": "create", "openai": "generate"}


def _jobs(path: Path, n: int, mix: list[tuple[str, dict[str, Any]]] = MIX) -> Path:
    lines = []
    for i in range(n):
        provider, extra = mix[i % len(mix)]
        lines.append(json.dumps({"id": f"j{i}", "prompt": f"a brass owl number {i}", "seed": i,
                                 "provider": provider, **extra}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _prompt(record: Any) -> str | None:
    body = record.json if isinstance(record.json, dict) else {}
    return body.get("prompt") or (body.get("input") or {}).get("prompt")


def _creates(sim: Any) -> Counter[str | None]:
    return Counter(_prompt(r) for p, s in CREATES.items() for r in sim.requests(p, stage=s)
                   if r.fault is None)


def _manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_a_full_disk_stops_the_batch_with_exit_2_and_the_rerun_buys_nothing_twice(tmp_path):
    """The child's file size limit is hit mid-batch (the journal's WAL grows past it): exit 2
    with a JournalError, no traceback; the rerun finishes, adopts the images written before
    the stop, sends no create twice, and its manifest lists every image that was paid for."""
    jobs = _jobs(tmp_path / "jobs.jsonl", 18)
    with simulate(poll_interval=0.02) as sim:
        env = {**os.environ, **sim.env, "PYTHONPATH": str(Path(__file__).parents[1])}
        env.pop("MODELGLASS_LIMITS", None)
        cmd = [sys.executable, "-c", _MAIN, " ".join(sim._origins()), "batch", str(jobs),
               "--out", str(tmp_path / "out"), "--journal", str(tmp_path / "run.db"), "--json",
               "--concurrency", "3", "--assume-available", "fal,replicate,openai"]

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                               preexec_fn=limit, check=False)
        assert first.returncode == 2, first.stderr[-2000:]
        assert "Traceback" not in first.stderr
        error = json.loads(first.stdout)["error"]
        assert error["type"] in ("JournalError", "StorageError") and error["exit_code"] == 2
        assert "run the same command again" in error["message"]
        sent_first = sum(_creates(sim).values())
        assert 0 < sent_first < 18  # it stopped starting jobs

        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                               check=False)
        assert again.returncode == 0, again.stderr[-2000:]
        creates = _creates(sim)
        assert max(creates.values()) == 1, [k for k, v in creates.items() if v > 1]
        billed = sum(sim.billed(p) for p in CREATES)  # type: ignore[arg-type]
        manifest = _manifest(tmp_path / "out")
        assert {m["status"] for m in manifest} <= {"done", "skipped"}, manifest
        assert len(manifest) == billed == 18
        for m in manifest:
            assert [file_sha256(f) for f in m["files"]] == m["file_sha256"]
        adopted = [m for m in manifest if m.get("adopted")]
        print(f"first run sent {sent_first}; {len(adopted)} adopted from disk on the rerun")


def _cli(*args: str) -> tuple[int, dict[str, Any]]:
    r = CliRunner().invoke(app, [*args, "--json"])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, json.loads(r.stdout)


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 200, os.urandom(8192),
                                     b"SQLite format 3\x00" + os.urandom(4000)],
                         ids=["empty", "text", "garbage", "sqlite-header-then-garbage"])
def test_a_damaged_journal_is_a_journal_error_before_anything_is_sent(tmp_path, content):
    jobs = _jobs(tmp_path / "jobs.jsonl", 3, MIX[:1])
    db = tmp_path / "run.db"
    db.write_bytes(content)
    with simulate() as sim:
        code, data = _cli("batch", str(jobs), "--out", str(tmp_path / "out"), "--journal",
                          str(db), "--assume-available", "fal")
        if content == b"":  # an empty file is a new journal
            assert code == 0, data
            return
        assert code == 2, data
        assert data["error"]["type"] == "JournalError" and data["error"]["exit_code"] == 2
        assert "--repair" in data["error"]["message"]
        assert sim.requests("fal") == []


def test_a_truncated_journal_is_repaired_from_the_images_on_disk(tmp_path):
    jobs = _jobs(tmp_path / "jobs.jsonl", 6)
    db, out = tmp_path / "run.db", tmp_path / "out"
    args = ("batch", str(jobs), "--out", str(out), "--journal", str(db),
            "--assume-available", "fal,replicate,openai")
    with simulate() as sim:
        code, _ = _cli(*args)
        assert code == 0
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
        for side in ("-wal", "-shm"):
            Path(f"{db}{side}").unlink(missing_ok=True)
        code, err = _cli(*args)
        assert code == 2 and err["error"]["type"] == "JournalError"
        code, repaired = _cli(*args, "--repair")
        assert code == 0 and sorted(repaired["adopted"]) == [f"j{i}" for i in range(6)]
        assert Path(repaired["moved_to"]).exists()
        sent = sum(_creates(sim).values())
        code, summary = _cli(*args)
        assert code == 0 and summary["counts"] == {"skipped": 6}, summary
        assert sum(_creates(sim).values()) == sent == 6   # nothing bought twice


def test_a_journal_that_is_a_folder_or_another_database_is_refused(tmp_path):
    import sqlite3

    jobs = _jobs(tmp_path / "jobs.jsonl", 2, MIX[:1])
    (tmp_path / "folder.db").mkdir()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE photos (name TEXT)")
    for journal in (tmp_path / "folder.db", other):
        code, data = _cli("batch", str(jobs), "--out", str(tmp_path / "out"), "--journal",
                          str(journal), "--simulate")
        assert code == 2 and data["error"]["type"] == "JournalError", data
        assert str(journal) in data["error"]["message"]
    with pytest.raises(mg.JournalError):
        mg.Client().generate_many([{"prompt": "x"}], journal=tmp_path / "folder.db")


def test_out_is_an_existing_file_refused_before_anything_is_sent(tmp_path):
    jobs = _jobs(tmp_path / "jobs.jsonl", 2, MIX[:1])
    (tmp_path / "out").write_text("not a folder")
    with simulate() as sim:
        code, data = _cli("batch", str(jobs), "--out", str(tmp_path / "out"), "--journal",
                          str(tmp_path / "run.db"), "--assume-available", "fal")
        assert code == 2 and data["error"]["type"] == "InvalidRequest", data
        assert "is a file, not a folder" in data["error"]["message"]
        assert sim.requests("fal") == []
        with pytest.raises(mg.InvalidRequest):
            mg.Client().generate_many([{"prompt": "x"}], out=tmp_path / "out")


def test_a_file_in_the_way_of_an_image_stops_the_batch_not_the_money(tmp_path):
    """A stranger's file where a job's image goes: StorageError (exit 2), the job's result is
    kept by its request id, and once the file is moved the rerun finishes without paying again."""
    jobs = _jobs(tmp_path / "jobs.jsonl", 3, MIX[:1])
    out = tmp_path / "out"
    out.mkdir()
    (out / "j1-0.png").write_bytes(b"someone else's file")
    args = ("batch", str(jobs), "--out", str(out), "--journal", str(tmp_path / "run.db"),
            "--assume-available", "fal", "--concurrency", "1")
    with simulate() as sim:
        code, data = _cli(*args)
        assert code == 2 and data["error"]["type"] == "StorageError", data
        assert data["error"]["message"].startswith(f"{out / 'j1-0.png'} already exists")
        (out / "j1-0.png").unlink()
        code, summary = _cli(*args)
        assert code == 0, summary
        assert max(_creates(sim).values()) == 1 and sim.billed("fal") == 3


def test_images_written_before_done_was_committed_are_adopted_not_bought_again(tmp_path):
    """The run stopped after writing a job's images but before committing ``done`` (a full
    disk on the commit): the rerun finds the files carrying the sha256 the journal recorded at
    download, and adopts them. An OpenAI job has no request id to resume by: without
    adoption it would be written off as possibly charged."""
    import sqlite3

    jobs = _jobs(tmp_path / "jobs.jsonl", 3)
    db, out = tmp_path / "run.db", tmp_path / "out"
    args = ("batch", str(jobs), "--out", str(out), "--journal", str(db),
            "--assume-available", "fal,replicate,openai")
    with simulate() as sim:
        assert _cli(*args)[0] == 0
        with sqlite3.connect(db) as con:  # as if the last commit never happened
            con.execute("UPDATE jobs SET state='downloaded', entry=NULL, cost=NULL")
            con.execute("DELETE FROM files")
        code, summary = _cli(*args)
        assert code == 0 and summary["counts"] == {"skipped": 3}, summary
        assert sum(_creates(sim).values()) == 3
    manifest = _manifest(out)
    assert all(m["adopted"] and m["status"] == "skipped" for m in manifest)
    assert all(m["cost_usd"] and m["model"] for m in manifest)


def test_a_binary_or_bom_jobs_file(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    code, data = _cli("batch", str(jobs), "--out", str(tmp_path / "out"), "--simulate")
    assert code == 2 and data["error"]["type"] == "InvalidRequest"
    assert str(jobs) in data["error"]["message"]
    jobs.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "a kite"}).encode() + b"\n")
    code, data = _cli("batch", str(jobs), "--out", str(tmp_path / "out"), "--simulate")
    assert code == 0, data


async def test_the_async_batch_stops_on_a_storage_error_too(tmp_path):
    """agenerate_many: a stranger's file where an image goes raises StorageError once the
    jobs in flight end; every job that ran is in the journal for the rerun."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a1-0.png").write_bytes(b"not ours")
    reqs = [{"id": f"a{i}", "prompt": f"a lacquer box {i}", "quality": "draft",
             "model": "flux-schnell", "provider": "fal", "seed": i} for i in range(4)]
    with simulate() as sim:
        async with mg.AsyncClient(available=["fal"]) as client:
            seen = []
            with pytest.raises(mg.StorageError):
                async for o in client.agenerate_many(reqs, concurrency=1, out=out, limits={},
                                                     journal=tmp_path / "run.db"):
                    seen.append(o.status)
            assert "done" in seen
        (out / "a1-0.png").unlink()
        again = mg.Client(available=["fal"]).generate_many(reqs, out=out, limits={},
                                                           journal=tmp_path / "run.db")
        assert all(o.ok for o in again)
        assert len(sim.requests("fal", stage="submit")) == 4
