"""Provider health: after repeated failures a provider (or one offer) cools down for a while.

One :class:`HealthBoard` per process (:meth:`HealthBoard.shared`) is fed by every client where
an attempt ends and read by routing: while a provider is cooling down its offers are rejected
with the constraint ``health`` and a reason that says how many failures, how recent, and when it
is tried again. The thresholds come from the policy (``health:``, :class:`~._policy.HealthRules`)::

    health: {failures: 3, window_s: 60, cooldown_s: 120, scope: provider}   # or scope: offer

``failures`` failed attempts within ``window_s`` seconds start a cooldown of ``cooldown_s``
seconds, counted from the last of them. A success clears the failures it vouches for (the
provider's, and the offer's). Only provider failures count (:class:`~modelglass.errors.
ProviderError`: 5xx, timeouts, rate limits, empty results); a refused prompt, a bad request or a
missing key says nothing about the provider's health.

Thread- and task-safe: every read and write holds one lock for a few microseconds and never
waits on I/O, so threads and asyncio tasks of one process share it without blocking each other.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ProviderError

if TYPE_CHECKING:
    from ._policy import HealthRules

__all__ = ["Cooldown", "HealthBoard", "counts_as_failure"]

#: Failures remembered per key; more than any sane threshold needs.
_KEEP = 256


def counts_as_failure(exc: BaseException | None) -> bool:
    """Whether an attempt's error says something about the provider's health."""
    return isinstance(exc, ProviderError)


@dataclass(frozen=True)
class Cooldown:
    """One provider or offer cooling down: until when (monotonic seconds), and why."""

    key: str
    until: float
    failures: int
    last_error: str

    def remaining(self, now: float) -> float:
        return max(0.0, self.until - now)


class HealthBoard:
    """Recent failures per provider and per offer, shared by the clients of one process.

    >>> board = HealthBoard(clock=lambda: 0.0)
    >>> from modelglass.routing._policy import HealthRules
    >>> for _ in range(3):
    ...     board.record("flux-dev@fal", "fal", ok=False, error="HTTP 503")
    >>> board.cooling("flux-dev@fal", "fal", HealthRules()) is not None
    True
    """

    _shared: HealthBoard | None = None
    _shared_lock = threading.Lock()

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[tuple[float, str]]] = {}

    @classmethod
    def shared(cls) -> HealthBoard:
        """The process-wide board every client feeds and reads by default."""
        if cls._shared is None:
            with cls._shared_lock:
                if cls._shared is None:
                    cls._shared = HealthBoard()
        return cls._shared

    # -- feeding ----------------------------------------------------------------------------------
    def record(self, offer_key: str, provider: str, *, ok: bool, error: str = "") -> None:
        """One attempt ended: a failure is remembered, a success clears what it vouches for."""
        now = self.clock()
        keys = (f"provider:{provider}", f"offer:{offer_key}")
        with self._lock:
            for key in keys:
                if ok:
                    self._failures.pop(key, None)
                else:
                    q = self._failures.get(key)
                    if q is None:
                        q = self._failures[key] = deque(maxlen=_KEEP)
                    q.append((now, error[:200]))

    def observe(self, offer_key: str, provider: str, exc: BaseException | None) -> None:
        """The client's hook: record an attempt's outcome if it bears on health."""
        if exc is None:
            self.record(offer_key, provider, ok=True)
        elif counts_as_failure(exc):
            self.record(offer_key, provider, ok=False, error=type(exc).__name__)

    def reset(self) -> None:
        """Forget every failure (tests; an operator who fixed the cause)."""
        with self._lock:
            self._failures.clear()

    # -- reading ----------------------------------------------------------------------------------
    def cooldown(self, key: str, rules: HealthRules) -> Cooldown | None:
        """The cooldown of ``key`` (``"provider:fal"`` or ``"offer:flux-dev@fal"``), if any now."""
        now = self.clock()
        with self._lock:
            q = self._failures.get(key)
            events = list(q) if q else []
        if len(events) < rules.failures:
            return None
        # The latest failure that completed a run of `failures` within the window starts it.
        n = rules.failures
        for end in range(len(events) - 1, n - 2, -1):
            start = end - n + 1
            if events[end][0] - events[start][0] <= rules.window_s:
                until = events[end][0] + rules.cooldown_s
                if now < until:
                    recent = sum(1 for t, _ in events if events[end][0] - t <= rules.window_s)
                    return Cooldown(key, until, recent, events[end][1])
                return None
        return None

    def cooling(self, offer_key: str, provider: str, rules: HealthRules) -> str | None:
        """Why routing should skip this offer now, or None when it may be tried."""
        if not rules.enabled:
            return None
        key = f"provider:{provider}" if rules.scope == "provider" else f"offer:{offer_key}"
        cd = self.cooldown(key, rules)
        if cd is None:
            return None
        what = f"provider {provider!r}" if rules.scope == "provider" else f"offer {offer_key}"
        last = f" (last: {cd.last_error})" if cd.last_error else ""
        return (f"{what} is cooling down: {cd.failures} failed attempt(s) within "
                f"{rules.window_s:g} s{last}; tried again in {cd.remaining(self.clock()):.0f} s "
                f"(policy health: failures {rules.failures}, window_s {rules.window_s:g}, "
                f"cooldown_s {rules.cooldown_s:g})")

    def snapshot(self, rules: HealthRules) -> list[Cooldown]:
        """Every key cooling down now under ``rules``."""
        with self._lock:
            keys = list(self._failures)
        return [cd for k in keys if (cd := self.cooldown(k, rules)) is not None]
