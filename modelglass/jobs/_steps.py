"""The steps a job asks for, each with its blocking and its awaiting form side by side.

The engine (:mod:`._engine`) and the providers' jobs yield these and are sent back their
outcomes; they never perform I/O themselves. A driver (:mod:`._drive`) runs a step with
``step.run(io)`` (blocking) or ``await step.arun(io)``; that is the only place the sync and async
clients differ. ``io`` is the client that owns the connections (its download client).

- :class:`Wire`: one call on a provider's wire object (fal submit/status/result/cancel,
  Replicate create/get/cancel, OpenAI's images.generate, the local pipeline run), under a
  :class:`Deadline`. A provider's :meth:`~modelglass.providers.base.Provider.job` yields these.
- :class:`Wait`: a retry or Retry-After wait, or a provider's poll interval.

The engine's own steps, after the provider's job (downloads, outcome checks), are in
:mod:`._delivery`; this module imports nothing of modelglass, so providers can yield its steps.

:class:`Deadline` is the point in time one provider job must be done by; within
:func:`deadline_scope`, every HTTP request a provider's escalating transport sends has its
timeouts cut to it (:func:`current_deadline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..providers.base import Provider

__all__ = ["Deadline", "Step", "Wait", "Wire", "current_deadline", "deadline_scope"]


class Deadline:
    """A point in monotonic time by which one job must be done."""

    def __init__(self, seconds: float, *, per_request_s: float | None = None) -> None:
        if not seconds or seconds <= 0 or not math.isfinite(seconds):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {seconds!r}")
        self.seconds = float(seconds)
        self.per_request_s = per_request_s
        self.started = time.monotonic()
        self.at = self.started + self.seconds

    def remaining(self) -> float:
        """Seconds left (never below zero)."""
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.at

    def elapsed(self) -> float:
        """Seconds since the deadline was set."""
        return time.monotonic() - self.started

    def clamp(self, seconds: float | None) -> float:
        """``seconds`` cut to what is left and to ``per_request_s`` (at least 1 ms, so a client
        never gets 0, which some read as "no limit")."""
        left = self.remaining()
        if self.per_request_s is not None:
            left = min(left, self.per_request_s)
        value = left if seconds is None else min(seconds, left)
        return max(value, 0.001)


_CURRENT_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "modelglass_provider_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline of the innermost :func:`deadline_scope` in this thread / task, if any."""
    return _CURRENT_DEADLINE.get()


@contextlib.contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Within this block (this thread / this task), every HTTP request made through a
    provider's escalating transport has its timeouts cut to the deadline's remaining time.
    ``None`` leaves the current scope as it is."""
    if deadline is None:
        yield None
        return
    token = _CURRENT_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT_DEADLINE.reset(token)


class Step:
    """One I/O step; subclasses say how to run it blocking and awaiting."""

    __slots__ = ()

    def run(self, io: Any) -> Any:
        raise NotImplementedError

    async def arun(self, io: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Wire(Step):
    """``getattr(wire, name)(*args)`` on the provider's wire (``provider.wire()`` blocking,
    ``provider.awire()`` awaiting), within ``deadline``. A wire method may answer a value or an
    awaitable (an async client's coroutine); awaiting runs it within the deadline too."""

    provider: Provider
    name: str
    args: tuple[Any, ...] = ()
    deadline: Deadline | None = None

    def run(self, io: Any) -> Any:
        wire = self.provider.wire()
        with deadline_scope(self.deadline):
            return getattr(wire, self.name)(*self.args)

    async def arun(self, io: Any) -> Any:
        wire = self.provider.awire()
        with deadline_scope(self.deadline):
            result = getattr(wire, self.name)(*self.args)
            return await result if inspect.isawaitable(result) else result


@dataclass(frozen=True, slots=True)
class Wait(Step):
    """Sleep ``seconds`` (a retry wait, a provider's poll interval or Retry-After)."""

    seconds: float

    def run(self, io: Any) -> None:
        if self.seconds > 0:
            time.sleep(self.seconds)

    async def arun(self, io: Any) -> None:
        await asyncio.sleep(max(0.0, self.seconds))
