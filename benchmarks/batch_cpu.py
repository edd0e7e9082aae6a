"""Benchmark: per-job cost of modelglass against LiteLLM, side by side in one run.

Not a test, and LiteLLM is not a dependency: install it apart (it pins packages this project
uses at other versions), e.g. ``pip install --target /tmp/ll-site --no-deps litellm tiktoken
fastuuid pydantic-settings python-dotenv h2 hpack hyperframe jmespath`` and run::

    PYTHONPATH=/tmp/ll-site LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/batch_cpu.py

Against the OpenAI simulator in a child process (gpt-image-1-mini, one ~45 KB PNG as b64 JSON
per call):

(a) one call, sequentially, ``--calls`` times: ``Client.generate`` (routing, plan, budget,
    the full image check, provenance, events) versus ``litellm.image_generation`` (the reply
    decoded from base64, which LiteLLM leaves to the caller) — CPU seconds of this process
    per call (``time.process_time``), and the ratio (target ≤ 1.0×);
(b) ``--jobs`` jobs at concurrency 64, 200 ms service time: ``AsyncClient.agenerate_many``
    versus ``litellm.aimage_generation`` under ``asyncio.Semaphore(64)`` + ``gather`` — wall
    time, CPU time, the ratio of the two (target ≤ 1.0×) and modelglass's wall time over the
    ideal ``jobs / 64 × 0.2 s`` (target ≤ 1.25×).

Without LiteLLM importable, only modelglass's figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import modelglass as mg

CONCURRENCY = 64
SERVICE_S = 0.2
FIELDS = {"quality": "thumbnail", "model": "gpt-image-1-mini", "provider": "openai"}
TODAY = dt.date(2026, 11, 15)
PROMPT = "a red bicycle against a brick wall"


def _litellm() -> Any:
    try:
        import litellm
    except ImportError:
        return None
    litellm.suppress_debug_info = True
    return litellm


def _litellm_kw(payload: dict[str, Any]) -> dict[str, Any]:
    kw = {k: v for k, v in payload.items() if k not in ("model", "prompt")}
    return {"model": f"openai/{payload['model']}", "prompt": payload["prompt"],
            "api_base": os.environ["OPENAI_BASE_URL"], "api_key": os.environ["OPENAI_API_KEY"],
            **kw}


def one_call(calls: int) -> dict[str, float]:
    """(a): CPU seconds per sequential call, both sides."""
    out: dict[str, float] = {}
    with mg.Client(available=["openai"], today=TODAY, observed=False) as client:
        client.generate(PROMPT, seed=1, **FIELDS)  # warm: imports, connections, plans
        t0 = time.process_time()
        for _ in range(calls):
            client.generate(PROMPT, seed=1, **FIELDS)
        out["modelglass_ms"] = (time.process_time() - t0) / calls * 1000
        payload = client.plan(PROMPT, seed=1, **FIELDS).payload
    litellm = _litellm()
    if litellm is not None:
        kw = _litellm_kw(payload)
        litellm.image_generation(**kw)
        t0 = time.process_time()
        for _ in range(calls):
            resp = litellm.image_generation(**kw)
            base64.b64decode(resp.data[0].b64_json)
        out["litellm_ms"] = (time.process_time() - t0) / calls * 1000
    return out


async def many(jobs: int) -> dict[str, float]:
    """(b): the batch runner versus LiteLLM's async call under the same load."""
    reqs = [{"id": f"j{i}", "prompt": PROMPT, "seed": 1, **FIELDS} for i in range(jobs)]
    out: dict[str, float] = {}
    async with mg.AsyncClient(available=["openai"], today=TODAY, observed=False) as client:
        await client.generate(PROMPT, seed=1, **FIELDS)
        w0, c0 = time.perf_counter(), time.process_time()
        done = [o async for o in client.agenerate_many(reqs, concurrency=CONCURRENCY,
                                                       limits={})]
        out["modelglass_s"], out["modelglass_cpu_s"] = (time.perf_counter() - w0,
                                                        time.process_time() - c0)
        assert all(o.ok for o in done)
        payload = client.plan(PROMPT, seed=1, **FIELDS).payload
    litellm = _litellm()
    if litellm is not None:
        kw = _litellm_kw(payload)
        await litellm.aimage_generation(**kw)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one() -> None:
            async with gate:
                resp = await litellm.aimage_generation(**kw)
                base64.b64decode(resp.data[0].b64_json)

        w0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(jobs)))
        out["litellm_s"], out["litellm_cpu_s"] = (time.perf_counter() - w0,
                                                  time.process_time() - c0)
    return out


def main() -> None:
    from overhead import Simulators

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    print(f"modelglass {mg.__version__}, Python {platform.python_version()}, {os.cpu_count()} "
          f"CPUs; LiteLLM {'present' if _litellm() is not None else 'absent'}")
    with Simulators() as sim:
        sim.service_time("openai", 0.0)
        a = one_call(args.calls)
        sim.service_time("openai", SERVICE_S)
        b = asyncio.run(many(args.jobs))
    print(f"(a) one call, CPU per call over {args.calls}: modelglass {a['modelglass_ms']:.2f} ms"
          + (f", LiteLLM {a['litellm_ms']:.2f} ms: {a['modelglass_ms'] / a['litellm_ms']:.2f}× "
             f"(target ≤ 1.0×)" if "litellm_ms" in a else ""))
    ideal = args.jobs / CONCURRENCY * SERVICE_S
    print(f"(b) {args.jobs} jobs at concurrency {CONCURRENCY}, {SERVICE_S * 1000:.0f} ms service: "
          f"modelglass {b['modelglass_s']:.2f} s wall ({b['modelglass_s'] / ideal:.2f}× the ideal "
          f"{ideal:.3f} s, target ≤ 1.25×), {b['modelglass_cpu_s']:.2f} s CPU")
    if "litellm_s" in b:
        print(f"    LiteLLM {b['litellm_s']:.2f} s wall, {b['litellm_cpu_s']:.2f} s CPU: "
              f"modelglass ÷ LiteLLM {b['modelglass_s'] / b['litellm_s']:.2f}× wall, "
              f"{b['modelglass_cpu_s'] / b['litellm_cpu_s']:.2f}× CPU (target ≤ 1.0×)")


if __name__ == "__main__":
    main()
