"""Generate a draft image, save it with its provenance, and see why that model was chosen.

Runs offline: ``simulate()`` starts loopback simulators of OpenAI, fal and Replicate and points
the real clients at them. Outside the ``with`` block, set OPENAI_API_KEY / FAL_KEY /
REPLICATE_API_TOKEN and the same code talks to the real providers.

    python examples/quickstart.py [out-dir]
"""

from __future__ import annotations

import sys
from pathlib import Path

import modelglass as mg
from modelglass.testing import simulate


def main(out: Path) -> None:
    with simulate(), mg.Client() as client:
        result = client.generate("a red bicycle against a brick wall", quality="draft", seed=7)
        path = result.images[0].save(out / "bicycle.png", overwrite=True)  # a rerun replaces it
        print(result)                                   # model, provider, cost, latency
        print("saved", path, "(simulated)" if result.simulated else "")
        for fate in result.fates:                       # what happened to each control you set
            print("  ", fate)
        print(result.decision.explain(runners_up=2, rejected_per_group=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out"))
