"""The job engine: one ``generate`` call as a pure state machine.

:meth:`Job.steps` is a generator. It yields :mod:`._steps` (a provider wire call, a whole
provider call, a download, a wait) and is sent back each step's outcome, or has the step's
exception thrown in; it performs no I/O itself. ``Client`` and ``AsyncClient`` run it with
:func:`._drive.run` / :func:`._drive.arun`, which differ only in how they wait, so retries,
fallback, the deadline, the budget, chunking, attempts, cancellation and events live here once.

Per job:

1. ``decision.ranked`` is the fallback order (every ranked offer passed the same hard
   constraints). With ``resume``, only the offer that job was submitted to.
2. Per offer: check ``max_cost_usd`` again and reserve the estimate on the shared budget before
   anything is sent.
3. Per chunk of ``n`` (the offer's ``max_images_per_call``): the provider call, with retries
   (:mod:`._retry`), then the download of every image. Every provider's call is its own
   sans-I/O job (:meth:`Provider.job`), whose steps run through this generator; for providers
   with resumable jobs (fal, Replicate) the engine so knows each job's id as soon as it exists
   (the ``submitted`` event) and can cancel it.
4. Settle the budget with what was charged; build the result (:mod:`._outcome`).
5. With ``check=``: the outcome checks of the delivered images, as one more step, and the tries
   a failed check asks for (``on_fail``), each reserved like the first (:mod:`._checking`).

Money: a failure whose outcome is unknown (``possibly_charged``) is never retried; the budget
keeps its share of the estimate as spent, and another offer is tried only with
``allow_double_payment=True``. ``result.cost_usd`` is everything charged for the call, every
offer tried included; each attempt carries its own share.

Cancellation: a ``KeyboardInterrupt`` or ``asyncio.CancelledError`` thrown in while a provider
job is running sends the provider's cancel (when its id is known), keeps the estimate as spent
when a create went out (the provider may bill it) or releases it when nothing was sent, records
the attempt, emits ``failed`` and re-raises.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._destination import public_url
from ..errors import DownloadFailed, ModelglassError, OutcomeUnknown
from ..result import Attempt, GeneratedImage, Missing
from . import _checking, _outcome
from ._delivery import Download
from ._events import EventSink, JobEvent, Resume
from ._fallbacks import Fallbacks
from ._owner import Hooks, Owner
from ._retry import falls_back, possibly_charged, retry_after_of, retryable
from ._steps import Step, Wait

if TYPE_CHECKING:
    from .._download import Fetched
    from ..budget import Budget, Lease, Reservation
    from ..checks import Checking
    from ..plan import ProviderCall
    from ..providers.base import Provider, ProviderOutput
    from ..request import ImageRequest
    from ..result import ImageResult
    from ..routing import RoutingDecision

log = logging.getLogger("modelglass")

__all__ = ["CANCEL_GRACE_S", "DEADLINE_SLACK_S", "Hooks", "Job", "Owner", "chunk_calls_of"]

#: Below this many seconds left, the job's deadline counts as spent (no call could finish).
DEADLINE_SLACK_S = 0.05
#: Time kept back from a resumable provider call for the cancel that ends it at its deadline.
CANCEL_GRACE_S = 1.0

_job_ids = itertools.count(1)
_PID = os.getpid()


@dataclass
class Run:
    """One offer being tried: its plan, its provider calls (one per chunk), what came back."""

    key: str
    call: ProviderCall
    provider: Provider
    chunk_calls: list[ProviderCall]
    reservation: Reservation | None
    resumable: bool
    images: list[GeneratedImage] = field(default_factory=list)
    fetched: list[Fetched] = field(default_factory=list)
    sources: list[tuple[ProviderCall, ProviderOutput]] = field(default_factory=list)
    outputs: list[ProviderOutput] = field(default_factory=list)
    charges: list[tuple[float | None, bool]] = field(default_factory=list)  # (usd, estimated)
    missing: list[Missing] = field(default_factory=list)
    failure: BaseException | None = None  # the error that left images missing
    closed: bool = False
    checks: list[Any] = field(default_factory=list)  # CheckResult of its images (check=...)


@dataclass
class _InFlight:
    """The provider call running now: enough to cancel it and to settle it when interrupted."""

    run: Run
    chunk: ProviderCall
    attempt: Attempt
    t0: float
    sent: bool = False
    request_id: str | None = None


class Job:
    """One ``generate`` call. Build it, then drive :meth:`steps` to get the ``ImageResult``.

    ``owner`` is the client (providers, timeouts, retry policy); ``budget`` what the job reserves
    on (a :class:`~modelglass.budget.Budget`, a batch job's :class:`~modelglass.budget.Lease`,
    or None); ``hooks`` what it tells the client; ``decision`` the routing decision for
    ``request``; ``deadline_s`` the wall-clock bound of the whole job; ``events``
    a sink for :class:`~modelglass.jobs.JobEvent`; ``resume`` a job submitted before (poll it,
    never re-submit it).
    """

    def __init__(self, owner: Owner, request: ImageRequest, decision: RoutingDecision, *,
                 deadline_s: float, started: float | None = None, job_id: str | None = None,
                 events: EventSink | None = None, resume: Resume | None = None,
                 allow_double_payment: bool = False, checking: Checking | None = None,
                 budget: Budget | Lease | None = None, hooks: Hooks | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.owner = owner
        self.budget = budget
        self.hooks = hooks or Hooks()
        self.request = request
        self.decision = decision
        self.clock = clock
        self.started = clock() if started is None else started
        self.deadline_s = deadline_s
        self.deadline_at = self.started + deadline_s
        self.job_id = job_id or f"job-{_PID}-{next(_job_ids)}"
        self.events = events
        self.resume = resume
        self.allow_double_payment = allow_double_payment
        #: The outcome checks and what a failed one leads to (:mod:`._checking`); None: none.
        self.checking = checking
        self.attempts: list[Attempt] = []
        self.errors: list[BaseException] = []   # the error that ended each failed offer
        self.try_errors: list[BaseException] = []  # every failed try's error, in order
        self.timings: dict[str, float] = {}
        self.runs: list[Run] = []
        self.skipped: list[tuple[str, str]] = []  # fallbacks skipped: (offer key, why)
        self._inflight: _InFlight | None = None

    # -- the clock --------------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.deadline_at - self.clock()

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds

    # -- events -----------------------------------------------------------------------------------
    def emit(self, state: str, run: Run | None = None, *, strict: bool = False,
             **kw: Any) -> None:
        """Tell the events sink; a sink that fails is logged and the job goes on, unless
        ``strict`` (the sink's error is raised: what it should have kept was not kept)."""
        if self.events is None:
            return
        if run is not None:
            kw.setdefault("offer_key", run.key)
            kw.setdefault("provider", run.call.provider)
        try:
            self.events(JobEvent(self.job_id, state, **kw))  # type: ignore[arg-type]
        except Exception as exc:  # a failing sink must not strand a paid job
            if strict:
                raise
            log.warning("job %s: the events sink failed on %r (%s: %s); the job goes on",
                        self.job_id, state, type(exc).__name__, self.hooks.scrub(str(exc)))

    # -- the state machine ------------------------------------------------------------------------
    def steps(self) -> Generator[Step, Any, ImageResult]:
        """The job: yields steps, is sent their outcomes, returns the result or raises the
        error that ended it (with ``attempts``)."""
        self.emit("pending")
        try:
            return (yield from self._offers())
        except GeneratorExit:  # the driver went away: no cancel can be sent, but settle
            flight, self._inflight = self._inflight, None
            if flight is not None and flight.sent:
                _outcome.charge(flight.run, flight.chunk, flight.attempt, None, possibly=True)
            _outcome.close_all(self)
            raise
        except Exception:  # already settled and reported where it was decided
            raise
        except BaseException as exc:  # KeyboardInterrupt, CancelledError: cancel, settle, report
            yield from self._interrupted(exc)
            raise

    def _offers(self) -> Generator[Step, Any, ImageResult]:
        for i, (key, call_of) in enumerate(self.candidates()):
            run: Run | None = None
            if i and (why := self.cooling(key)):
                # The ranking was made before this job's failures: a fallback whose provider
                # started cooling down since then is skipped, as a fresh route would skip it.
                log.info("%s: skipped as a fallback: %s", key, why)
                self.skipped.append((key, why))
                continue
            try:
                run = self.open_run(key, call_of)
                yield from self.run_offer(run)
            except Exception as exc:  # noqa: BLE001 - _after_failure re-raises what must not be caught
                if self.checking is not None and _checking.is_partial(run, exc):
                    return (yield from _checking.partial(self, run, exc, i))  # type: ignore[arg-type]
                result = self._after_failure(run, exc)
                if result is None:
                    continue
                return result
            if run.failure is not None:  # some images could not be downloaded
                if self.checking is not None:
                    return (yield from _checking.partial(self, run, run.failure, i))  # type: ignore[arg-type]
                return self._after_failure(run, run.failure)  # type: ignore[arg-type, return-value]
            return (yield from _checking.deliver(self, run, i))
        raise self.fail(_outcome.final_error(self))

    def cooling(self, key: str) -> str | None:
        """Why the health board says to skip ``key`` now (the decision's policy rules), or None."""
        health = getattr(self.owner, "health", None)
        rules = getattr(getattr(self.decision, "policy", None), "health", None)
        if health is None or rules is None:
            return None
        provider = key.rpartition("@")[2]
        reason: str | None = health.cooling(key, provider, rules)
        return reason

    def candidates(self) -> Sequence[tuple[str, Callable[[], ProviderCall]]]:
        """The fallback order: the decision's ranking, read lazily (the choice is proven before
        the rest is ranked, so a job whose first offer delivers never ranks the others)."""
        ranked = Fallbacks(self.decision)
        if self.resume is None:
            return ranked
        key = self.resume.offer_key
        for k, call_of in ranked:
            if k == key:
                return [(k, call_of)]
        return [(key, lambda: self.owner.plan_offer(self.request, key))]

    def open_run(self, key: str, call_of: Callable[[], ProviderCall]) -> Run:
        """Plan the offer and hold its estimated cost — before anything is sent."""
        t0 = self.clock()
        call = call_of()
        provider = self.owner.provider(call.provider)
        chunk_calls = chunk_calls_of(call, provider)
        resumable = provider.resumable
        self.add_time("plan_s", self.clock() - t0)
        if self.resume is not None and not resumable:
            raise OutcomeUnknown(
                f"cannot resume {self.resume.request_id!r} on {key}: {call.provider} jobs cannot "
                f"be looked up by id. It may have been charged, and it was not re-sent; generate "
                f"again to pay for a new one.", request_id=self.resume.request_id,
                provider=call.provider, stage="resume")
        reservation = _outcome.reserve(self.budget, self.request, call)
        run = Run(key=key, call=call, provider=provider, chunk_calls=chunk_calls,
                  reservation=reservation, resumable=resumable)
        self.runs.append(run)
        self.emit("pending", run)
        return run

    def resumed(self, run: Run) -> Resume | None:
        """What ``run`` picks up after a crash: only the job's first run does (a failed check's
        retry is sent anew, never the old request polled again and paid twice)."""
        return self.resume if self.runs and run is self.runs[0] else None

    def run_offer(self, run: Run) -> Generator[Step, Any, None]:
        resume = self.resumed(run)
        first = resume.chunk if resume is not None else 0
        for k in range(first, len(run.chunk_calls)):
            output = yield from self._chunk(run, k)
            yield from self._download(run, k, output)
        if not run.images and run.failure is not None:
            raise run.failure  # nothing came of this offer: the next one may do better

    def _chunk(self, run: Run, k: int) -> Generator[Step, Any, ProviderOutput]:
        """Provider call ``k`` with its retries; returns its output or raises its last error."""
        chunk = run.chunk_calls[k]
        resume = self.resumed(run)
        resume_id = resume.request_id if resume is not None and k == resume.chunk else None
        tries = 0
        while True:
            tries += 1
            timeout_s = self._call_timeout(run)
            attempt = Attempt(number=tries, model=run.call.model, provider=run.call.provider,
                              offer_id=run.key, started_at=time.time(), chunk=k,
                              chunks=len(run.chunk_calls))
            self.attempts.append(attempt)
            t0 = self.clock()
            flight = self._inflight = _InFlight(run, chunk, attempt, t0,
                                                sent=resume_id is not None, request_id=resume_id)
            try:
                output = yield from self._provider_call(flight, timeout_s, resume_id)
            except Exception as exc:
                self._inflight = None
                self.add_time("call_s", self.clock() - t0)
                self._end_attempt(attempt, exc, t0)
                if possibly_charged(exc) or resume_id is not None or (
                        flight.sent and not isinstance(exc, ModelglassError)):
                    # the provider may bill it (a bug after a create counts as unknown too)
                    _outcome.charge(run, chunk, attempt, None, possibly=True)
                wait = (None if resume_id is not None else self.owner.retry_policy.wait(
                    tries, exc, remaining_s=self.remaining(), slack_s=DEADLINE_SLACK_S))
                if wait is None:
                    raise
                self.add_time("retry_wait_s", wait)
                log.info("%s: try %d failed (%s); retrying in %.2f s", run.key, tries,
                         attempt.error, wait)
                asked = getattr(exc, "retry_after", None)
                why = (f"rate limited; the provider asked to wait {asked:g} s (Retry-After)"
                       if asked else f"try {tries} failed ({attempt.error_type}); retrying")
                self.emit("waiting", run, chunk=k, wait_s=wait, message=why)
                yield Wait(wait)
                continue
            self._inflight = None
            self.add_time("call_s", self.clock() - t0)
            self._end_attempt(attempt, None, t0)
            attempt.request_id = output.request_id or flight.request_id
            usd = _outcome.charge(run, chunk, attempt, output)
            run.outputs.append(output)
            # Without their query: a signed URL's token must not reach logs, files or errors.
            attempt.urls = tuple(public_url(i.url) or "" for i in output.images if i.url)
            self.emit("generated", run, chunk=k, request_id=attempt.request_id,
                      urls=attempt.urls, cost_usd=usd)
            return output

    def _provider_call(self, flight: _InFlight, timeout_s: float,
                       resume_id: str | None) -> Generator[Step, Any, ProviderOutput]:
        """One try: the provider's own sans-I/O job, its steps passed through."""
        run = flight.run

        def submitted(request_id: str) -> None:
            flight.request_id = flight.attempt.request_id = request_id
            self.emit("submitted", run, chunk=flight.attempt.chunk, request_id=request_id)

        job = run.provider.job(flight.chunk, timeout_s=timeout_s, resume=resume_id,
                               on_submitted=submitted)
        if resume_id is None:
            # Before the create's first byte may leave: a journal that never saw this knows
            # nothing was sent (a crash before it is not a possible charge). A job without an id
            # is ``submitted`` now: once sent, it may be billed, and it has no id to wait for.
            self.emit("sending" if run.resumable else "submitted", run,
                      chunk=flight.attempt.chunk)
        flight.sent = True
        return (yield from job)

    def _download(self, run: Run, k: int, output: ProviderOutput) -> Generator[Step, Any, None]:
        """Fetch and verify the images of call ``k``; keep every one that arrived."""
        from .._download import has_c2pa
        from .._simulated import is_simulated

        chunk = run.chunk_calls[k]
        attempt = next(a for a in reversed(self.attempts) if a.ok and a.chunk == k)
        timeout_s = max(min(self.owner.timeout_s, self.remaining()), 0.001)
        t0 = self.clock()
        try:
            got_all = yield Download(tuple(output.images), run.call.provider, timeout_s,
                                     self.owner.max_download_bytes)
        finally:
            self.add_time("download_s", self.clock() - t0)
        seeds = chunk.planned.seeds
        fetched: list[tuple[int, Fetched]] = []
        failed: list[tuple[int, BaseException]] = []
        for i, (raw, got) in enumerate(zip(output.images, got_all, strict=True)):
            if isinstance(got, BaseException):
                failed.append((i, got))
                continue
            fetched.append((i, got))
            seed = raw.seed if raw.seed is not None else (seeds[i] if seeds and i < len(seeds)
                                                          else None)
            run.fetched.append(got)
            run.sources.append((chunk, output))
            run.images.append(GeneratedImage(
                data=got.data, mime=got.mime, width=got.width, height=got.height, seed=seed,
                index=len(run.images), sha256=got.sha256, simulated=is_simulated(got.data),
                c2pa=has_c2pa(got.data)))
        if fetched:
            self.emit("downloaded", run, chunk=k, request_id=output.request_id,
                      sha256=tuple(f.sha256 for _, f in fetched))
        if not failed:
            return
        index, reason = failed[0]
        raw = output.images[index]
        how = "" if len(failed) == 1 else f" ({len(failed)} of {len(output.images)} images failed)"
        err = DownloadFailed(
            f"image {index} of {run.key} (request {output.request_id or 'without id'}) was paid "
            f"for but could not be had{how}: {self.hooks.scrub(str(reason))}",
            url=public_url(raw.url), request_id=output.request_id, cost_usd=attempt.cost_usd,
            index=index,
            fetched=fetched, reason=reason, provider=run.call.provider,
            status=getattr(reason, "status", None))
        err.__cause__ = reason
        self._end_attempt(attempt, err, self.clock() - attempt.duration_s)
        run.missing.append(Missing(chunk=k, count=len(failed), reason=str(err).splitlines()[0],
                                   error_type="DownloadFailed", paid=True))
        run.failure = err

    # -- time -------------------------------------------------------------------------------------
    def _call_timeout(self, run: Run) -> float:
        """Seconds the next provider call may take: the client's timeout within the deadline,
        less the time a resumable job needs to be cancelled at its end."""
        left = self.remaining()
        if left <= DEADLINE_SLACK_S:
            raise _outcome.deadline_error(self, f"before the next call to {run.key}")
        if run.resumable:
            left -= min(CANCEL_GRACE_S, left / 10)
        return min(self.owner.timeout_s, left)

    # -- attempts ---------------------------------------------------------------------------------
    def _end_attempt(self, attempt: Attempt, exc: BaseException | None, t0: float) -> None:
        attempt.duration_s = self.clock() - t0
        if exc is None:
            self.hooks.attempt_ended(attempt, None)
            return
        self.try_errors.append(exc)
        attempt.error = self.hooks.scrub(str(exc)) or type(exc).__name__
        attempt.error_type = type(exc).__name__
        attempt.status = getattr(exc, "status", None)
        attempt.retryable = retryable(exc)
        attempt.retry_after = retry_after_of(exc)
        if isinstance(exc, OutcomeUnknown) and exc.request_id and not attempt.request_id:
            attempt.request_id = exc.request_id
        self.hooks.attempt_ended(attempt, exc)

    # -- endings ----------------------------------------------------------------------------------
    def _after_failure(self, run: Run | None, exc: Exception) -> ImageResult | None:
        """What an offer's failure leads to: a partial result, an error raised, or (None) the
        next offer. Settles the offer's budget either way."""
        _outcome.close(self.budget, run)
        if not isinstance(exc, ModelglassError):
            _outcome.close_all(self)
            self.emit("failed", run, error={"type": type(exc).__name__,
                                            "message": self.hooks.scrub(str(exc))})
            raise exc  # a bug, not a provider failure: never hidden behind a fallback
        if run is not None and run.images:
            if run.failure is None or run.failure is not exc:
                _outcome.missing_from(self, run, exc)
            result = self.finish(run, failure=exc)
            if self.request.strict:
                exc.partial = result  # type: ignore[attr-defined]
                raise self.fail(_outcome.attach(self, exc))
            log.warning("%s: returning %d of %d images: %s", run.key, len(run.images),
                        self.request.n, str(result.missing[-1].reason))
            return result
        self.errors.append(exc)
        if not falls_back(exc, allow_double_payment=self.allow_double_payment):
            raise self.fail(_outcome.attach(self, exc))
        if self.remaining() <= DEADLINE_SLACK_S:
            raise self.fail(_outcome.deadline_error(
                self, f"while trying {run.key if run else 'an offer'}", cause=exc))
        log.info("%s failed (%s); falling back to the next ranked offer",
                 run.key if run else "offer", self.hooks.scrub(str(exc)).splitlines()[0])
        return None

    def finish(self, run: Run, failure: BaseException | None = None,
                rejected: list[Run] | None = None) -> ImageResult:
        _outcome.close(self.budget, run)
        self.timings["total_s"] = self.clock() - self.started
        result = _outcome.result(self, run, failure)
        if self.checking is not None:
            _checking.attach(self, result, run, rejected or [])
        self.hooks.result_ready(result)
        self.emit("done", run, cost_usd=result.cost_usd,
                  sha256=tuple(i.sha256 for i in result.images),
                  message=f"{len(result.images)} of {self.request.n} images"
                  if result.partial else "")
        return result

    def fail(self, exc: BaseException) -> BaseException:
        """Report the error that ends the job (every budget settled first)."""
        _outcome.close_all(self)
        if self.events is not None:
            self.emit("failed", self.runs[-1] if self.runs else None,
                      error=_outcome.error_dict(exc, self.hooks.scrub),
                      possibly_charged=any(a.possibly_charged for a in self.attempts),
                      cost_usd=_outcome.charged(self)[0])
        return exc

    def _interrupted(self, exc: BaseException) -> Generator[Step, Any, None]:
        """Cancelled or interrupted mid-job: cancel the provider's job, settle, record."""
        flight, self._inflight = self._inflight, None
        if flight is not None:
            run = flight.run
            cancel = (run.provider.cancel_job(flight.chunk, flight.request_id)
                      if run.resumable and flight.request_id else None)
            confirmed = False
            if cancel is not None:
                try:
                    confirmed = yield from cancel
                except BaseException as again:  # noqa: BLE001 - interrupted again: stop cancelling
                    log.info("%s: cancel of %s interrupted (%s)", run.key, flight.request_id,
                             type(again).__name__)
            # Not an attempt outcome the health board should learn from: recorded here only.
            attempt = flight.attempt
            attempt.duration_s = self.clock() - flight.t0
            attempt.error_type, attempt.retryable = type(exc).__name__, False
            attempt.error = (f"interrupted ({type(exc).__name__}); "
                             + ("the provider's job was cancelled" if confirmed
                                else "a cancel was sent but not confirmed" if cancel is not None
                                else "a request was already sent" if flight.sent
                                else "nothing was sent"))
            if flight.sent:
                _outcome.charge(run, flight.chunk, flight.attempt, None, possibly=True)
        _outcome.close_all(self)
        if self.events is not None:
            self.emit("failed", self.runs[-1] if self.runs else None,
                      error={"type": type(exc).__name__, "message": "interrupted"},
                      possibly_charged=flight is not None and flight.sent,
                      cost_usd=_outcome.charged(self)[0])
        try:
            exc.attempts = list(self.attempts)  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions without a __dict__
            pass


def chunk_calls_of(call: ProviderCall, provider: Provider) -> list[ProviderCall]:
    """One provider call per chunk of ``n``; chunk ``k`` continues the seeds (seed + i)."""
    if len(call.chunks) == 1:
        return [call]
    from .._wire_fit import chunk_payload

    # The first chunk's payload is the plan's own; its planned n is the chunk's.
    calls = [replace(call, planned=call.planned.chunk(0, call.chunks[0]))]
    start = call.chunks[0]
    for count in call.chunks[1:]:
        planned = call.planned.chunk(start, count)
        payload = chunk_payload(provider, planned, call.offer)
        calls.append(replace(call, planned=planned, payload=payload))
        start += count
    return calls

