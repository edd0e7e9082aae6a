"""The marker every simulated image carries, and the check for it.

It lives outside :mod:`modelglass.testing` so the library (provenance, the job engine) can tell
a simulated image from a real one without loading the simulators.
"""

from __future__ import annotations

__all__ = ["SIMULATED_MARKER", "is_simulated"]

SIMULATED_MARKER = "modelglass simulator — not a real generation"
_MARKER_BYTES = SIMULATED_MARKER.encode("utf-8")


def is_simulated(data: bytes) -> bool:
    """True when ``data`` are image bytes made by a modelglass simulator.

    >>> is_simulated(b"... modelglass simulator \\xe2\\x80\\x94 not a real generation ...")
    True
    """
    return _MARKER_BYTES in data
