"""The Ray engine on a local Ray instance (CPU only): hosted jobs as tasks against the
simulators, local jobs on a LocalWorker actor holding its pipeline cache; the journal stays
with the driver."""

from __future__ import annotations

from pathlib import Path

import _sim_fixtures
import pytest

ray = pytest.importorskip("ray")

import modelglass as mg
from modelglass.jobs._batch import Batch
from modelglass.jobs._journal import Journal, file_sha256
from modelglass.jobs._ray import run_ray

# One simulator for the module: Ray's worker processes outlive a test, and the fal client
# reads its hosts once per process.
sim = _sim_fixtures.sim


@pytest.fixture(scope="module")
def cluster(sim):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def test_hosted_jobs_run_as_ray_tasks_with_the_journal_on_the_driver(sim, cluster, tmp_path):
    client = mg.Client(available=["fal"])
    reqs = [{"id": f"r{i}", "prompt": f"a ray of light {i}", "quality": "draft",
             "model": "flux-schnell", "provider": "fal", "seed": i} for i in range(6)]
    before = len(sim.requests("fal", stage="submit"))
    batch = Batch(client, reqs, concurrency=2, budget=1.0, journal=tmp_path / "run.db",
                  out=tmp_path / "out", limits={})
    report = run_ray(batch)
    assert report.counts() == {"done": 6}
    assert report.engine["engine"] == "ray"
    assert len(sim.requests("fal", stage="submit")) - before == 6
    assert 0 < report.spent_usd <= 1.0 and batch.budget.reserved == 0
    with Journal(tmp_path / "run.db") as j:
        jobs = j.jobs()
    assert [r.state for r in jobs] == ["done"] * 6
    for r in jobs:
        assert r.files and all(file_sha256(p) == sha for p, sha in r.files)
    # the rerun, still on Ray, sends nothing
    again = run_ray(Batch(client, reqs, concurrency=4, budget=1.0, journal=tmp_path / "run.db",
                          out=tmp_path / "out", limits={}))
    assert again.counts() == {"skipped": 6}
    assert len(sim.requests("fal", stage="submit")) - before == 6


def test_local_jobs_run_on_an_actor_that_keeps_its_pipeline_loaded(cluster, tmp_path):
    pytest.importorskip("torch")
    from _local_fixtures import tiny_catalog, tiny_folder

    local = mg.LocalBackend(device="cpu", paths={"sd": tiny_folder("sd")})
    client = mg.Client(catalog=tiny_catalog("sd"), local=local, available=["local"])
    reqs = [{"id": f"l{i}", "prompt": "a photo of a fox", "model": "sd", "provider": "local",
             "seed": s, "size": "64x64", "steps": 2} for i, s in enumerate([1, 2, 1])]
    report = run_ray(Batch(client, reqs, concurrency=2, out=tmp_path / "out", limits={}),
                     local_workers=1, local_worker_gpus=0)
    assert report.counts() == {"done": 3}, [str(o.error) for o in report]
    (worker,) = report.engine["local_workers"]
    assert worker["jobs"] == 3 and len(worker["loaded"]) == 1   # loaded once, used three times
    import os
    assert worker["pid"] != os.getpid()
    same_seed = [report[0].result.images[0].sha256, report[2].result.images[0].sha256]
    assert same_seed[0] == same_seed[1] != report[1].result.images[0].sha256


def test_cli_batch_runs_on_ray(cluster, tmp_path):
    import json

    from typer.testing import CliRunner

    from modelglass.cli import app

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps({"id": f"c{i}", "prompt": f"a comet {i}",
                                          "quality": "thumbnail", "model": "gpt-image-2",
                                          "provider": "openai"}) for i in range(3)) + "\n")
    r = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "out"),
                                 "--simulate", "--engine", "ray", "--json", "--budget", "1"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["counts"] == {"done": 3}
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["c0", "c1", "c2"]


# -- outcome checks on the workers ----------------------------------------------------------------
SIGN = 'a shop sign that says "OPEN LATE"'
FAL = "flux-schnell@fal"


@pytest.fixture
def scripted(sim):
    """The module's simulator, reset before and after: a worker's fal client keeps talking to
    it (its hosts are read once per process), even in a later test's simulated CLI run."""
    sim.reset()
    yield sim
    sim.reset()


def _sign_jobs(p: float) -> list[dict[str, object]]:
    """Three quoted-text jobs whose seeds (with accuracy ``p``) pass at once, fail then pass
    on the retry's seed, and fail twice."""
    from modelglass.testing._images import spells_right

    def right(s: int) -> bool:
        return spells_right(p, "fal-ai/flux/schnell", SIGN, s)

    seeds = [next(s for s in range(1000) if want(s)) for want in (
        right, lambda s: not right(s) and right(s + 1), lambda s: not right(s) and not right(s + 1))]
    return [{"id": f"s{i}", "prompt": SIGN, "model": "flux-schnell", "provider": "fal",
             "seed": s} for i, s in enumerate(seeds)]


def _verdicts(outcome) -> tuple:
    r = outcome.result
    return (outcome.status, [(c.image, c.name, c.verdict) for c in r.checks],
            [i.seed for i in r.images], r.extra["checks"]["tries"],
            [(i.seed, [c["verdict"] for c in i.metadata["checks"]]) for i in r.rejected],
            round(outcome.cost_usd, 6))


def test_outcome_checks_run_on_the_workers_with_the_same_verdicts_as_the_async_engine(
        scripted, cluster, tmp_path):
    import asyncio

    sim = scripted
    sim.text_accuracy(FAL, 0.5)
    reqs = _sign_jobs(0.5)
    options = {"concurrency": 2, "limits": {}, "check": True, "on_fail": "retry"}
    client = mg.Client(available=["fal"], observed=False)

    async def on_async() -> tuple[list, mg.Budget]:
        budget = mg.Budget(1.0)
        async with mg.AsyncClient(available=["fal"], observed=False) as aclient:
            outcomes = [o async for o in aclient.agenerate_many(reqs, budget=budget, **options)]
        return sorted(outcomes, key=lambda o: o.index), budget

    expected, async_budget = asyncio.run(on_async())
    sent = len(sim.requests("fal", stage="submit"))
    assert sent == 5  # one try, then two each: every retry was sent and paid for
    journal = tmp_path / "run.db"
    batch = Batch(client, reqs, budget=1.0, journal=journal, out=tmp_path / "out", **options)
    report = run_ray(batch)
    assert report.engine["engine"] == "ray"
    assert len(sim.requests("fal", stage="submit")) - sent == 5
    assert [_verdicts(o) for o in report] == [_verdicts(o) for o in expected]
    texts = [[c.verdict for c in o.result.checks if c.name == "text"] for o in report]
    assert texts == [["pass"], ["pass"], ["fail"]]
    # the retries were counted against the batch budget, as on the async engine, none held
    assert batch.budget.spent == pytest.approx(async_budget.spent) and batch.budget.reserved == 0
    assert report.spent_usd == pytest.approx(sum(o.cost_usd for o in expected))
    for o in report:  # the manifest line and the journal entry carry the checks
        assert [c["verdict"] for c in o.manifest()["checks"]] == [
            c.verdict for c in o.result.checks]
    # the rejected tries' images are on disk (saved by the driver-side relay before each
    # retry went out) and named; s2's first try, returned in the end, has no rejected copy
    rejected = {o.id: [Path(r["file"]).name for r in o.manifest().get("rejected", [])]
                for o in report}
    assert [len(v) for v in rejected.values()] == [0, 1, 1]
    assert {f.name for f in (tmp_path / "out").glob("*.png")} == {
        "s0-0.png", "s1-0.png", "s2-0.png", *rejected["s1"], *rejected["s2"]}
    from modelglass.jobs._journal import Journal

    with Journal(journal, lock=False) as j:  # written by the relay, when each retry was sent
        kept = {r.id: [Path(e["file"]).name for e in r.rejected] for r in j.jobs()}
    assert kept["s0"] == [] and kept["s1"] == rejected["s1"]  # s1's first try, before its retry
    assert set(kept["s2"]) <= set(rejected["s2"])  # a try returned in the end is not "rejected"
    again = run_ray(Batch(client, reqs, budget=1.0, journal=journal, out=tmp_path / "out",
                          **options))
    assert again.counts() == {"skipped": 3}
    assert [[c["verdict"] for c in o.manifest()["checks"] if c["name"] == "text"]
            for o in again] == texts  # read back from the journal


def test_on_ray_a_retry_the_budget_cannot_hold_is_not_sent_and_partials_are_checked(
        scripted, cluster, tmp_path):
    sim = scripted
    sim.text_accuracy(FAL, 0.0)
    client = mg.Client(available=["fal"], observed=False)
    once = client.plan(SIGN, model="flux-schnell", provider="fal", seed=3).estimate.usd
    reqs = [{"id": "b", "prompt": SIGN, "model": "flux-schnell", "provider": "fal", "seed": 3}]
    batch = Batch(client, reqs, budget=1.5 * once, limits={}, check=True, on_fail="retry")
    (outcome,) = run_ray(batch)
    assert len(sim.requests("fal", stage="submit")) == 1
    assert [c.verdict for c in outcome.result.checks if c.name == "text"] == ["fail"]
    assert "BudgetExceeded" in outcome.result.extra["checks"]["notes"][0]
    assert batch.budget.spent == pytest.approx(once) and batch.budget.reserved == 0
    # a partial result (one URL gone) comes back from the worker partial, its image checked
    sim.fail("fal", kind="expired", times=1)
    reqs = [{"id": "p", "prompt": "a red fox", "model": "flux-schnell", "provider": "fal",
             "seed": 5, "n": 2}]
    (outcome,) = run_ray(Batch(client, reqs, budget=1.0, limits={}, check=["blank"],
                               out=tmp_path / "out"))
    r = outcome.result
    assert outcome.status == "done" and r.partial and len(r.images) == 1
    assert [(c.image, c.name, c.verdict) for c in r.checks] == [(0, "blank", "pass")]
    assert r.missing[0].error_type == "DownloadFailed"
    assert outcome.manifest()["checks"][0]["verdict"] == "pass"
    # strict: the job fails, and the image it paid for comes back from the worker, checked, saved
    sim.fail("fal", kind="expired", times=1)
    reqs[0].update(id="strict", strict=True)
    (outcome,) = run_ray(Batch(client, reqs, budget=1.0, limits={}, check=["blank"],
                               out=tmp_path / "out"))
    assert outcome.status == "failed" and len(outcome.files) == 1
    assert [c.verdict for c in outcome.result.checks] == ["pass"]


def test_cli_batch_check_runs_on_ray(cluster, tmp_path):
    import json

    from typer.testing import CliRunner

    from modelglass.cli import app

    jobs = tmp_path / "jobs.jsonl"  # as tests/test_check_cli.py runs them on the local engine
    jobs.write_text(json.dumps({"id": "sign", "prompt": SIGN, "quality": "draft", "seed": 5})
                    + "\n" + json.dumps({"id": "other", "prompt": SIGN, "quality": "draft",
                                         "seed": 5, "expect_text": "CLOSED"}) + "\n")
    r = CliRunner().invoke(app, ["batch", str(jobs), "--out", str(tmp_path / "out"),
                                 "--simulate", "--engine", "ray", "--json", "--check",
                                 "--journal", str(tmp_path / "run.db"), "--budget", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["counts"] == {"done": 2}
    rows = {j["id"]: j for j in map(json.loads, (tmp_path / "out" / "manifest.jsonl")
                                    .read_text().splitlines())}
    assert [c["name"] for c in rows["sign"]["checks"]] == ["blank", "same-bytes", "text"]
    verdicts = {i: [c["verdict"] for c in row["checks"] if c["name"] == "text"]
                for i, row in rows.items()}
    assert verdicts == {"sign": ["pass"], "other": ["fail"]}
    with Journal(tmp_path / "run.db") as j:
        entries = {r.id: r.entry for r in j.jobs()}
    assert {i: [c["verdict"] for c in e["checks"] if c["name"] == "text"]
            for i, e in entries.items()} == verdicts


def test_a_jobs_estimate_and_retry_holds_settle_as_one():
    from modelglass.jobs._ray import _settle_holds

    def run(charges):
        b = mg.Budget(1.0)
        _settle_holds(b, b.reserve(0.1), b.reserve(0.2), charges)
        return round(b.spent, 6), b.reserved, b.overruns

    assert run([0.1]) == (0.1, 0, [])        # no retry went out: its hold is released
    assert run([0.25]) == (0.25, 0, [])      # a retry's cost comes from its own hold
    assert run([None]) == (0.3, 0, [])       # an unknown cost keeps both holds as spent
    assert run([]) == (0.0, 0, [])           # nothing charged: both released
    assert run([0.4])[0] == 0.4 and run([0.4])[2]  # more than both held: an overrun, recorded


def test_a_batch_of_an_async_client_runs_on_ray_with_its_settings(sim, cluster, tmp_path):
    """The worker builds the driver's client class from the job spec (no import of the package
    in the Ray layer); an AsyncClient's jobs run on its blocking twin, with its settings."""
    client = mg.AsyncClient(available=["fal"], max_retries=0)
    reqs = [{"id": f"a{i}", "prompt": f"an async ray {i}", "model": "flux-schnell",
             "provider": "fal", "seed": i} for i in range(2)]
    sim.fail("fal", status=500, times=1)  # max_retries=0 on the worker: not retried
    report = run_ray(Batch(client, reqs, concurrency=1, budget=1.0, limits={}))
    assert report.engine["engine"] == "ray"
    assert report.counts() == {"failed": 1, "done": 1}
