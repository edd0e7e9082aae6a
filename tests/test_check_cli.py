"""`modelglass generate --check`: the verdicts printed and in the JSON, paid retries saved."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelglass._provenance import read_metadata
from modelglass.cli import app

runner = CliRunner()
SIGN = 'a shop sign that says "OPEN LATE"'


def test_generate_check_prints_each_verdict(tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", SIGN, "--quality", "draft", "--simulate", "--seed", "5",
                            "--check", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "checks" in r.output and "'OPEN LATE' → 'open late'" in r.output
    (png,) = tmp_path.glob("*.png")
    assert read_metadata(png)["checks"][-1]["verdict"] == "pass"


def test_expect_text_checks_and_a_retry_that_also_fails_is_saved_as_rejected(
        tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", SIGN, "--quality", "draft", "--simulate", "--seed", "5",
                            "--expect-text", "CLOSED", "--on-fail", "retry", "--json",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    text = [c for c in data["checks"] if c["name"] == "text"]
    assert [c["verdict"] for c in text] == ["fail"] and data["rejected"] == 1
    assert len(data["attempts"]) == 2
    assert len(list(tmp_path.glob("*-rejected-0.png"))) == 1


def test_a_bad_on_fail_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    r = runner.invoke(app, ["generate", SIGN, "--simulate", "--check", "--on-fail", "twice",
                            "--out", str(tmp_path)])
    assert r.exit_code == 2 and "on_fail" in r.output
    assert not list(tmp_path.glob("*.png"))


def test_batch_check_writes_each_jobs_verdicts_to_the_manifest(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "sign", "prompt": SIGN, "quality": "draft", "seed": 5})
                    + "\n" + json.dumps({"id": "other", "prompt": SIGN, "quality": "draft",
                                         "seed": 5, "expect_text": "CLOSED"}) + "\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["batch", str(jobs), "--simulate", "--check", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rows = {j["id"]: j for j in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    verdicts = {i: [c["verdict"] for c in row["checks"] if c["name"] == "text"]
                for i, row in rows.items()}
    assert verdicts == {"sign": ["pass"], "other": ["fail"]}

