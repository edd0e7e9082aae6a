"""The two drivers of a job: blocking (``Client``) and awaiting (``AsyncClient``).

They are the same loop: take the job's next step, run it, send back its outcome or throw in its
exception (interrupts included, so the job can cancel the provider's job and settle the budget
before the interrupt goes on). They differ only in ``step.run(io)`` versus
``await step.arun(io)``.
"""

from __future__ import annotations

from collections.abc import Generator
from contextvars import ContextVar
from typing import Any, TypeVar

from ._steps import Step, Wait

__all__ = ["arun", "run", "stop_event"]

T = TypeVar("T")

#: Set, in the thread that drives a job, by a runner that stops its jobs from another thread
#: (the sync batch on Ctrl-C; a ``threading.Event``). Once it is set, the job's next wait (a
#: poll interval or a retry wait; it ends early) becomes a ``KeyboardInterrupt`` thrown into
#: the job, once, so the engine cancels the provider's job, settles the budget and records the
#: attempt as on a Ctrl-C in that thread. Requests and downloads already under way finish: a
#: wait is never in the middle of one.
stop_event: ContextVar[Any] = ContextVar("modelglass_stop_event", default=None)


class _Driven:
    """A job being driven: what it asks for next, given the outcome of its last step (a value
    sent in, or an exception thrown in). The one place a job is advanced; the two drivers
    below differ only in how they run a step."""

    __slots__ = ("error", "job", "result", "value")

    def __init__(self, job: Generator[Step, Any, Any]) -> None:
        self.job = job
        self.value: Any = None
        self.error: BaseException | None = None
        self.result: Any = None

    def next_step(self) -> Step | None:
        """The next step; None once the job has returned (its value in :attr:`result`)."""
        try:
            step = self.job.throw(self.error) if self.error is not None else \
                self.job.send(self.value)
        except StopIteration as stop:
            self.result = stop.value
            return None
        finally:
            self.value = self.error = None  # the job has it; never keep a traceback alive here
        return step

    def failed(self, exc: BaseException) -> None:
        """The step failed with ``exc``: it is thrown into the job next."""
        self.error = exc


def run(job: Generator[Step, Any, T], io: Any) -> T:
    """Run ``job`` to its end with blocking I/O."""
    driven = _Driven(job)
    halt = stop_event.get()
    try:
        while (step := driven.next_step()) is not None:
            try:
                if halt is not None and isinstance(step, Wait):
                    if halt.wait(max(0.0, step.seconds)):
                        halt = None  # once: the cancel the job asks for next must run
                        raise KeyboardInterrupt("the batch was stopped")
                    continue
                driven.value = step.run(io)
            except BaseException as exc:  # noqa: BLE001 - interrupts too: the job settles, re-raises
                driven.failed(exc)
        return driven.result  # type: ignore[no-any-return]
    finally:
        job.close()  # an interrupt between steps: the job still settles its budget


async def arun(job: Generator[Step, Any, T], io: Any) -> T:
    """Run ``job`` to its end, awaiting each step."""
    driven = _Driven(job)
    try:
        while (step := driven.next_step()) is not None:
            try:
                driven.value = await step.arun(io)
            except BaseException as exc:  # noqa: BLE001 - CancelledError too: the job cancels
                driven.failed(exc)
        return driven.result  # type: ignore[no-any-return]
    finally:
        job.close()
