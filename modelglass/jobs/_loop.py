"""The scheduling core of a batch, and its async driver.

:func:`schedule` is the one loop every driver runs (:func:`run_async` here, the worker threads of
:func:`._sync.run_sync`, the Ray tasks of :func:`._ray.run_ray`). It routes jobs just ahead of
the :class:`~._schedule.Scheduler` (:class:`Feed`), starts what the scheduler admits and says
when to wait; it does no I/O itself. It yields commands, and a driver only carries them out:

- a :class:`~._report.JobOutcome`: report it (a job that needed no run, or one that ended);
- :class:`Start`: run this admitted job (as a task, on a thread, as a Ray task);
- :class:`Await`: wait for a started job to end (at most ``timeout_s``; None: no limit) and send
  back ``(job, outcome)``, or None when the time ran out first;
- :class:`Sleep`: nothing is running; wait ``seconds`` (a rate limit or a cooldown ends).

The loop ends when nothing is left to start or run, or when the batch broke (disk full) and
its last job ended. :func:`abandon` then reports the jobs it never started.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._report import JobOutcome

if TYPE_CHECKING:
    from .._check_process import BatchChecks, CheckProcess
    from ._batch import Batch
    from ._schedule import Job, Scheduler

__all__ = ["AsyncBatchIO", "Await", "Feed", "Sleep", "Start", "abandon", "next_command",
           "run_async", "schedule"]


@dataclass(frozen=True)
class Start:
    """Run ``job`` (admitted: its budget hold taken, its slot counted)."""

    job: Job


@dataclass(frozen=True)
class Await:
    """Wait for one started job to end, at most ``timeout_s`` (None: until one does)."""

    timeout_s: float | None


@dataclass(frozen=True)
class Sleep:
    """No job is running: wait ``seconds``."""

    seconds: float


Command = JobOutcome | Start | Await | Sleep
Ended = tuple["Job", JobOutcome] | None


class Feed:
    """Routes jobs just ahead of the scheduler, keeping ``ahead`` jobs queued: a large batch
    starts at once, and routing overlaps the waits of the jobs in flight instead of running
    before the first one. Jobs that need no run (unroutable, cached) come back as outcomes."""

    def __init__(self, batch: Batch, jobs: Iterable[Job], sched: Scheduler, ahead: int) -> None:
        self.batch, self.sched, self.ahead = batch, sched, ahead
        self.todo = collections.deque(jobs)

    def starved(self) -> bool:
        """A slot is free but nothing queued may start (its provider is at its limit): jobs
        not routed yet may be for another provider."""
        return bool(self.todo) and self.sched.stopped is None \
            and self.sched.running < self.sched.concurrency

    def top_up(self, more: int = 0) -> list[JobOutcome]:
        """Route until ``ahead`` jobs are queued, and ``more`` beyond that (or none is left);
        once the budget stopped the batch, the jobs not yet routed are undone too."""
        done: list[JobOutcome] = []
        self.todo.extendleft(reversed(self.batch.parking.due()))  # their cooldown ended
        while self.todo and self.sched.stopped is None and (
                self.sched.pending < self.ahead or more > 0):
            job = self.todo.popleft()
            outcome = self.batch.route_one(job)
            if outcome is not None:
                if outcome.status != "cooling":  # parked: routed again when it ends
                    done.append(outcome)
            else:
                self.sched.add(job)
                more -= 1
        if self.sched.stopped is not None and (self.todo or len(self.batch.parking)):
            self.sched.undone.extend(self.todo)
            self.sched.undone.extend(self.batch.parking.drain())
            self.todo.clear()
        return done

    def wake_in(self, wait_s: float | None) -> float | None:
        """How long the driver may wait: until a rate limit frees a slot (``wait_s``) or a
        parked job's cooldown ends, whichever is sooner (None: no timer)."""
        parked = self.batch.parking.wake_in()
        if parked is None:
            return wait_s
        return parked if wait_s is None else min(wait_s, parked)


def schedule(batch: Batch, feed: Feed, sched: Scheduler) -> Generator[Command, Ended, None]:
    """The batch's loop as commands (see the module docstring); send back what an
    :class:`Await` asks for, None after every other command."""
    while True:
        if batch.broken is not None:  # disk full or the like: start nothing more
            if not sched.running:
                return
            wait_s = None
        else:
            yield from feed.top_up()
            wait_s = yield from _start_admitted(sched)
        if batch.broken is None and feed.starved():
            yield from feed.top_up(more=1)
            continue
        wait_s = feed.wake_in(wait_s)
        if not sched.running:
            if feed.todo:
                continue  # everything routed so far needed no run: route more
            if wait_s is None:
                return
            yield Sleep(wait_s)
            continue
        ended = yield Await(wait_s)  # a timeout: a per-minute slot freed up, or a cooldown ended
        if ended is not None:
            job, outcome = ended
            sched.finished(job)
            if batch.broken is None:
                # the freed slot's next job starts before this outcome is reported and more
                # jobs are routed: its provider call leaves sooner
                yield from _start_admitted(sched)
            if outcome.status != "cooling":  # parked: it runs again later
                yield outcome


def _start_admitted(sched: Scheduler) -> Generator[Command, Ended, float | None]:
    """Start every job the scheduler admits now; then how long until it may admit more (None:
    when a job ends)."""
    job, wait_s = sched.next()
    while job is not None:
        yield Start(job)
        job, wait_s = sched.next()
    return wait_s


def next_command(loop: Generator[Command, Ended, None], reply: Ended = None) -> Command | None:
    """The loop's next command after ``reply`` (None once the loop is over)."""
    try:
        return loop.send(reply)
    except StopIteration:
        return None


async def run_async(batch: Batch) -> AsyncIterator[JobOutcome]:
    """Run ``batch`` on the event loop; yield each outcome as it completes (jobs that needed no
    run first). Closing the iterator early cancels the jobs in flight."""
    from .._check_process import BatchChecks

    checks = BatchChecks(batch.concurrency)
    try:
        jobs = batch.prepare(route=False)
        # Each outcome goes to the caller as it ends and nothing here reads it again: the
        # batch keeps none, so a long stream holds only the jobs in flight (not every image).
        prepared, batch.outcomes, batch.keep_outcomes = batch.outcomes, [], False
        for outcome in prepared:
            yield outcome
        sched = batch.scheduler([])
        feed = Feed(batch, jobs, sched, ahead=2 * batch.concurrency)
        batch.aio = AsyncBatchIO(batch.client, checks)
        # Finished tasks land on a queue (one callback each), so a completion costs O(1)
        # rather than asyncio.wait() re-arming every task in flight.
        finished: asyncio.Queue[asyncio.Task[JobOutcome]] = asyncio.Queue()
        tasks: dict[asyncio.Task[JobOutcome], Job] = {}
        loop = schedule(batch, feed, sched)
        reply: Ended = None
        try:
            while (command := next_command(loop, reply)) is not None:
                reply = None
                if isinstance(command, Start):
                    task = asyncio.ensure_future(batch.arun_one(command.job))
                    task.add_done_callback(finished.put_nowait)
                    tasks[task] = command.job
                    # let the job send its request before this loop reports and routes more:
                    # the event loop runs what is ready in turn, so a new job would otherwise
                    # wait behind the reporting, and its slot would sit idle meanwhile
                    await asyncio.sleep(0)
                elif isinstance(command, Sleep):
                    await asyncio.sleep(command.seconds)
                elif isinstance(command, Await):
                    try:
                        task = await asyncio.wait_for(finished.get(), command.timeout_s)
                    except TimeoutError:
                        continue
                    reply = (tasks.pop(task), task.result())
                else:
                    yield command
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        if batch.broken is not None:
            for outcome in abandon(batch, sched, feed):
                yield outcome
            raise batch.broken
        for outcome in batch.leftovers(sched):
            yield outcome
    finally:
        try:
            await checks.aclose()
        finally:
            batch.close()


class AsyncBatchIO:
    """What an async batch's jobs do their I/O with: the client's (its download client, its
    pools), and the batch's check process (:class:`~.._check_process.BatchChecks`), which a
    client's own calls do not have."""

    __slots__ = ("checks", "client")

    def __init__(self, client: Any, checks: BatchChecks) -> None:
        self.client, self.checks = client, checks

    def __getattr__(self, name: str) -> Any:
        if name in AsyncBatchIO.__slots__:  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.client, name)

    def check_process(self) -> CheckProcess | None:
        return self.checks.process()


def abandon(batch: Batch, sched: Scheduler, feed: Feed) -> Iterator[JobOutcome]:
    """The jobs never started when the batch stopped early: ``cancelled`` (pending in the
    journal for the next run), or ``undone`` where the budget had stopped it."""
    for job in sched.undone:
        yield batch.record(JobOutcome(job.id, job.index, job.request, "undone",
                                      error=sched.stopped))
    sched.undone.clear()
    queued = [j for q in sched.queues.values() for j in q] + list(feed.todo) \
        + batch.parking.drain()
    for q in sched.queues.values():
        q.clear()
    feed.todo.clear()
    for job in sorted(queued, key=lambda j: j.index):
        batch.release_hold(job)
        yield batch.record(JobOutcome(job.id, job.index, job.request, "cancelled"))
