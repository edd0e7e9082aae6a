"""The examples in examples/ run offline (they use the simulators) and finish cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


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
    assert proc.stdout.strip()
