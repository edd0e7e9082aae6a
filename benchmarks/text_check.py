"""Benchmark: the text check's wall time per 1024×1024 image (issue 14; target ≤ 1.5 s).

Not a test. Run it and read the lines::

    python benchmarks/text_check.py            # --images 8 --repeat 3 by default

What is timed: :meth:`modelglass.checks.TextCheck.check` on simulated 1024×1024 PNG posters
(``modelglass.testing.render_image``; each has its quoted text drawn large, plus the
``SIMULATED`` label and seed line, so OCR finds 3–5 lines), half of them misspelled. That is the
whole check: decoding the PNG, our own pad, RapidOCR's detection, angle classification and
recognition (PP-OCRv6 on onnxruntime, CPU), and the scoring. The engine is loaded once before
timing (its load is printed apart: it happens once per process). Each image is checked
``--repeat`` times, interleaved, and the median over every check is the figure; min and max
show the spread (this machine's 2 cores are shared, so single runs vary: the load average and
the CPU time per check are printed to read the wall time against). For comparison the
blank check (Pillow only) is timed on the same images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import modelglass as mg
from modelglass.checks import BlankCheck, TextCheck, _ocr
from modelglass.result import GeneratedImage
from modelglass.testing import render_image

PROMPTS = [
    'a neon sign above a diner door that says "OPEN LATE TONIGHT"',
    'a vintage travel poster with the words "VISIT LISBON"',
    'a coffee cup with "Good Morning" written on it',
    'a protest banner reading "SAVE THE BEES"',
    'a birthday cake with "Happy 40th Maria" in icing',
    'a bookshop window with "Used Books 2 for 10"',
    'a bakery sign 「欢迎光临」',
    'a movie poster titled "THE LAST LIGHTHOUSE"',
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    images = []
    for i in range(args.images):
        prompt = PROMPTS[i % len(PROMPTS)]
        data = render_image(prompt, 100 + i, 1024, 1024, "png", misspell=bool(i % 2))
        images.append((GeneratedImage(data=data, mime="image/png", width=1024, height=1024),
                       mg.ImageRequest(prompt=prompt)))
    t0 = time.perf_counter()
    _ocr._load()
    load_s = time.perf_counter() - t0
    text, blank = TextCheck(), BlankCheck()
    text_s: list[float] = []
    cpu_s: list[float] = []
    blank_s: list[float] = []
    verdicts: dict[str, int] = {}
    for _ in range(args.repeat):
        for img, req in images:
            t, c = time.perf_counter(), time.process_time()
            result = text.check(img, req)
            text_s.append(time.perf_counter() - t)
            cpu_s.append(time.process_time() - c)
            verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
            t = time.perf_counter()
            blank.check(img, req)
            blank_s.append(time.perf_counter() - t)
    median = statistics.median(text_s)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {_ocr.engine_version()}")
    print(f"engine load (once per process): {load_s:.2f} s")
    print(f"text check per 1024x1024 image: median {median:.2f} s, min {min(text_s):.2f} s, "
          f"max {max(text_s):.2f} s over {len(text_s)} checks of {len(images)} images "
          f"(target <= 1.5 s: {'met' if median <= 1.5 else 'missed'})")
    print(f"  CPU time per check (all onnxruntime threads): median "
          f"{statistics.median(cpu_s):.2f} s; load average while it ran: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"blank check per image: median {statistics.median(blank_s) * 1000:.1f} ms")
    print(f"verdicts: {json.dumps(verdicts, sort_keys=True)} (half the images are misspelled)")


if __name__ == "__main__":
    main()
