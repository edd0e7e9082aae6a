"""Policy replay: a workload routed under two policies without calling any provider; the figures
are checked against a small workload computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _routing_models import TODAY, catalog, model, offer
from typer.testing import CliRunner

from modelglass.errors import InvalidRequest
from modelglass.routing import Policy
from modelglass.routing._replay import hosted_providers, read_workload, replay

# hero (test axes): weights prompt_adherence 2, photorealism 1; minimum prompt_adherence 6;
#   cost_weight 0.1, reference $0.05.  draft: prompt_adherence 1, speed 1; cost_weight 0.8,
#   reference $0.005, ceiling $0.05/image.
#   cheap: hero quality (2·6.5 + 6)/3 = 6.3333, draft quality (6.5 + 9)/2 = 7.75
#   fine:  hero quality (2·9 + 9)/3 = 9.0,      draft quality (9 + 4)/2 = 6.5
# hero totals: cheap 0.9·0.63333 + 0.1·0.05/0.06 = 0.6533; fine 0.81 + 0.1·0.05/0.09 = 0.8656
# draft totals: cheap 0.2·0.775 + 0.8·0.005/0.015 = 0.4217; fine 0.13 + 0.8·0.005/0.045 = 0.2189
CAT = catalog(
    cheap=model({"prompt_adherence": 6.5, "photorealism": 6, "speed": 9}, [offer("fal", 0.01)],
                commercial=False),
    fine=model({"prompt_adherence": 9, "photorealism": 9, "speed": 4}, [offer("openai", 0.04)]),
)

WORKLOAD = """\
{"id": "j1", "prompt": "a fox", "quality": "hero"}
{"id": "j2", "prompt": "a fox", "quality": "draft", "n": 2}

# comments and blank lines are skipped
{"id": "j3", "prompt": "a fox", "quality": "hero", "max_cost_usd": 0.02}
{"id": "j4", "prompt": "a fox", "quality": "hero", "commercial": true}
"""


@pytest.fixture
def jobs(tmp_path: Path) -> list:
    p = tmp_path / "jobs.jsonl"
    p.write_text(WORKLOAD)
    return read_workload(p)


def test_replay_figures_match_the_hand_computed_workload(jobs: list) -> None:
    no_openai = Policy({"providers": {"deny": ["openai"]}})
    r = replay(jobs, [("default", Policy()), ("no-openai", no_openai)], CAT,
               available=["fal", "openai"], today=TODAY)
    a, b = r.policies
    assert [o.offer for o in a.outcomes] == ["fine@openai", "cheap@fal", "cheap@fal",
                                            "fine@openai"]
    assert [o.offer for o in b.outcomes] == ["cheap@fal", "cheap@fal", "cheap@fal", None]
    assert a.spend_usd == pytest.approx(0.04 + 0.02 + 0.01 + 0.04)
    assert b.spend_usd == pytest.approx(0.01 + 0.02 + 0.01)
    assert a.mean_quality == pytest.approx((9 + 7.75 + 19 / 3 + 9) / 4)
    assert b.mean_quality == pytest.approx((19 / 3 + 7.75 + 19 / 3) / 3)
    assert a.mean_quality_by_axis() == pytest.approx({"draft": 7.75, "hero": (9 + 19 / 3 + 9) / 3})
    assert dict(a.by("provider")) == {"openai": 2, "fal": 2}
    assert dict(b.by("provider")) == {"fal": 3}
    assert dict(b.by("model")) == {"cheap": 3}
    assert [o.job_id for o in a.no_offer] == [] and [o.job_id for o in b.no_offer] == ["j4"]
    assert "1 policy" in b.no_offer[0].why and "1 licence" in b.no_offer[0].why
    assert [job.id for job, _ in r.differences()] == ["j1", "j4"]
    assert [job.line for job in jobs] == [1, 2, 5, 6]


def test_the_report_and_json_carry_the_same_figures(jobs: list) -> None:
    r = replay(jobs, [("default", Policy()), ("no-openai",
                                              Policy({"providers": {"deny": ["openai"]}}))],
               CAT, available=["fal", "openai"], today=TODAY)
    data = r.to_dict()
    assert data["jobs"] == 4 and data["differences"] == 2
    a, b = data["policies"]
    assert (a["spend_usd"], b["spend_usd"]) == (pytest.approx(0.11), pytest.approx(0.04))
    assert (a["no_eligible_offer"], b["no_eligible_offer"]) == (0, 1)
    assert b["by_provider"] == {"fal": 3}
    j4 = data["differing_jobs"][1]
    assert j4["id"] == "j4" and j4["choices"]["no-openai"]["offer"] is None
    table = {row[0]: row[1:] for row in r.table()}
    assert table["estimated spend"] == ("$0.1100", "$0.0400")
    assert table["no eligible offer"] == ("0", "1")
    assert table["provider openai"] == ("2", "0")
    assert table["mean quality (0–10)"] == ("8.02", "6.81")


def test_quality_is_measured_on_the_baseline_yardstick(jobs: list) -> None:
    # A policy that redefines hero to weigh only speed cannot make its choices look better:
    # both are scored on the baseline's hero weights.
    speedy = Policy({"axes": {"hero": {"weights": {"prompt_adherence": 0, "photorealism": 0,
                                                   "speed": 1}}}})
    r = replay(jobs[:1], [("default", Policy()), ("speedy", speedy)], CAT,
               available=["fal", "openai"], today=TODAY)
    assert r.policies[1].outcomes[0].offer == "cheap@fal"
    assert r.policies[1].outcomes[0].quality == pytest.approx(19 / 3)


def test_a_policys_own_axis_is_unknown_to_the_other(tmp_path: Path) -> None:
    p = tmp_path / "jobs.jsonl"
    p.write_text('{"prompt": "a banner", "quality": "social-card"}\n')
    card = Policy({"axes": {"social-card": {"extends": "thumbnail", "size": "1200x630"}}})
    r = replay(read_workload(p), [("default", Policy()), ("card", card)], CAT,
               available=["fal", "openai"], today=TODAY)
    base, mine = r.policies
    assert base.no_offer[0].why.startswith("unknown quality axis 'social-card'")
    assert mine.outcomes[0].offer is not None and mine.outcomes[0].job_id == "line-1"


def test_bad_workload_lines_are_all_reported_with_their_line(tmp_path: Path) -> None:
    p = tmp_path / "jobs.jsonl"
    p.write_text('{"id": "a", "prompt": "x"}\n{"prompt": ""}\nnot json\n{"id": "a", "prompt": "y"}'
                 '\n[1]\n{"prompt": "z", "colour": "red"}\n')
    with pytest.raises(InvalidRequest) as e:
        read_workload(p)
    msg = str(e.value)
    assert "the workload has 5 bad line(s)" in msg
    for line in (2, 3, 4, 5, 6):
        assert f"{p}:{line}: " in msg
    assert "id 'a' repeats line 1" in msg


def test_replay_assumes_the_hosted_providers_by_default() -> None:
    assert sorted(hosted_providers(CAT)) == ["fal", "openai", "replicate"]


def test_replay_command_prints_the_table_writes_json_and_a_plot(tmp_path: Path) -> None:
    from modelglass.cli import app

    policy = tmp_path / "team.yaml"
    policy.write_text("providers: {deny: [openai]}\n")
    workload = Path(__file__).resolve().parents[1] / "examples" / "workload.jsonl"
    assert sum(1 for line in workload.read_text().splitlines() if line.strip()) >= 200
    runner = CliRunner()
    r = runner.invoke(app, ["policy", "replay", str(workload), "--policy", str(policy),
                            "--vs", "default", "--json", "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    base, team = data["policies"]
    assert base["jobs"] == team["jobs"] == data["jobs"] >= 200
    assert "openai" not in team["by_provider"]
    assert sum(team["by_provider"].values()) == team["routed"] == \
        data["jobs"] - team["no_eligible_offer"]
    assert data["differences"] == len(data["differing_jobs"])
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["policy", "replay", str(workload), "--policy", str(policy),
                            "--assume-available", "fal"], terminal_width=160)
    assert r.exit_code == 0, r.output
    assert "estimated spend" in r.output and "no provider called" in r.output
    assert "provider replicate" not in r.output  # only fal was assumed available
