"""Size as asked: whether an offer's plan makes the requested ``size``, within a small tolerance.

An offer honours ``size="WxH"`` when its plan makes exactly that size, or the nearest size its wire
allows with **each side within 2 %** of the request (:data:`SIZE_TOLERANCE`): a ``multiple_of``
rounding such as 1200x630 → 1200x624 (−1.0 % on one side) passes; 1536x1024 → 1248x832 (−19 % per
side, −34 % area) does not. Routing keeps only the offers that honour the size when any eligible
offer does; when none does, every offer stays and the decision says so up front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plan import ProviderCall

__all__ = ["SIZE_TOLERANCE", "size_gap"]

#: Largest relative difference per side that still counts as the size asked for.
SIZE_TOLERANCE = 0.02


def size_gap(want: tuple[int, int], call: ProviderCall) -> str | None:
    """None when ``call`` makes ``want`` within tolerance; else what it makes instead, in words."""
    got = (call.planned.width, call.planned.height)
    if got == want:
        return None
    errs = [abs(g - w) / w for g, w in zip(got, want, strict=True)]
    if max(errs) <= SIZE_TOLERANCE + 1e-12:
        return None
    area = got[0] * got[1] / (want[0] * want[1]) - 1
    return (f"makes {got[0]}x{got[1]} instead of {want[0]}x{want[1]} "
            f"(area {area * 100:+.0f} %, tolerance ±{SIZE_TOLERANCE * 100:g} % per side)")
