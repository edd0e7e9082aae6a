"""Reading a JSONL file of requests (``modelglass batch`` jobs, a ``policy replay`` workload):
one JSON object a line, blank lines and ``#`` comments skipped, every bad line reported with its
number rather than the first one only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._paths import read_text

__all__ = ["json_lines"]


def json_lines(path: Path, *, field: str, what: str) -> list[tuple[int, dict[str, Any] | str]]:
    """Each line of the JSONL file ``path`` (UTF-8, a byte-order mark accepted) with its number:
    its JSON object, or what is wrong with it (``path:line: not JSON (...)``, a string) where it
    is not JSON or not an object. ``field`` and ``what`` name the file in the error raised when
    it cannot be read."""
    lines: list[tuple[int, dict[str, Any] | str]] = []
    for number, line in enumerate(read_text(path, field=field, what=what).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            lines.append((number, f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})"))
            continue
        lines.append((number, data if isinstance(data, dict) else
                      f"{path}:{number}: expected a JSON object of ImageRequest fields, got "
                      f"{type(data).__name__}"))
    return lines
