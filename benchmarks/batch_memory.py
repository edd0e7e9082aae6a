"""Benchmark: how much a batch's memory grows per job (target ≤ 8 KB per job).

Not a test. Run it and read the table::

    python benchmarks/batch_memory.py            # 300 and 1,500 jobs; --jobs 300 1500 5000

Each size runs in a fresh child process against the simulators (themselves in another child
process, so their own bookkeeping is not counted): ``Client.generate_many`` with ``out=`` and a
journal, as ``modelglass batch`` runs it (the sync runner, concurrency 16, the OpenAI simulator's
1024² PNGs of about 45 KB). The child first runs a 64-job warm-up batch (imports, connections,
plans, caches), reads its resident set size, runs the measured batch *while holding its report*
(what a caller keeps), and reads it again:

- ``growth KB/job``: (RSS after − RSS before) ÷ jobs — what stays per job;
- ``peak KB/job``: (peak RSS − RSS before) ÷ jobs — what the run needed at its worst.

RSS comes from ``/proc/self/statm`` (Linux); the peak from ``getrusage``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGET_KB = 8.0
FIELDS = {"quality": "thumbnail", "model": "gpt-image-1-mini", "provider": "openai"}
TODAY = dt.date(2026, 11, 15)


def _rss_kb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024


def _peak_kb() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KB on Linux


def _requests(tag: str, n: int) -> list[dict[str, Any]]:
    return [{"id": f"{tag}-{i}", "prompt": f"a lantern on a jetty, variation {i}", "seed": i,
             **FIELDS} for i in range(n)]


def child(jobs: int, folder: Path) -> dict[str, Any]:
    """One measured batch in this process (see the module docstring)."""
    import gc

    import modelglass as mg

    client = mg.Client(available=["openai"], today=TODAY)
    warm = client.generate_many(_requests("warm", 64), concurrency=16, limits={},
                                out=folder / "warm", journal=folder / "warm.db")
    assert all(o.ok for o in warm)
    del warm
    requests = _requests("job", jobs)  # the caller's input: not the batch's growth
    gc.collect()
    before, peak_before = _rss_kb(), _peak_kb()
    report = client.generate_many(requests, concurrency=16, limits={},
                                  out=folder / "out", journal=folder / "run.db")
    gc.collect()
    after, peak = _rss_kb(), _peak_kb()
    assert all(o.ok for o in report), [str(o.error) for o in report if not o.ok][:3]
    held = sum(len(i.__dict__.get("data", b"")) for o in report if o.result
               for i in o.result.images)
    return {"jobs": jobs, "growth_kb_per_job": (after - before) / jobs,
            "peak_kb_per_job": (max(peak, peak_before) - before) / jobs,
            "bytes_held_per_job": held / jobs, "rss_before_mb": before / 1024,
            "rss_after_mb": after / 1024}


def main() -> None:
    from overhead import Simulators

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="*", default=[300, 1500])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.folder))))
        return
    print(f"Python {platform.python_version()}, {platform.machine()} ({platform.system()}), "
          f"{os.cpu_count()} CPUs; target ≤ {TARGET_KB:g} KB per job")
    rows = []
    with Simulators() as sim:
        sim.service_time("openai", 0.0)
        for n in args.jobs:
            with tempfile.TemporaryDirectory() as tmp:
                out = subprocess.run([sys.executable, __file__, "--child", str(n), "--folder",
                                      tmp], capture_output=True, text=True, check=True,
                                     env=os.environ.copy())
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'jobs':>6} {'growth KB/job':>14} {'peak KB/job':>12} {'image bytes held/job':>21} "
          f"{'RSS before → after':>22}")
    for r in rows:
        met = "met" if r["growth_kb_per_job"] <= TARGET_KB else "MISSED"
        print(f"{r['jobs']:>6} {r['growth_kb_per_job']:>14.1f} {r['peak_kb_per_job']:>12.1f} "
              f"{r['bytes_held_per_job']:>21,.0f} {r['rss_before_mb']:>9.1f} → "
              f"{r['rss_after_mb']:.1f} MB  {met}")


if __name__ == "__main__":
    main()
