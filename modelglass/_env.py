"""On/off switches read from the environment, spelled one way for every ``MODELGLASS_*`` flag."""

from __future__ import annotations

import os

__all__ = ["switched_off"]

_OFF = frozenset({"0", "false", "no", "off"})


def switched_off(name: str) -> bool:
    """True when the environment variable ``name`` is ``0``, ``false``, ``no`` or ``off`` (any
    case, spaces ignored); unset or anything else: on."""
    return os.environ.get(name, "").strip().lower() in _OFF
