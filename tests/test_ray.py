"""The Ray engine on a local Ray instance (CPU only): hosted jobs as tasks against the
simulators, local jobs on a LocalWorker actor holding its pipeline cache; the journal stays
with the driver."""

from __future__ import annotations

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
