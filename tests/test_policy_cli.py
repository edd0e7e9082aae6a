"""``--policy`` on the commands that run jobs: generate and batch route by the policy file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelglass.cli import app


def test_generate_and_batch_route_by_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("providers: {allow: [replicate]}\n")
    runner = CliRunner()
    r = runner.invoke(app, ["generate", "a fox", "-q", "draft", "--simulate", "--policy",
                            str(policy), "--json", "--out", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["provider"] == "replicate"
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"id": "a", "prompt": "a fox", "quality": "draft"}\n'
                    '{"id": "b", "prompt": "a cat", "quality": "thumbnail"}\n')
    r = runner.invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "b"), "--simulate",
                            "--policy", str(policy), "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "b" / "manifest.jsonl").read_text()
            .splitlines()]
    assert [(row["id"], row["status"], row["provider"]) for row in rows] == \
        [("a", "done", "replicate"), ("b", "done", "replicate")]


def test_a_bad_policy_file_stops_the_command_with_its_line(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("providers:\n  allow: [replicat]\n")
    r = CliRunner().invoke(app, ["route", "a fox", "--policy", str(policy),
                                 "--assume-available", "fal"])
    assert r.exit_code == 2
    assert "p.yaml:2: providers.allow[0]: unknown provider 'replicat'; did you mean " \
           "'replicate'?" in r.output.replace("\n", "")


def test_a_client_generates_on_the_policys_own_axis(tmp_path: Path) -> None:
    import modelglass as mg
    from modelglass.testing import simulate

    policy = tmp_path / "p.yaml"
    policy.write_text("axes:\n  social-card: {extends: thumbnail, size: 1200x630, "
                      "weights: {text_rendering: 0.4}, max_cost_usd: 0.02}\n")
    with simulate():
        client = mg.Client(policy=mg.Policy.load(policy), available=["fal"])
        r = client.generate("launch banner that says 'v2 is here'", quality="social-card")
    assert r.decision.quality == "social-card"
    w, h = r.images[0].width, r.images[0].height  # the axis's size, as the wire rounds it
    assert abs(w - 1200) / 1200 <= 0.02 and abs(h - 630) / 630 <= 0.02
    assert r.cost_usd is not None and r.cost_usd <= 0.02


def test_max_latency_flag_is_a_hard_limit(tmp_path: Path, monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(tmp_path / "empty.db"))  # nothing observed
    runner = CliRunner()
    r = runner.invoke(app, ["route", "a fox", "-q", "draft", "--max-latency", "0.5",
                            "--assume-available", "fal,openai,replicate", "--json"])
    data = json.loads(r.stdout)
    assert data["choice"] is None and r.exit_code != 0
    latency = [x for x in data["rejected"] if x["constraint"] == "latency"]
    assert latency and all("limit 0.5 s" in x["reason"] for x in latency)
    # A generous limit passes the offers whose latency is known (unknown cannot be checked).
    r = runner.invoke(app, ["route", "a fox", "-q", "thumbnail", "--max-latency", "120",
                            "--assume-available", "fal,openai,replicate", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["choice"] is not None
    assert all(x["constraint"] != "latency" or "latency unknown" in x["reason"]
               for x in data["rejected"])
