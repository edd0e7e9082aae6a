"""Compare models before choosing one: a table, one prompt across models as a contact sheet,
cost against quality as a plot, and the whole catalog as one HTML page.

Runs offline: the generations come from the simulators (see quickstart.py).

    python examples/catalog_comparison.py [out-dir]
"""

from __future__ import annotations

import sys
from pathlib import Path

import modelglass as mg
from modelglass.testing import simulate

MODELS = ["flux-schnell", "flux-dev", "sdxl", "gpt-image-2"]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cat = mg.Catalog.default()

    table = cat.compare(MODELS, axis="hero").to_dict()
    for row in table["rows"]:
        print(f"{row['model']:14} hero quality {row['hero quality']:.2f}  "
              f"cheapest {row['cheapest 1024²']}")

    # Which offers really send a negative prompt (not just: which models could take one)?
    keys = [r.key for r in cat.query(supports=["negative_prompt"], provider="fal")]
    print("fal offers that send a negative prompt:", ", ".join(keys))

    with simulate(), mg.Client(available=["openai", "fal", "replicate"]) as client:
        sheet = mg.compare(client, "a cozy reading nook, morning light", MODELS, seed=11,
                               budget=0.50)
    print(f"contact sheet: {sheet.render(out / 'sheet.png')} "
          f"(total ${sheet.cost_usd:.3f}, simulated)")
    for tile in sheet.tiles:
        notes = "; ".join(f"{f['control']} {f['kind']}" for f in tile.fates) or "all honored"
        print(f"  {tile.model:13} {tile.provider:10} {notes}")

    print("plot:", cat.plot("hero", out / "hero.png"))
    print("page:", cat.write_html(out / "catalog.html"))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out"))
