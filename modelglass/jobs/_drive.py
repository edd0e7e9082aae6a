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


def run(job: Generator[Step, Any, T], io: Any) -> T:
    """Run ``job`` to its end with blocking I/O."""
    value: Any = None
    error: BaseException | None = None
    halt = stop_event.get()
    try:
        while True:
            try:
                step = job.throw(error) if error is not None else job.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                error = None  # the job has it; never keep a traceback alive here
            try:
                if halt is not None and isinstance(step, Wait):
                    if halt.wait(max(0.0, step.seconds)):
                        halt = None  # once: the cancel the job asks for next must run
                        raise KeyboardInterrupt("the batch was stopped")
                    value = None
                    continue
                value = step.run(io)
            except BaseException as exc:  # noqa: BLE001 - interrupts too: the job settles, re-raises
                value, error = None, exc
    finally:
        job.close()  # an interrupt between steps: the job still settles its budget


async def arun(job: Generator[Step, Any, T], io: Any) -> T:
    """Run ``job`` to its end, awaiting each step."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = job.throw(error) if error is not None else job.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                error = None
            try:
                value = await step.arun(io)
            except BaseException as exc:  # noqa: BLE001 - CancelledError too: the job cancels
                value, error = None, exc
    finally:
        job.close()
