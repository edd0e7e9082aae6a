"""The sync batch runner: worker threads under the batch's scheduler, and Ctrl-C.

:func:`run_sync` carries out the batch's scheduling core (:func:`._loop.schedule`) on worker
threads: each admitted job runs there (:meth:`Batch.run_one`, the blocking client). Threads cannot be interrupted, so Ctrl-C
works through the batch's stop event instead:

1. On the main thread the first SIGINT only sets the event (:func:`ctrl_c_stops`); a
   ``KeyboardInterrupt`` raised some other way does the same. No job starts after that.
2. Every job in flight sees the event at its next wait (:data:`._drive.stop_event`: a poll
   interval or a retry wait, which end early), and the engine handles it as a Ctrl-C: it sends
   the provider's cancel (fal queue cancel, Replicate cancel), settles the budget (released
   when nothing was sent, kept at the estimate once a create went out) and records the attempt.
3. The runner waits up to :data:`STOP_WAIT_S` for that (a second Ctrl-C stops waiting); the
   journal then says, per job, what the next run does (:meth:`Batch._cancelled`): a job that
   sent nothing is ``pending`` again; one with a request out is failed, possibly charged, with
   its request id, and is not sent again; jobs never started stay ``pending``.
4. The ``KeyboardInterrupt`` is re-raised with the report so far on ``.report``
   (``report.stopped``: cancelled, possibly charged, still running, pending).

A plain provider call under way (OpenAI, local) has no cancel and is not cut short: the runner
waits for it within :data:`STOP_WAIT_S`, then reports it as still running.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from ..errors import OutcomeUnknown
from ._loop import Await, Command, Ended, Feed, Sleep, Start, abandon, next_command, schedule
from ._report import BatchReport, JobOutcome

if TYPE_CHECKING:
    from ._batch import Batch
    from ._schedule import Job, Scheduler

log = logging.getLogger("modelglass")

__all__ = ["STOP_WAIT_S", "ctrl_c_stops", "run_sync"]

#: After Ctrl-C, how long the sync runner waits for the jobs in flight to be cancelled (each
#: gives up its cancel after a few seconds) before it stops waiting and re-raises.
STOP_WAIT_S = 15.0
#: How often the sync runner looks at the stop event while it waits for jobs.
_STOP_POLL_S = 0.2


def run_sync(batch: Batch) -> BatchReport:
    """Run ``batch`` on ``concurrency`` worker threads; the report lists jobs in input order.

    Ctrl-C (SIGINT, or a ``KeyboardInterrupt``): no more jobs start; every job in flight is
    cancelled at its next wait (the engine sends the provider's cancel and settles the budget);
    the runner waits up to :data:`STOP_WAIT_S` for that (a second Ctrl-C stops waiting),
    records each job in the journal, and re-raises the ``KeyboardInterrupt`` with the report so
    far on its ``report`` attribute (``report.stopped`` says what was cancelled).
    """
    try:
        for _ in _drive_threads(batch):
            pass
        return batch.report()
    finally:
        if not batch.still_running:  # a job still running writes to the journal when it ends
            batch.close()


def _drive_threads(batch: Batch) -> Iterator[JobOutcome]:
    jobs = batch.prepare(route=False)
    sched = batch.scheduler([])
    feed = Feed(batch, jobs, sched, ahead=2 * batch.concurrency)
    futures: dict[Future[JobOutcome], Job] = {}
    pool = ThreadPoolExecutor(max_workers=batch.concurrency,
                              thread_name_prefix="modelglass-batch")
    interrupted: KeyboardInterrupt | None = None
    try:
        with ctrl_c_stops(batch.stop):
            try:
                yield from _carry_out(batch, schedule(batch, feed, sched), pool, futures)
            except KeyboardInterrupt as exc:
                batch.stop.set()
                interrupted = exc
                yield from _stop_jobs(batch, futures, sched, feed)
    finally:
        pool.shutdown(wait=interrupted is None and not futures, cancel_futures=True)
    if interrupted is not None:
        report = batch.report()
        report.stopped = batch.stopped_ids()
        interrupted.report = report  # type: ignore[attr-defined]
        raise interrupted
    if batch.broken is not None:
        yield from abandon(batch, sched, feed)
        broken = batch.broken
        broken.report = batch.report()  # type: ignore[attr-defined]
        raise broken
    yield from batch.leftovers(sched)


def _carry_out(batch: Batch, loop: Generator[Command, Ended, None], pool: ThreadPoolExecutor,
               futures: dict[Future[JobOutcome], Job]) -> Iterator[JobOutcome]:
    """The scheduling core's commands on worker threads, looking at the stop event (set by
    Ctrl-C) between them and at least every :data:`_STOP_POLL_S` while jobs run."""
    ended: collections.deque[Future[JobOutcome]] = collections.deque()
    reply: Ended = None
    while True:
        if batch.stop.is_set():
            raise KeyboardInterrupt
        command = next_command(loop, reply)
        reply = None
        if command is None:
            return
        if isinstance(command, Start):
            futures[pool.submit(batch.run_one, command.job)] = command.job
        elif isinstance(command, Sleep):
            batch.stop.wait(command.seconds)
        elif isinstance(command, Await):
            if not ended:
                wait_s = command.timeout_s
                done, _ = wait(futures, timeout=_STOP_POLL_S if wait_s is None
                               else min(wait_s, _STOP_POLL_S), return_when=FIRST_COMPLETED)
                ended.extend(done)
            if ended:
                fut = ended.popleft()
                reply = (futures.pop(fut), fut.result())
        else:
            yield command


def _stop_jobs(batch: Batch, futures: dict[Future[JobOutcome], Job], sched: Scheduler,
               feed: Feed) -> Iterator[JobOutcome]:
    """After Ctrl-C: wait (bounded) for the jobs in flight to be cancelled; the jobs never
    started stay ``pending`` in the journal and are reported ``cancelled``."""
    log.warning("Ctrl-C: stopping the batch; cancelling %d job(s) in flight (Ctrl-C again to "
                "stop waiting)", len(futures))
    for fut, job in list(futures.items()):
        if fut.cancel():  # admitted but not begun
            del futures[fut]
            sched.finished(job)
            batch.release_hold(job)
            yield batch.record(JobOutcome(job.id, job.index, job.request, "cancelled"))
    until = time.monotonic() + STOP_WAIT_S
    try:
        while futures and (left := until - time.monotonic()) > 0:
            done, _ = wait(futures, timeout=left, return_when=FIRST_COMPLETED)
            for fut in done:
                sched.finished(futures.pop(fut))
                try:
                    yield fut.result()
                except Exception as exc:  # noqa: BLE001 - report the rest before re-raising Ctrl-C
                    log.error("a job failed while the batch stopped: %s: %s",
                              type(exc).__name__, exc)
    except KeyboardInterrupt:
        log.warning("stopped waiting for %d job(s) in flight", len(futures))
    for job in futures.values():
        batch.still_running.add(job.id)
        yield batch.record(JobOutcome(job.id, job.index, job.request, "possibly_charged",
                                       error=OutcomeUnknown(
            f"job {job.id} was still running when the batch stopped (a call under way cannot "
            f"be cut short); the journal records how it ends, and the next run resumes it by "
            f"its request id or names it as possibly charged")))
    yield from abandon(batch, sched, feed)


@contextlib.contextmanager
def ctrl_c_stops(stop: threading.Event) -> Iterator[None]:
    """On the main thread, with Python's default SIGINT handler: the first Ctrl-C sets ``stop``
    (the runner then stops at a safe point instead of being interrupted mid-step); a second one
    raises ``KeyboardInterrupt`` as usual. Elsewhere the runner catches KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
