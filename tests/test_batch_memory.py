"""Bounded memory: a batch that saves its images keeps paths, not bytes, so its resident set
grows by a few KB per job, not by every image (about 45 KB each here, MBs for real ones).

Each batch runs in a child process (``benchmarks/batch_memory.py --child``) against the
simulators in this one, so the figure is the batch's own. The margin is generous (the
benchmark's target is 8 KB per job; holding the images measured 47–60 KB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelglass.jobs._spill import SavedImage
from modelglass.testing import simulate

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "batch_memory.py"
LIMIT_KB_PER_JOB = 20.0


@pytest.mark.parametrize("jobs", [300, 1500])
def test_a_saving_batch_grows_by_a_few_kb_per_job_not_by_its_images(tmp_path, jobs):
    with simulate() as sim:
        env = {**os.environ, **sim.env, "PYTHONPATH": str(Path(__file__).parents[1])}
        proc = subprocess.run([sys.executable, str(SCRIPT), "--child", str(jobs), "--folder",
                               str(tmp_path)], env=env, capture_output=True, text=True,
                              timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    print(figures)
    assert figures["bytes_held_per_job"] == 0
    assert figures["growth_kb_per_job"] <= LIMIT_KB_PER_JOB, figures


def test_outcomes_of_a_saving_batch_read_their_images_from_disk(tmp_path):
    import modelglass as mg

    reqs = [{"id": f"m{i}", "prompt": f"a tin kettle {i}", "quality": "draft",
             "model": "flux-schnell", "provider": "fal", "seed": i} for i in range(3)]
    with simulate():
        report = mg.Client(available=["fal"]).generate_many(reqs, out=tmp_path / "out",
                                                            limits={})
    for o in report:
        img = o.result.images[0]
        assert isinstance(img, SavedImage) and "data" not in img.__dict__
        assert img.path == o.files[0] and img.data == o.files[0].read_bytes()
        assert img.metadata["sha256"] == img.sha256 and o.result.plan is None
        assert o.manifest()["offer"] == "flux-schnell@fal"
        copy = img.save(tmp_path / "copies" / f"{o.id}.png")
        assert Path(copy).read_bytes() == img.data
        with pytest.raises(mg.InvalidRequest):
            img.save(copy)  # never over an existing file
