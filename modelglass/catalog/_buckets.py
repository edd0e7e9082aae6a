"""Resolution buckets (``1K``, ``2K``, ``0.5K``): the long side an output in a bucket may have.

A data-model fact both the schema (validating ``resolution_multipliers``) and the price
arithmetic (:func:`._price.resolution_bucket`) need; it sits below both so neither imports the
other for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["bucket_long_side"]

#: A Gemini-style resolution bucket ``nK`` holds outputs whose long side is at most ``n × 1584``
#: pixels: at 1K the widest output (21:9) is 1584×672, the square one 1024×1024.
_BUCKET_LONG_SIDE_PER_K = 1584

_BUCKET = re.compile(r"^(\d+(?:\.\d+)?)K$", re.IGNORECASE)


def bucket_long_side(name: str, explicit: Mapping[str, int] | None = None) -> int:
    """The largest long side (pixels) an output in resolution bucket ``name`` may have."""
    if explicit and name in explicit:
        return int(explicit[name])
    m = _BUCKET.match(name)
    if not m:
        raise ValueError(f"resolution bucket {name!r} must look like 1K, 2K, 4K or 0.5K "
                         "(or give its long side in resolution_long_side)")
    return round(float(m.group(1)) * _BUCKET_LONG_SIDE_PER_K)
