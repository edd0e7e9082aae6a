"""`modelglass eval` / `mg.evaluate`: a shipped suite run under a budget, journaled and resumable,
scored by the real text check (OCR) on simulator images, recorded in the observed store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _sim_fixtures
import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass._eval import evaluate, load_suite
from modelglass.catalog._observed import ObservedStore
from modelglass.checks import quoted_text
from modelglass.cli import app
from modelglass.errors import InvalidRequest

sim = _sim_fixtures.sim
_fresh = _sim_fixtures.fresh

MODELS = "flux-schnell,gpt-image-2"
KEYS = {"offer", "check", "n", "passed", "pass_rate", "cost_usd", "cost_per_accepted_usd"}


def sent(s: Any) -> int:
    return sum(len(s.requests(p)) for p in ("openai", "fal", "replicate"))


def client(store: ObservedStore) -> mg.Client:
    return mg.Client(available=["openai", "fal", "replicate"], observed=store)


def test_the_text_suite_ships_50_short_prompts_in_several_scripts() -> None:
    suite = load_suite("text")
    assert suite.check == "text" and len(suite.prompts) >= 50
    assert len({p.id for p in suite.prompts}) == len(suite.prompts)
    assert {p.lang for p in suite.prompts} >= {"en", "zh", "ja"}
    for p in suite.prompts:
        assert quoted_text(p.prompt) == p.text  # the check reads exactly what the suite expects
        if p.lang == "en":
            assert 1 <= len(p.text.split()) <= 8
    first = suite.prompts[:4]
    assert any(p.lang != "en" for p in first)  # a small --n still sees another script


def test_evaluate_scores_each_offer_and_records_the_verdicts(sim: Any, tmp_path: Path) -> None:
    store = ObservedStore(tmp_path / "observed.sqlite")
    sim.text_accuracy("flux-schnell", 0.0)   # never spells it right
    with client(store) as c:
        report = evaluate(MODELS, n=4, client=c, quality="thumbnail",
                          journal=tmp_path / "eval.db")
    data = report.to_dict()
    offers = {o["offer"]: o for o in data["offers"]}
    assert len(offers) == 2 and all(KEYS <= set(o) for o in offers.values())
    schnell = next(o for k, o in offers.items() if k.startswith("flux-schnell@"))
    gpt = next(o for k, o in offers.items() if k.startswith("gpt-image-2@"))
    assert (schnell["n"], schnell["passed"], schnell["pass_rate"]) == (4, 0, 0.0)
    assert schnell["cost_per_accepted_usd"] is None and schnell["cost_usd"] > 0
    assert gpt["passed"] == gpt["n"] == 4 and gpt["pass_rate"] == 1.0
    assert gpt["cost_per_accepted_usd"] == pytest.approx(gpt["cost_usd"] / 4, rel=1e-3)
    # every verdict went to the client's observed store, by prompt class
    for o in offers.values():
        for cls, tally in o["by_class"].items():
            assert store.check_rate(o["offer"], "text", prompt_class=cls) == \
                (tally["passed"], tally["n"])
    assert schnell["by_class"]["other"]["n"] == 1  # the fourth prompt is Chinese


def test_a_rerun_with_the_journal_pays_nothing_twice(sim: Any, tmp_path: Path) -> None:
    store = ObservedStore(tmp_path / "observed.sqlite")
    journal = tmp_path / "eval.db"
    with client(store) as c:
        first = evaluate(MODELS, n=3, client=c, quality="thumbnail", journal=journal)
        requests = sent(sim)
        again = evaluate(MODELS, n=3, client=c, quality="thumbnail", journal=journal)
    assert sent(sim) == requests  # nothing went out again
    assert again.batch.counts() == {"skipped": 6}
    assert again.to_dict()["offers"] == first.to_dict()["offers"]
    assert first.batch.spent_usd > 0 and again.batch.spent_usd == 0  # this run paid nothing
    # and the verdicts were not recorded twice
    total = sum(store.check_rate(o.offer, "text")[1] for o in first.offers)
    assert total == sum(o.n for o in first.offers)


def test_the_budget_is_never_passed(sim: Any, tmp_path: Path) -> None:
    store = ObservedStore(tmp_path / "observed.sqlite")
    with client(store) as c:
        report = evaluate("gpt-image-2", n=6, client=c, quality="thumbnail", budget=0.03,
                          journal=tmp_path / "eval.db")
    data = report.to_dict()
    assert data["spent_usd"] <= 0.03 + 1e-9
    assert data["undone"] and data["counts"].get("done", 0) >= 1
    assert data["offers"][0]["n"] == data["counts"]["done"]


def test_cli_eval_json_and_plot(tmp_path: Path) -> None:
    plot = tmp_path / "eval.png"
    journal = tmp_path / "eval.db"
    args = ["eval", "--suite", "text", "--models", MODELS, "--n", "2", "--quality", "thumbnail",
            "--simulate", "--json", "--journal", str(journal), "--plot", str(plot)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["simulated"] is True and data["suite"] == "text" and data["check"] == "text"
    assert len(data["offers"]) == 2 and all(KEYS <= set(o) for o in data["offers"])
    assert sum(o["n"] + o["unknown"] for o in data["offers"]) == 4
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000
    assert data["plot"] == str(plot)
    rerun = CliRunner().invoke(app, args[:-2])  # same journal: everything is skipped
    assert rerun.exit_code == 0, rerun.output
    again = json.loads(rerun.stdout)
    assert again["counts"] == {"skipped": 4} and again["offers"] == data["offers"]


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(InvalidRequest, match="shipped suites: text"):
        evaluate("flux-schnell", suite="nope")
    with pytest.raises(InvalidRequest, match="n must be"):
        evaluate("flux-schnell", n=0)
    r = CliRunner().invoke(app, ["eval", "--models", "flux-schnell", "--plot", "x.jpg"])
    assert r.exit_code != 0 and "--plot" in r.output
