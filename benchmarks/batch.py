"""Benchmark: what a batch costs on top of the raw client, and what its journal costs per job.

Not a test. Run it and read the table::

    python benchmarks/batch.py              # --quick for 256 jobs; --jobs N

All figures in one run, against the OpenAI simulator in a child process (one blocking POST per
job, so no poll interval blurs the figure), ``--jobs`` (default 1,000) jobs at concurrency 64,
200 ms service time:

(1) ``AsyncClient.agenerate_many`` (no journal) versus the ideal wall time
    ``jobs / 64 × 0.2 s`` (target ≤ 1.15×) and versus the raw ``AsyncOpenAI`` client under the
    same load (``asyncio.Semaphore(64)`` + ``gather``; target ≤ 1.05×). Also versus
    ``AsyncClient.generate`` under the same ``Semaphore`` + ``gather``: the batch runner's own
    share (scheduling, budget, ids, outcomes) apart from what one ``generate`` costs.
(2) The same batch with a journal (SQLite WAL, ``synchronous=NORMAL``) and its images saved
    with provenance: the wall time and its ratio to (1).
(3) The journal alone, per job: every write a job makes (``begin``, ``started``, ``submitted``,
    ``generated``, ``downloaded``, ``done``), each its own committed transaction, timed over
    ``--jobs`` jobs on this disk, with ``synchronous=NORMAL`` (the default) and ``FULL``
    (``durable=True``). Target ≤ 2 ms per job.

Every figure is wall time (``time.perf_counter``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import modelglass as mg
from modelglass.jobs import JobEvent
from modelglass.jobs._journal import Journal
from modelglass.testing._openai import DRAWS

CONCURRENCY = 64
SERVICE_S = 0.2
TARGET_IDEAL = 1.15
TARGET_RAW = 1.05
TARGET_JOURNAL_MS = 2.0
FIELDS = {"quality": "thumbnail", "model": "gpt-image-1-mini", "provider": "openai"}
# The clock the clients judge lifecycles on: fixed, so the pinned model is routable on any date.
TODAY = dt.date(2026, 11, 15)
PROMPT = "a red bicycle against a brick wall"


def _requests(jobs: int) -> list[dict[str, Any]]:
    return [{"id": f"job-{i}", "prompt": PROMPT, "seed": 1, **FIELDS} for i in range(jobs)]


def _client(aiohttp: bool) -> mg.AsyncClient:
    from modelglass.providers.openai import OpenAIProvider

    return mg.AsyncClient(providers={"openai": OpenAIProvider(aiohttp=aiohttp)},
                          available=["openai"], today=TODAY)


async def batch_vs_raw(jobs: int, *, aiohttp: bool = False,
                       folder: Path | None = None) -> dict[str, float]:
    """(1) and (2): the batch without and with a journal, and the raw client, same load."""
    import openai

    async with _client(aiohttp) as client:
        for _ in range(DRAWS):  # warm: connections, imports, plans, the simulator's 16 renders
            await client.generate(PROMPT, seed=1, **FIELDS)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def generate_one() -> None:
            async with gate:
                await client.generate(PROMPT, seed=1, **FIELDS)

        t0 = time.perf_counter()
        await asyncio.gather(*(generate_one() for _ in range(jobs)))
        generate_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = [o async for o in client.agenerate_many(_requests(jobs), concurrency=CONCURRENCY,
                                                       limits={})]
        batch_s = time.perf_counter() - t0
        assert all(o.ok for o in done), [str(o.error) for o in done if not o.ok][:3]
        journal_s = None
        if folder is not None:
            t0 = time.perf_counter()
            done = [o async for o in client.agenerate_many(
                _requests(jobs), concurrency=CONCURRENCY, limits={},
                journal=folder / "run.db")]
            journal_s = time.perf_counter() - t0
            assert all(o.ok for o in done)
        payload = client.plan(PROMPT, seed=1, **FIELDS).payload

    kw: dict[str, Any] = {"http_client": openai.DefaultAioHttpClient()} if aiohttp else {}
    oc = openai.AsyncOpenAI(max_retries=0, **kw)
    await oc.images.generate(**payload)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def raw_one() -> None:
        async with sem:
            resp = await oc.images.generate(**payload)
            base64.b64decode(resp.data[0].b64_json)

    t0 = time.perf_counter()
    await asyncio.gather(*(raw_one() for _ in range(jobs)))
    raw_s = time.perf_counter() - t0
    await oc.close()
    ideal = jobs / CONCURRENCY * SERVICE_S
    out = {"jobs": jobs, "ideal_s": ideal, "batch_s": batch_s, "raw_s": raw_s,
           "generate_s": generate_s, "ratio_ideal": batch_s / ideal, "ratio_raw": batch_s / raw_s,
           "raw_ratio_ideal": raw_s / ideal, "ratio_generate": batch_s / generate_s}
    if journal_s is not None:
        out.update(journal_s=journal_s, journal_ratio=journal_s / batch_s)
    return out


def journal_cost(jobs: int, folder: Path, durable: bool) -> dict[str, float]:
    """(3): every write one job makes, each committed, per job."""
    with Journal(folder / f"cost-{durable}.db", durable=durable) as j:
        ids = [f"job-{i}" for i in range(jobs)]
        t0 = time.perf_counter()
        j.begin((i, {"prompt": PROMPT, "seed": 1}) for i in ids)
        for i in ids:
            j.started(i, offer_key="gpt-image-1-mini@openai", provider="openai", estimate=0.005)
            j.record(JobEvent(i, "submitted", offer_key="flux-schnell@fal", provider="fal",
                              request_id=f"req-{i}"))
            j.record(JobEvent(i, "generated", offer_key="flux-schnell@fal",
                              urls=(f"https://x/{i}.png",), cost_usd=0.003))
            j.record(JobEvent(i, "downloaded", offer_key="flux-schnell@fal",
                              sha256=("ab" * 32,)))
            j.done(i, cost=0.003, entry={"id": i, "model": "flux-schnell"},
                   files=[(f"/out/{i}-0.png", "cd" * 32)])
        total = time.perf_counter() - t0
    return {"durable": durable, "ms_per_job": total / jobs * 1e3, "writes_per_job": 6}


def _aiohttp_usable() -> bool:
    import openai

    try:
        openai.DefaultAioHttpClient()
    except (RuntimeError, ImportError, AttributeError):
        return False
    return True


def report(figures: dict[str, Any], transport: str) -> None:
    b = figures
    def ok(x: float, t: float) -> str:
        return "met" if x <= t else "MISSED"

    print(f"\n(1) {b['jobs']:g} jobs, concurrency {CONCURRENCY}, {SERVICE_S * 1e3:g} ms service "
          f"time (OpenAI simulator), transport: {transport}")
    print(f"  ideal {b['ideal_s']:.3f} s   agenerate_many {b['batch_s']:.3f} s   "
          f"raw AsyncOpenAI {b['raw_s']:.3f} s ({b['raw_ratio_ideal']:.3f}× ideal)")
    print(f"  batch ÷ ideal {b['ratio_ideal']:.3f}×  target ≤ {TARGET_IDEAL:.2f}×  "
          f"{ok(b['ratio_ideal'], TARGET_IDEAL)}")
    print(f"  batch ÷ raw   {b['ratio_raw']:.3f}×  target ≤ {TARGET_RAW:.2f}×  "
          f"{ok(b['ratio_raw'], TARGET_RAW)}")
    print(f"  the runner's own share: AsyncClient.generate + Semaphore({CONCURRENCY}) + gather "
          f"{b['generate_s']:.3f} s; batch ÷ that {b['ratio_generate']:.3f}×")
    if "journal_s" in b:
        print(f"(2) with a journal and images saved: {b['journal_s']:.3f} s, "
              f"{b['journal_ratio']:.3f}× the batch without")


def main() -> None:
    from overhead import Simulators

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 jobs (a smoke run)")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--no-observe", action="store_true", help="turn the observed-latency "
                        "store off (MODELGLASS_OBSERVE=0) to see the batch runner's own share: "
                        "the store commits to SQLite on every result")
    args = parser.parse_args()
    if args.no_observe:
        os.environ["MODELGLASS_OBSERVE"] = "0"
    jobs = args.jobs or (256 if args.quick else 1000)
    print(f"modelglass {mg.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()} ({platform.system()}), {os.cpu_count()} CPUs, observed store "
          f"{'off (MODELGLASS_OBSERVE=0)' if args.no_observe else 'on'}")
    with tempfile.TemporaryDirectory() as tmp, Simulators() as sim:
        sim.service_time("openai", SERVICE_S)
        runs = [("httpx (default)", asyncio.run(batch_vs_raw(jobs, folder=Path(tmp) / "h")))]
        if _aiohttp_usable():
            runs.append(("aiohttp", asyncio.run(batch_vs_raw(jobs, aiohttp=True,
                                                             folder=Path(tmp) / "a"))))
        costs = [journal_cost(jobs, Path(tmp), durable=d) for d in (False, True)]
    for transport, figures in runs:
        report(figures, transport)
    print(f"\n(3) journal writes per job ({costs[0]['writes_per_job']} committed transactions), "
          f"{jobs} jobs, target ≤ {TARGET_JOURNAL_MS:g} ms")
    for c in costs:
        mode = "FULL (durable=True)" if c["durable"] else "NORMAL (default)"
        met = "met" if c["ms_per_job"] <= TARGET_JOURNAL_MS else "MISSED"
        print(f"  synchronous={mode:<20} {c['ms_per_job']:.3f} ms/job  {met}")


if __name__ == "__main__":
    main()
