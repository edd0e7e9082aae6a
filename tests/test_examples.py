"""The examples in examples/ run offline (they use the simulators) and finish cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

#: What each example's docstring promises, as lines its output must hold (regular expressions).
PROMISED = {
    "quickstart.py": [r"^ImageResult\(1 image\(s\) from \S+@\S+, cost \$",
                      r"^saved \S*bicycle\.png \(simulated\)", r"^Routing for quality 'draft'",
                      r"^Choice: "],
    "retries_and_fallback.py": [r"try 1: RateLimited \(HTTP 429\)",
                                r"try 2: ProviderError \(HTTP 503\)",
                                r"@replicate +try 1: ok", r"^requests that reached fal: 3$",
                                r"^refused: .*refused", r"^requests that reached Replicate: 1 "
                                r"\(no retry, no fallback\)$"],
    "async_batch.py": [r"^(\d+) of 12 made; spent \$0\.0\d+ of \$0\.02; [1-9]\d* refused by "
                       r"the budget$"],
    "cost_aware_routing.py": [r"^hero offers with text_rendering >= 8, cheapest first:",
                              r"^under \$0\.05 the router picks \S+",
                              r"^call \d: refused by the budget", r"^\d images, spent \$0\.\d+ "
                              r"of \$0\.10$"],
    "checked_text.py": [r"^seed 1: pass \(read 'open late'\)",  # a failed check, the paid retry
                        r"^seed \d: pass \(read 'open late'\), [1-9] rejected try, cost \$0\.\d+$",
                        r"^\S+@\S+: the text check passed \d of [4-9] tries$"],
    "catalog_comparison.py": [r"^flux-schnell +hero quality \d", r"^fal offers that send a "
                              r"negative prompt: .*sdxl@fal", r"^contact sheet: \S+sheet\.png",
                              r"^plot: \S+hero\.png$", r"^page: \S+catalog\.html$"],
}


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    # quickstart, cost-aware routing with a budget, async fan-out, catalog comparison
    assert {"quickstart.py", "cost_aware_routing.py", "async_batch.py",
            "catalog_comparison.py"} <= names


def test_catalog_comparison_writes_the_sheet_plot_and_page(tmp_path: Path) -> None:
    path = next(p for p in EXAMPLES if p.name == "catalog_comparison.py")
    proc = subprocess.run([sys.executable, str(path), str(tmp_path / "out")], check=False,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("sheet.png", "hero.png", "catalog.html"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(path)], check=False, cwd=tmp_path,
                          capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for pattern in PROMISED[path.name]:  # every example has its promise written down
        assert re.search(pattern, proc.stdout, re.MULTILINE), (pattern, proc.stdout[-3000:])


def test_the_async_example_reaches_its_budget_refusal_and_spends_within_it(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "async_batch.py")],
                          check=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    made, spent, refused = re.search(r"(\d+) of 12 made; spent \$([\d.]+) of \$0\.02; (\d+) "
                                     r"refused", proc.stdout).groups()  # type: ignore[union-attr]
    assert int(made) + int(refused) == 12 and int(refused) > 0 and float(spent) <= 0.02


PRIVATE_IMPORT = re.compile(r"^\s*(?:from|import)\s+modelglass(?:\.\w+)*\._\w+", re.MULTILINE)


def test_readme_docs_and_examples_import_no_private_module() -> None:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *EXAMPLES]
    found = {f.name: PRIVATE_IMPORT.findall(f.read_text("utf-8")) for f in files}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_the_public_names_the_docs_show_exist() -> None:
    import modelglass as mg

    assert callable(mg.compare) and callable(mg.read_metadata)
    assert mg.ObservedStore.__name__ == "ObservedStore"
    assert callable(mg.Catalog.plot) and callable(mg.Catalog.write_html)
    assert {"compare", "read_metadata", "ObservedStore"} <= set(mg.__all__)
