"""Benchmark: how often the real text check misreads a simulated model that spells perfectly.

Not a test. Every test and ``modelglass eval --simulate`` that scores text rests on this: the
simulators draw the prompt's quoted text into their placeholder images, and the text check
(RapidOCR, PP-OCRv6) must read a correctly spelled render as ``pass`` at any seed, or a perfect
model scores below 100 % and a test that expects it flakes with the seed it drew. Run::

    python benchmarks/sim_legibility.py                    # the text suite, 16 seeds, 1024 px
    python benchmarks/sim_legibility.py --prompts 4 --seeds 60 --size 816 --random-seeds

For each of the shipped ``text`` suite's first ``--prompts`` prompts, ``--seeds`` renders (the
seeds OpenAI's simulator uses for its first answers, ``k × 100``; or random ones, as fal's
simulator draws for an endpoint that takes no seed) are checked; it prints each render that is
not a ``pass`` (what OCR read, its confidence) and the count of each verdict.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import modelglass as mg
from modelglass._eval import load_suite
from modelglass.checks import TextCheck
from modelglass.result import GeneratedImage
from modelglass.testing import render_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--random-seeds", action="store_true")
    args = ap.parse_args()
    rng = random.Random(7)
    check = TextCheck()
    verdicts: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    for p in load_suite("text").prompts[:args.prompts]:
        for k in range(args.seeds):
            seed = rng.randrange(0, 2**31) if args.random_seeds else k * 100
            data = render_image(p.prompt, seed, args.size, args.size)
            image = GeneratedImage(data=data, mime="image/png", width=args.size,
                                   height=args.size, simulated=True)
            r = check.check(image, mg.ImageRequest(prompt=p.prompt))
            verdicts[r.verdict] += 1
            if r.verdict != "pass":
                print(f"{p.id} seed {seed}: {r.verdict}, read {r.observed!r} "
                      f"(confidence {r.metrics.get('confidence')})", flush=True)
    total = sum(verdicts.values())
    print(f"{total} renders at {args.size} px in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))
          + f"; read right {verdicts['pass']} of {total}")


if __name__ == "__main__":
    main()
