"""`import modelglass` stays light: no torch, diffusers or provider clients until they are used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "diffusers", "transformers", "openai", "fal_client", "replicate", "ray", "trustme",
         "rapidocr", "onnxruntime", "cv2")


def _imported_after(code: str) -> set[str]:
    probe = (f"import sys; {code}; "
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_modelglass_imports_no_heavy_dependency() -> None:
    assert _imported_after("import modelglass") == set()


def test_routing_and_planning_import_no_provider_client() -> None:
    code = ("import modelglass as mg; c = mg.Client(available=['fal','openai','replicate']); "
            "d = c.route('a fox', quality='draft'); c.plan('a fox', quality='hero')")
    assert _imported_after(code) == set()


def test_cli_module_imports_no_heavy_dependency() -> None:
    assert _imported_after("import modelglass.cli") == set()


def test_checks_load_no_ocr_until_a_text_check_runs() -> None:
    code = ("import modelglass.checks as c, modelglass as mg; "
            "c.checking_of(True); c.run_checks(c.builtin_checks(), [], mg.ImageRequest(prompt='a'))")
    assert _imported_after(code) == set()
