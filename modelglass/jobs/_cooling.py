"""Jobs that wait out a cooldown instead of failing.

After a burst of failures the health board cools a provider (``routing/_health.py``). A batch job
whose every eligible offer is cooling down has sent nothing and has nothing wrong with it: it is
*parked* until the soonest cooldown ends, then routed again. It fails only when it has waited
longer than its deadline (the client's ``deadline_s``, else :data:`COOLING_MAX_S`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._schedule import Job

__all__ = ["COOLING_MAX_S", "Parking", "cooldown_left", "cooling_reason"]

#: How long a job waits on cooldowns in all, when the client sets no deadline.
COOLING_MAX_S = 900.0
_MIN_WAIT_S, _MAX_WAIT_S = 0.05, 60.0


def cooling_reason(rejected: Any) -> str | None:
    """Why routing refused when some eligible offer was refused only for cooling down (from a
    decision's ``rejected`` list or a ``NoEligibleModel.rejected`` mapping); None otherwise."""
    if isinstance(rejected, dict):
        reasons: Iterable[str] = (str(v) for v in rejected.values())
    else:
        reasons = (r.reason for r in rejected or () if getattr(r, "constraint", None) == "health")
    return next((r for r in reasons if "cooling down" in r), None)


def cooldown_left(client: Any) -> float:
    """Seconds until the soonest cooldown on ``client``'s health board ends (clipped)."""
    board = getattr(client, "health", None)
    rules = getattr(getattr(client, "policy", None), "health", None)
    if board is None or rules is None:
        return 1.0
    now = board.clock()
    ends = [cd.until - now for cd in board.snapshot(rules)]
    return min(max(min(ends, default=_MIN_WAIT_S), _MIN_WAIT_S), _MAX_WAIT_S)


class Parking:
    """Jobs waiting for a cooldown to end, soonest first; shared by the driver and workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def park(self, job: Job, wait_s: float) -> None:
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + wait_s, next(self._seq), job))

    def due(self) -> list[Job]:
        """The jobs whose wait is over (to route again), in the order they were parked."""
        now = time.monotonic()
        out = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                out.append(heapq.heappop(self._heap)[2])
        return out

    def wake_in(self) -> float | None:
        """Seconds until the next parked job is due (None: none parked)."""
        with self._lock:
            return max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else None

    def drain(self) -> list[Job]:
        """Every parked job (the batch stopped)."""
        with self._lock:
            out = [j for _, _, j in sorted(self._heap)]
            self._heap.clear()
        return out
