"""Batches: many jobs under one concurrency limit, one budget and one journal.

:meth:`Client.generate_many` and :meth:`AsyncClient.agenerate_many` land here. A batch:

1. **Prepares** its jobs: each request (an :class:`~modelglass.request.ImageRequest`, or a dict
   of its fields with an optional ``id``) gets an id; with a journal, jobs done in an earlier run
   are skipped once their files check out, jobs submitted before a crash are *resumed* by their
   provider request id, and jobs that may have been charged without a recorded id are reported,
   not re-sent (see :mod:`._journal`).
2. **Schedules** them (:class:`Scheduler`, no I/O): at most ``concurrency`` jobs in flight, and per
   provider (the first-ranked offer's) at most ``in_flight`` jobs and ``per_minute`` starts,
   taking providers in turn so one slow provider's queue does not starve the others. Jobs are
   routed just ahead of the scheduler (:class:`~._loop.Feed`), so a large batch starts at once,
   and each job runs on the routing decision it was scheduled by (routed and planned once).
3. **Holds money before it sends**: each job's estimate is reserved on the batch budget when it
   is admitted; the job gets its own :class:`~modelglass.budget.Lease` of the batch budget,
   whose first reservation takes over that hold, and the actual cost is settled when the job
   ends. When the next job could pass the limit, nothing more is submitted: the batch waits
   for jobs in flight, and when none is left the rest of the queue is reported as ``undone``.
4. **Keeps every paid image**: each job's images are saved (with provenance) and their files'
   sha256 recorded before the job counts as done.

Drivers: one scheduling core (:func:`._loop.schedule`) with thin drivers: :func:`run_async` (an
async iterator, as completed), :func:`._sync.run_sync` (worker threads, results in input order)
and :func:`._ray.run_ray` (Ray tasks). They share the scheduler and the per-job logic here.

Stopping: closing or cancelling :func:`run_async` cancels its tasks; Ctrl-C on :func:`._sync.run_sync`
sets the batch's stop event, which every job's driver honours at its next wait (see
:data:`._drive.stop_event`). Either way the engine sends the provider's cancel and settles the
budget, and :meth:`Batch._cancelled` tells the journal what the next run does with the job.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._provenance import check_writable_folder
from ..budget import Budget, Lease, settle_or_release
from ..checks import checking_of
from ..errors import (
    BudgetExceeded,
    ModelglassError,
    NoEligibleModel,
    OutcomeUnknown,
    StorageError,
)
from ..result import ImageResult
from . import _drive
from ._batch_routing import BatchRouting
from ._cache import ResultCache
from ._cooling import Parking, cooling_reason
from ._events import JobEvent
from ._journal import Journal
from ._loop import abandon, run_async
from ._reconcile import JournalReconcile
from ._reconcile import error_dict as _error_dict
from ._rejected import RejectedImages
from ._report import BatchReport, JobOutcome, Status
from ._schedule import (
    Job,
    ProviderLimit,
    Requests,
    Scheduler,
    job_ids,
    load_limits,
    request_json,
    validate_limits,
)
from ._spill import rejected_entries, save_images, spill

if TYPE_CHECKING:
    from ._journal import JournalJob

log = logging.getLogger("modelglass")

__all__ = ["Batch", "BatchReport", "Job", "JobOutcome", "ProviderLimit", "Scheduler", "abandon",
           "job_ids", "load_limits", "run_async"]

OnEvent = Callable[[JobEvent], None]


class Batch(BatchRouting, JournalReconcile, RejectedImages):
    """One run of a batch: its jobs, journal, budget, cache and where images go. The drivers
    below call :meth:`prepare`, then :meth:`run_one` / :meth:`arun_one` per job.

    ``on_event`` gets every engine event and ``on_outcome`` every job's outcome; both may be
    called from worker threads (the sync driver's, or the async driver's while it saves files).
    """

    def __init__(self, client: Any, requests: Requests, *, concurrency: int = 32,
                 budget: Budget | float | None = None, journal: str | os.PathLike[str] | Journal
                 | None = None, out: str | os.PathLike[str] | None = None,
                 cache: ResultCache | str | os.PathLike[str] | bool | None = None,
                 limits: Mapping[str, ProviderLimit] | None = None,
                 allow_double_payment: bool = False, retry_failed: bool = False,
                 durable: bool = False, on_event: OnEvent | None = None,
                 on_outcome: Callable[[JobOutcome], None] | None = None,
                 check: Any = False, on_fail: str = "keep", max_check_retries: int = 1,
                 simulated: bool | None = None) -> None:
        checking_of(check, on_fail=on_fail, max_check_retries=max_check_retries)  # fail early
        #: Every job's outcome checks (``generate(check=...)``); they land in the manifest.
        self.check_options: dict[str, Any] = (
            {"check": check, "on_fail": on_fail, "max_check_retries": max_check_retries}
            if check else {})

        self.client = client
        self.concurrency = concurrency
        if isinstance(budget, (int, float)):
            budget = Budget(float(budget))
        self.budget: Budget | None = budget if budget is not None else client.budget
        self._storage(journal, out, durable)
        self.limits = validate_limits(limits) if limits is not None else load_limits()
        self.simulated = simulated
        """Whether this run is simulated (the CLI's ``--simulate``): a journal written by a
        simulated run is refused by a real one, and the reverse. None: not checked."""
        self.broken: StorageError | None = None
        """Set when the journal or the output folder cannot be written (disk full, …): no job
        starts after it, and the driver raises it once the jobs in flight have ended."""
        self.cache: ResultCache | None = (
            None if cache is None or cache is False else ResultCache() if cache is True
            else cache if isinstance(cache, ResultCache) else ResultCache(cache))
        self.allow_double_payment = allow_double_payment
        self.retry_failed = retry_failed
        self.on_event = on_event
        self.on_outcome = on_outcome
        self.requests = requests
        self.started = time.monotonic()
        self.outcomes: list[JobOutcome] = []
        self.keep_outcomes = True
        """Whether :meth:`record` keeps each outcome for :meth:`report` (the async stream,
        which hands each one over as it ends and makes no report, keeps none)."""
        params = inspect.signature(client.generate).parameters
        self._events_ok = "events" in params
        self._resume_ok = "resume" in params
        # A modelglass client builds each job (on its lease, with its decision) for the batch
        # to drive; a stand-in with only ``generate`` gets its lease as ``budget=``.
        self._jobs_ok = callable(getattr(client, "job", None))
        self._budget_ok = "budget" in params
        self._lock = threading.Lock()
        self._maybe_charged: set[str] = set()
        self.aio: Any = client
        """What the async driver's jobs do their I/O with (:func:`._loop.run_async` gives it
        the batch's check process: :class:`._loop.AsyncBatchIO`)."""
        self._rejected: dict[str, list[dict[str, Any]]] = {}  # per job: saved as rejected
        self.stop = threading.Event()
        """Set to stop the batch (Ctrl-C on the sync runner): no job starts, and jobs in flight
        are cancelled at their next wait."""
        self.still_running: set[str] = set()  # jobs the sync runner stopped waiting for
        self.parking = Parking()
        """Jobs waiting for a provider's cooldown to end (see ._cooling); the drivers route
        them again when it does."""
        # Routed just ahead of their run (not the Ray driver, which routes up front): a job
        # may park for a cooldown, and keeps its decision for its engine.
        self._lazy = False
        self.cancelled_ids: set[str] = set()  # jobs in flight that were cancelled

    def _storage(self, journal: str | os.PathLike[str] | Journal | None,
                 out: str | os.PathLike[str] | None, durable: bool) -> None:
        """Where images go (``out``, else beside the journal) and the journal itself."""
        if out is not None:
            self.out: Path | None = Path(out)
        elif journal is not None:
            path = journal.path if isinstance(journal, Journal) else Path(journal)
            self.out = path.with_name(path.name + ".images")
        else:
            self.out = None
        if self.out is not None:  # before the journal is taken and anything is sent
            check_writable_folder(self.out, option="out")
        self._own_journal = journal is not None and not isinstance(journal, Journal)
        self.journal: Journal | None = (
            journal if journal is None or isinstance(journal, Journal)
            else Journal(journal, durable=durable))

    # -- preparation ------------------------------------------------------------------------------
    def prepare(self, *, route: bool = True) -> list[Job]:
        """Ids and the journal (and, with ``route``, routing and the cache); returns the jobs
        to run, in input order. Jobs that need no run (done earlier, possibly charged,
        unroutable, cached) become outcomes. Without ``route``, :class:`Feed` routes each job
        just before the scheduler needs it."""
        self._lazy = not route
        pairs = job_ids(self.requests)
        records: dict[str, JournalJob] = {}
        if self.journal is not None:
            self._check_mode()
            if self._events_ok and self.journal.meta("marks_sends") is None \
                    and not self.journal.jobs():
                # A journal this version starts: "started" without "sending" means nothing
                # went out (an older journal's "started" may hide a create).
                self.journal.set_meta("marks_sends", True)
            records = self.journal.begin(
                (jid, json.loads(request_json(req))) for jid, req in pairs)
        jobs: list[Job] = []
        for index, (job_id, request) in enumerate(pairs):
            job = Job(job_id, index, request)
            record = records.get(job_id)
            if record is not None:  # the tries an earlier run's checks rejected, kept
                job.rejected_before, job.tries_before = list(record.rejected), record.rejected_tries
                job.rejected_ids = set(record.rejected_ids)
            if record is not None and not self._from_journal(job, record):
                continue
            if route and self.route_one(job) is not None:
                continue
            jobs.append(job)
        if self.budget is not None and self.journal is not None:
            prior = self.journal.spent()
            if prior > 0:  # what earlier runs cost counts against this batch's limit
                try:
                    held = self.budget.reserve(prior, label="earlier runs of the journal")
                except BudgetExceeded:  # they already passed it (a lower limit this time)
                    held = self.budget.reserve(0.0, label="earlier runs of the journal")
                settle_or_release(self.budget, held, [prior])
        return jobs

    # -- one job ----------------------------------------------------------------------------------
    def _begin(self, job: Job, *, sync: bool) -> tuple[Lease | None, Callable[[], Any]] | JobOutcome:
        """Journal the job's start, and make what runs it (``sync``: blocking, else a
        coroutine) on its own budget lease; its outcome instead when it must not run now."""
        if self.stop.is_set() or self.broken is not None:  # it sent nothing
            self.release_hold(job)
            return self.record(JobOutcome(job.id, job.index, job.request, "cancelled"))
        if self.journal is not None:
            try:  # may raise (disk full): then nothing was sent
                self.journal.started(job.id, offer_key=job.offer_key, provider=job.provider,
                                     estimate=job.estimate)
            except StorageError as exc:
                return self._unsaved(job, exc)
        lease = Lease(self.budget, job.hold) if self.budget is not None else None
        kwargs: dict[str, Any] = {}
        if self._events_ok:
            kwargs["job_id"] = job.id
            kwargs["events"] = self._sink
        if job.resume is not None:
            kwargs["resume"] = job.resume
        kwargs.update(self.check_options_for(job))
        client = self.client
        if not self._jobs_ok:  # a stand-in client: its own generate
            return lease, functools.partial(client.generate, job.request, **kwargs,
                                            **({"budget": lease} if self._budget_ok else {}))
        decision = self._decision(job)
        drive: Callable[..., Any] = _drive.run if sync else _drive.arun
        io = client if sync else self.aio

        def run() -> Any:
            engine = client.job(job.request, budget=lease, decision=decision, **kwargs)
            return drive(engine.steps(), io)
        return lease, run

    def _sink(self, event: JobEvent) -> None:
        if event.state == "rejected":
            try:
                self._keep_rejected(event)
            except StorageError as exc:
                self._break(exc)
                raise
        if event.possibly_charged:
            self._maybe_charged.add(event.job_id)
        if self.journal is not None:
            try:
                self.journal.record(event)
            except StorageError as exc:
                self._break(exc)
                raise
        if self.on_event is not None:
            self.on_event(event)

    def succeeded(self, job: Job, result: ImageResult, status: Status = "done") -> JobOutcome:
        """Record a job that delivered ``result``: files saved, journal, cache; its outcome."""
        files = self._save(job, result)
        self._returned(job, result)
        rejected = self._save_rejected(job, result)
        outcome = JobOutcome(job.id, job.index, job.request, status, result=result,
                             files=[p for p, _ in files], file_sha256=[s for _, s in files],
                             cost_usd=0.0 if status == "cached" else result.cost_usd,
                             resumed=job.resume is not None,
                             rejected=self._all_rejected(
                                 job, rejected_entries(result.rejected, rejected)))
        if self.journal is not None:
            self.journal.done(job.id, cost=outcome.cost_usd, entry=outcome.manifest(),
                              files=[(str(p), sha) for p, sha in files])
        if status == "done" and self.cache is not None and job.cache_key is not None \
                and result.plan is not None and result.plan.offer.key == job.offer_key:
            self.cache.put(job.cache_key, result)
        if files:  # on disk now: keep paths, not bytes (memory stays flat, see ._spill)
            spill(result, [p for p, _ in files], [p for p, _ in rejected])
        return self.record(outcome)

    def failed(self, job: Job, exc: ModelglassError) -> JobOutcome:
        """Record a job that ended in ``exc`` (parked again when only a cooldown stopped it,
        its partial images saved); its outcome."""
        if isinstance(exc, NoEligibleModel) and not getattr(exc, "attempts", None) \
                and (why := cooling_reason(exc.rejected)) is not None \
                and (parked := self._park(job, why)) is not None:
            if self.journal is not None:
                self.journal.reset(job.id)  # nothing was sent: pending if the run stops
            return parked
        partial = getattr(exc, "partial", None)
        charged = bool(getattr(exc, "possibly_charged", False)) or isinstance(exc, OutcomeUnknown)
        cost = getattr(exc, "cost_usd", None)
        status: Status = "possibly_charged" if charged else "failed"
        if isinstance(exc, BudgetExceeded) and job.resume is None and not charged \
                and cost is None and not getattr(exc, "attempts", None):
            status = "undone"  # refused before any offer was tried: nothing was sent
        files = self._save(job, partial) if partial is not None else []
        outcome = JobOutcome(job.id, job.index, job.request, status, result=partial, error=exc,
                             files=[p for p, _ in files], cost_usd=cost,
                             resumed=job.resume is not None, rejected=self._all_rejected(job))
        if self.journal is not None:
            if status == "undone":
                self.journal.reset(job.id)
            else:
                self.journal.failed(job.id, error=_error_dict(exc) or {}, cost=cost,
                                    possibly_charged=charged, entry=outcome.manifest())
        if partial is not None and files:
            spill(partial, [p for p, _ in files])
        return self.record(outcome)

    def _cancelled(self, job: Job, exc: BaseException | None = None) -> JobOutcome:
        """The job was cancelled (its task, or Ctrl-C; the engine has sent the provider's
        cancel and settled the budget). What the next run does with it: run it again when
        nothing was sent; name it as possibly charged when something was; resume it when it
        was a resumed job the engine had not reached. Returns its outcome."""
        self.cancelled_ids.add(job.id)
        attempts = getattr(exc, "attempts", None) or []
        last = attempts[-1] if attempts else None
        request_id = getattr(last, "request_id", None)
        if job.id in self._maybe_charged:
            how = getattr(last, "error", None) or "interrupted"
            message = (f"job {job.id} was cancelled while its request "
                       f"{request_id or '(no id yet)'} was out ({how}); the provider may have "
                       f"billed it, so it is not sent again. Check the provider's dashboard; "
                       f"pass allow_double_payment (--allow-double-payment) to send it anyway.")
            if self.journal is not None:
                self.journal.failed(job.id, error={"type": "Cancelled", "message": message,
                                                   "request_id": request_id},
                                    possibly_charged=True)
            return JobOutcome(job.id, job.index, job.request, "possibly_charged",
                              error=OutcomeUnknown(message, request_id=request_id),
                              resumed=job.resume is not None, rejected=self._all_rejected(job))
        if self.journal is not None:
            record = self.journal.get(job.id)
            if job.resume is None and record is not None and not record.calls:
                self.journal.reset(job.id)  # nothing went out: the next run sends it
        return JobOutcome(job.id, job.index, job.request, "cancelled",
                          resumed=job.resume is not None, rejected=self._all_rejected(job))

    def release_hold(self, job: Job) -> None:
        """Give back a job's admission hold (it never ran)."""
        hold, job.hold = job.hold, None
        if hold is not None and self.budget is not None:
            self.budget.release(hold)

    def _save(self, job: Job, result: ImageResult) -> list[tuple[Path, str]]:
        """Every image saved under ``out`` (none without it), each with its file's sha256."""
        return [] if self.out is None else save_images(self.out, job.id, result)

    def _ended(self, job: Job, status: Status, **fields: Any) -> JobOutcome:
        """Record the outcome of a job that needs no run (from the journal)."""
        return self.record(JobOutcome(job.id, job.index, job.request, status, **fields))

    def record(self, outcome: JobOutcome) -> JobOutcome:
        """Add ``outcome`` to the batch's and tell ``on_outcome``; returns it."""
        if self.keep_outcomes:
            with self._lock:
                self.outcomes.append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def run_one(self, job: Job) -> JobOutcome:
        """Run one admitted job with the sync client (on a worker thread). When the batch is
        stopped, the job is cancelled at its next wait (:data:`._drive.stop_event`)."""
        begun = self._begin(job, sync=True)
        if isinstance(begun, JobOutcome):
            return begun
        lease, run = begun
        token = _drive.stop_event.set(self.stop)
        try:
            result = run()
        except ModelglassError as exc:
            return self._guarded(job, exc, self.failed)
        except KeyboardInterrupt as exc:  # the batch was stopped: the engine cancelled the job
            return self.record(self._cancelled(job, exc))
        finally:
            _drive.stop_event.reset(token)
            if lease is not None:
                lease.close()
        return self._guarded(job, result, self.succeeded)

    async def arun_one(self, job: Job) -> JobOutcome:
        """Run one admitted job with the async client."""
        begun = self._begin(job, sync=False)
        if isinstance(begun, JobOutcome):
            return begun
        lease, run = begun
        try:
            result = await run()
        except ModelglassError as exc:
            return self._guarded(job, exc, self.failed)
        except asyncio.CancelledError:
            self._cancelled(job)
            raise
        finally:
            if lease is not None:
                lease.close()
        if self.out is not None:
            # Saving (provenance, file sha256) and the journal's commit off the event loop:
            # 14% less wall time for 512 journaled jobs here. A cancel now leaves the thread
            # to finish, so the journal still records the paid images it wrote.
            return await asyncio.to_thread(self._guarded, job, result, self.succeeded)
        return self._guarded(job, result, self.succeeded)

    def _guarded(self, job: Job, value: Any, then: Callable[[Job, Any], JobOutcome]) -> JobOutcome:
        """``then(job, value)``, turning a storage failure into the batch's stop."""
        try:
            return then(job, value)
        except StorageError as exc:
            return self._unsaved(job, exc, value)

    def _break(self, exc: StorageError) -> None:
        with self._lock:
            if self.broken is None:
                self.broken = exc
                log.error("%s", exc)

    def _unsaved(self, job: Job, exc: StorageError, value: Any = None) -> JobOutcome:
        """The journal or the files could not be written: the batch stops starting jobs. A job
        that got nothing sent is cancelled (it runs next time); one that ran keeps its result
        in memory here, and the next run resumes it by its request id or adopts its files."""
        self._break(exc)
        if value is None:  # before the job's lease took its hold
            self.release_hold(job)
            return self.record(JobOutcome(job.id, job.index, job.request, "cancelled",
                                           error=exc))
        job.hold = None  # the job's lease settled or gave it back
        result = value if isinstance(value, ImageResult) else getattr(value, "partial", None)
        return self.record(JobOutcome(job.id, job.index, job.request, "failed", result=result,
                                       error=exc, cost_usd=getattr(value, "cost_usd", None),
                                       resumed=job.resume is not None))

    def scheduler(self, jobs: list[Job]) -> Scheduler:
        return Scheduler(jobs, concurrency=self.concurrency, limits=self.limits,
                         budget=self.budget)

    def leftovers(self, sched: Scheduler) -> list[JobOutcome]:
        """The jobs never submitted (the budget stopped the batch), as ``undone`` outcomes."""
        out = []
        for job in sorted(sched.undone, key=lambda j: j.index):
            err = sched.stopped or BudgetExceeded("the batch's budget ran out")
            out.append(self.record(JobOutcome(job.id, job.index, job.request, "undone",
                                               error=err)))
        return out

    def report(self) -> BatchReport:
        return BatchReport(list(self.outcomes), self.budget, time.monotonic() - self.started)

    def stopped_ids(self) -> dict[str, list[str]]:
        """What a stop left, by job id (see :attr:`BatchReport.stopped`)."""
        outcomes = sorted(self.outcomes, key=lambda o: o.index)
        return {"cancelled": [o.id for o in outcomes if o.id in self.cancelled_ids],
                "possibly_charged": [o.id for o in outcomes if o.status == "possibly_charged"
                                     and (o.id in self.cancelled_ids
                                          or o.id in self.still_running)],
                "still_running": sorted(self.still_running),
                "pending": [o.id for o in outcomes if o.status == "cancelled"]}

    def close(self) -> None:
        if self._own_journal and self.journal is not None:
            self.journal.close()
