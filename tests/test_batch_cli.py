"""`modelglass batch`: jobs file checks, images + manifest, progress, --json, resume."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelglass.cli import app
from modelglass.jobs._journal import Journal, file_sha256

runner = CliRunner()


def _jobs(path: Path, n: int, **extra: object) -> Path:
    lines = [json.dumps({"id": f"job-{i}", "prompt": f"a paper boat number {i}",
                         "quality": "draft", "seed": 10 + i, **extra}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, (r.stdout if "--json" in args and r.exit_code == 0 else r.output)


def test_bad_lines_are_reported_with_line_numbers_and_nothing_runs(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "fine"}\n'
                    '{"prompt": "broken",\n'
                    '\n'
                    '["not", "an", "object"]\n'
                    '{"prompt": "x", "n": "many"}\n'
                    '{"id": "a", "prompt": "y"}\n'
                    '{"id": "a", "prompt": "z"}\n')
    code, output = _run("batch", str(jobs), "--out", str(tmp_path / "out"), "--simulate")
    assert code == 2
    text = " ".join(output.split())
    wheres = (":2: not JSON", ":4: expected a JSON object", ":5: n:", ":7: id 'a' already "
              "used on line 6")
    for where in wheres:
        assert where in text, where
    assert [text.index(w) for w in wheres] == sorted(text.index(w) for w in wheres)  # line order
    assert "nothing was sent" in text
    assert not (tmp_path / "out").exists()


def test_batch_writes_images_and_a_manifest_that_matches_them(tmp_path):
    jobs = _jobs(tmp_path / "jobs.jsonl", 5)
    out = tmp_path / "out"
    code, output = _run("batch", str(jobs), "--out", str(out), "--simulate", "--json",
                        "--journal", str(tmp_path / "run.db"), "--budget", "1",
                        "--concurrency", "3")
    assert code == 0, output
    summary = json.loads(output)
    assert summary["counts"] == {"done": 5} and summary["simulated"] is True
    assert 0 < summary["spent_usd"] <= 1.0
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [f"job-{i}" for i in range(5)]
    for x in lines:
        assert {"id", "model", "provider", "cost_usd", "seed", "sha256", "fates",
                "error"} <= set(x)
        assert x["error"] is None and x["seed"] == [10 + int(x["id"].split("-")[1])]
        assert [file_sha256(f) for f in x["files"]] == x["file_sha256"]


def test_a_second_run_with_the_journal_skips_everything(tmp_path):
    jobs = _jobs(tmp_path / "jobs.jsonl", 3)
    args = ("batch", str(jobs), "--out", str(tmp_path / "out"), "--simulate",
            "--journal", str(tmp_path / "run.db"))
    assert _run(*args)[0] == 0
    code, output = _run(*args, "--json")
    assert code == 0
    assert json.loads(output)["counts"] == {"skipped": 3}


def test_budget_leaves_jobs_undone_and_says_how_to_finish(tmp_path):
    jobs = _jobs(tmp_path / "jobs.jsonl", 6, model="flux-schnell", provider="fal")
    args = ("batch", str(jobs), "--out", str(tmp_path / "out"), "--simulate",
            "--journal", str(tmp_path / "run.db"), "--concurrency", "1")
    code, output = _run(*args, "--budget", "0.01")
    assert code == 1
    text = " ".join(output.split())
    assert "left undone" in text and "Raise --budget" in text
    with Journal(tmp_path / "run.db") as j:
        states = [r.state for r in j.jobs()]
        assert states.count("done") == 3 and states.count("pending") == 3
    code, output = _run(*args, "--budget", "1", "--json")
    assert code == 0
    assert json.loads(output)["counts"] == {"skipped": 3, "done": 3}


def test_progress_bar_shows_counts_and_spend(tmp_path):
    jobs = _jobs(tmp_path / "jobs.jsonl", 2)
    code, output = _run("batch", str(jobs), "--out", str(tmp_path / "out"), "--simulate",
                        "--budget", "2")
    assert code == 0, output
    text = " ".join(output.split())
    assert "2 done 0 failed 0 cached" in text and "/$2.00" in text
    assert "2 jobs: 2 done" in text and "SIMULATED" in text
