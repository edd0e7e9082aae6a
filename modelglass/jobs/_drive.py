"""The two drivers of a job: blocking (``Client``) and awaiting (``AsyncClient``).

They are the same loop: take the job's next step, run it, send back its outcome or throw in its
exception (interrupts included, so the job can cancel the provider's job and settle the budget
before the interrupt goes on). They differ only in ``step.run(io)`` versus
``await step.arun(io)``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from ._steps import Step

__all__ = ["arun", "run"]

T = TypeVar("T")


def run(job: Generator[Step, Any, T], io: Any) -> T:
    """Run ``job`` to its end with blocking I/O."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = job.throw(error) if error is not None else job.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            finally:
                error = None  # the job has it; never keep a traceback alive here
            try:
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
