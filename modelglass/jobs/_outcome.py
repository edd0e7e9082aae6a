"""How a job ends: the reservation it starts with, what each call is charged, how the
reservation is settled (:func:`~modelglass.budget.settle_or_release`, the one rule), the
result it builds, the error it raises.

Pure functions of a :class:`~._engine.Job`'s state. The error rules (what ``generate`` raises):

- the error that ended the job, as it is, when nothing else was tried or every failed offer
  failed the same way (same error class and HTTP status: a pinned 429 is a
  :class:`~modelglass.errors.RateLimited`), with every attempt on ``.attempts`` and the previous
  offer's error as ``__cause__``;
- :class:`~modelglass.errors.AllAttemptsFailed` when the offers failed in different ways, built
  with :meth:`AllAttemptsFailed.of` so that ``except`` on what they share still catches it;
- a :class:`~modelglass.errors.GenerationTimeout` when the job's deadline ran out.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from ..budget import amount_to_hold, settle_or_release
from ..errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    GenerationTimeout,
    ModelglassError,
    ProviderUnavailable,
    RateLimited,
    describe_attempt,
)
from ..result import Fate, FateKind, ImageResult, Missing
from ._retry import possibly_charged

if TYPE_CHECKING:
    from ..budget import Budget, Lease, Reservation
    from ..plan import ProviderCall
    from ..providers.base import ProviderOutput
    from ..request import ImageRequest
    from ..result import Attempt
    from ._engine import Job, Run

__all__ = ["attach", "charge", "charged", "close", "close_all", "deadline_error", "error_dict",
           "final_error", "missing_from", "reserve", "result"]

log = logging.getLogger("modelglass")


def reserve(budget: Budget | Lease | None, request: ImageRequest, call: ProviderCall) -> Reservation | None:
    """``max_cost_usd`` again (the plan may differ from what routing saw), then the budget."""
    usd = call.estimate.usd
    limit = request.max_cost_usd
    if limit is not None:
        if usd is None:
            raise BudgetExceeded(
                f"{call.offer.key}: its price is unknown, so max_cost_usd=${limit:.4f} cannot "
                f"be guaranteed; nothing was sent. Pick a model with a known price.",
                estimate_usd=None, limit_usd=limit)
        if usd > limit + 1e-12:
            raise BudgetExceeded(
                f"{call.offer.key}: the estimate ${usd:.4f} ({call.estimate.basis}) is over "
                f"max_cost_usd=${limit:.4f}; nothing was sent. Raise the ceiling or ask for "
                f"fewer or smaller images.", estimate_usd=usd, limit_usd=limit)
    if budget is None:
        return None
    # The upper bound (max_usd: every token kind, tier and chunk), so settling never passes it.
    return budget.reserve(amount_to_hold(call.estimate), label=call.offer.key)


def charge(run: Run, chunk: ProviderCall, attempt: Attempt, output: ProviderOutput | None, *,
           possibly: bool = False) -> float | None:
    """Count call ``chunk`` of ``run`` as charged: what the provider stated, else its share of
    the estimate. ``possibly``: the outcome is unknown, the estimate is kept as spent."""
    stated = output.cost_usd if output is not None else None
    if stated is not None and not (math.isfinite(stated) and stated >= 0):
        log.warning("%s: ignoring a stated cost of %r; counting the estimate", run.key, stated)
        stated = None
    usd: float | None
    if stated is not None:
        usd, estimated = float(stated), False
    else:
        est = run.call.estimate.usd
        usd = None if est is None else est * chunk.planned.n / run.call.planned.n
        estimated = True
    run.charges.append((usd, estimated))
    attempt.cost_usd, attempt.cost_is_estimate = usd, estimated
    attempt.possibly_charged = possibly
    return usd


def close(budget: Budget | Lease | None, run: Run | None) -> None:
    """Settle what ``run`` was charged, or release its reservation when nothing was (once)."""
    if run is None or run.closed:
        return
    run.closed = True
    settle_or_release(budget, run.reservation, [usd for usd, _ in run.charges])


def close_all(job: Job) -> None:
    """Settle every offer the job tried (each once)."""
    for run in job.runs:
        close(job.budget, run)


def missing_from(job: Job, run: Run, exc: BaseException) -> None:
    """The chunks a failed provider call left undelivered."""
    # The calls are made in order, one output each: those of this run, not of an earlier try
    # on the same offer (a check's retry), which the job's attempts would not tell apart.
    resume = job.resumed(run)
    first = resume.chunk if resume is not None else 0
    done = set(range(first, first + len(run.outputs)))
    failed_downloads = {m.chunk for m in run.missing}
    paid = possibly_charged(exc)
    reason = job.hooks.scrub(str(exc)).splitlines()[0]
    for k, chunk in enumerate(run.chunk_calls):
        if k in done or k in failed_downloads:
            continue
        if k < first:
            continue
        run.missing.append(Missing(chunk=k, count=chunk.planned.n,
                                   reason=f"{type(exc).__name__}: {reason}",
                                   error_type=type(exc).__name__, paid=paid))
        paid = False  # only the call that failed may have been billed
    run.failure = exc


def charged(job: Job) -> tuple[float | None, bool]:
    """What the whole job was charged (every offer tried) and whether any of it is an estimate.
    None when some part of it has no known price."""
    charges = [c for run in job.runs for c in run.charges]
    known = [usd for usd, _ in charges if usd is not None]
    if len(known) != len(charges):
        return None, True
    return (sum(known) if charges else None), any(est for _, est in charges)


def result(job: Job, run: Run, failure: BaseException | None = None) -> ImageResult:
    """The :class:`ImageResult` of a run that delivered images (all, or some: ``partial``)."""
    from .._download import size_fate
    from .._stamp import stamp

    call = run.call
    fates = list(call.fates)
    planned = call.planned
    for got in run.fetched:  # the bytes are the truth: a size that differs is a fate
        fate = size_fate(got, planned.width, planned.height, call.fate("size"))
        if fate is not None:
            fates = [f for f in fates if f.control != "size"] + [fate]
            break
    cost, is_estimate = charged(job)
    extra: dict[str, Any] = {"request_ids": [o.request_id for o in run.outputs],
                             "provider_timings": [o.timings for o in run.outputs]}
    missing = list(run.missing)
    failure = failure or run.failure
    if (resume := job.resumed(run)) is not None:
        extra["resumed"] = {"request_id": resume.request_id, "chunk": resume.chunk}
    if missing:
        n = job.request.n
        first = missing[0]
        why = job.hooks.scrub(first.reason)
        what = ("could not be downloaded" if first.error_type == "DownloadFailed"
                else "failed")
        fates = [f for f in fates if f.control != "n"] + [Fate(
            "n", FateKind.approximated, n, len(run.images),
            f"provider call {first.chunk + 1} of {len(run.chunk_calls)} on {run.key} {what} "
            f"({why}); the {len(run.images)} image(s) already paid for are returned",
            f"{len(run.images)} of {n} images")]
        extra["partial"] = {"requested": n, "delivered": len(run.images),
                            "error_type": type(failure).__name__ if failure else first.error_type,
                            "error": why}
    result = ImageResult(images=run.images, model=call.model, provider=call.provider,
                         cost_usd=cost, cost_is_estimate=is_estimate or cost is None,
                         latency_s=job.timings["total_s"], fates=fates, decision=job.decision,
                         attempts=job.attempts, plan=call,
                         simulated=any(img.simulated for img in run.images),
                         timings=dict(job.timings), extra=extra, partial=bool(missing),
                         missing=missing, job_id=job.job_id)
    own = [usd for usd, _ in run.charges]
    stamp(result, call, run.sources, sum(own) if own and None not in own else None)  # type: ignore[arg-type]
    return result


def attach(job: Job, exc: BaseException) -> BaseException:
    """``exc`` with every attempt on it, and the previous offer's error as its cause."""
    if getattr(exc, "_job_attached", False):
        return exc
    exc._job_attached = True  # type: ignore[attr-defined]
    for e in {id(e): e for e in (exc, *job.errors, *job.try_errors)}.values():
        # a provider scrubs its own key; the client knows them all
        _scrub_error(e, job.hooks.scrub)
    if not hasattr(exc, "attempts"):
        exc.attempts = list(job.attempts)  # type: ignore[attr-defined]
    tries = exc.attempts  # type: ignore[attr-defined]
    if (len(tries) > 1 and not isinstance(exc, AllAttemptsFailed) and exc.args
            and isinstance(exc.args[0], str)):
        exc.args = ("\n".join([exc.args[0], "Attempts:",
                               *(f"  - {describe_attempt(a)}" for a in tries)]), *exc.args[1:])
    cost, _ = charged(job)
    exc.charged_usd = cost  # type: ignore[attr-defined]
    if exc.__cause__ is None:  # the try before: the chain reads like the job went
        earlier = [e for e in job.try_errors if e is not exc and e.__cause__ is not exc]
        if earlier:
            exc.__cause__ = earlier[-1]
    return exc


def _scrub_error(exc: BaseException, scrub: Any) -> None:
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (scrub(exc.args[0]), *exc.args[1:])
    body = getattr(exc, "body", None)
    if isinstance(body, str):
        exc.body = scrub(body)  # type: ignore[attr-defined]


def deadline_error(job: Job, where: str, cause: BaseException | None = None) -> GenerationTimeout:
    err = GenerationTimeout(
        f"the job's deadline of {job.deadline_s:g} s ran out {where} "
        f"({len(job.attempts)} provider attempt(s) made). Raise deadline_s, or use a faster "
        f"quality axis or model.", retryable=False)
    err.attempts = list(job.attempts)  # type: ignore[attr-defined]
    if cause is not None:
        err.__cause__ = cause
    return err


def final_error(job: Job) -> BaseException:
    """The error for a job whose every offer failed (and fell back)."""
    errors = job.errors
    if not errors:  # pragma: no cover - routing guarantees one offer
        return attach(job, AllAttemptsFailed("no offer could be tried", list(job.attempts)))
    ways = {(type(e), getattr(e, "status", None)) for e in errors}
    if len(ways) == 1:
        return attach(job, errors[-1])
    common = _common_base({kind for kind, _ in ways})
    failed = [a for a in job.attempts if not a.ok]
    waits = [a.retry_after for a in failed if a.retry_after is not None]
    offers = list(dict.fromkeys(a.offer_id for a in job.attempts))
    err = AllAttemptsFailed.of(common)(
        f"every ranked offer failed for this {job.request.quality} request, in different "
        f"ways ({len(offers)} offer(s), {len(job.attempts)} attempt(s)); each attempt below. "
        f"{_advice(errors)}", list(job.attempts),
        retryable=bool(failed) and all(a.retryable for a in failed),
        retry_after=max(waits) if waits else None)
    err.__cause__ = errors[-1]
    return attach(job, err)


def _common_base(kinds: set[type]) -> type:
    first = next(iter(kinds))
    for base in first.__mro__:
        if all(issubclass(k, base) for k in kinds):
            return base
    return ModelglassError  # pragma: no cover


def _advice(errors: list[BaseException]) -> str:
    """What to do next, from what actually went wrong."""
    tips = []
    if any(isinstance(e, ProviderUnavailable) for e in errors):
        tips.append("set the missing key or install the missing client (see the attempts)")
    if any(isinstance(e, RateLimited) for e in errors):
        tips.append("lower the concurrency or retry later (rate limited)")
    if any(isinstance(e, GenerationTimeout) for e in errors):
        tips.append("raise timeout_s / deadline_s or pick a faster model")
    if not tips or any(getattr(e, "retryable", False) and not isinstance(e, RateLimited)
                       for e in errors):
        tips.append("check the providers' status")
    tips.append("or widen the choice (another quality axis, unpin model/provider)")
    return "To go on: " + "; ".join(tips) + "."


def error_dict(exc: BaseException, scrub: Any = str) -> dict[str, Any]:
    """The error as the ``failed`` event carries it (JSON-ready, keys scrubbed by ``scrub``)."""
    out: dict[str, Any] = {"type": type(exc).__name__,
                           "message": (scrub(str(exc)).splitlines() or [""])[0]}
    for name in ("status", "retryable", "retry_after", "request_id", "possibly_charged",
                 "charged_usd"):
        value = getattr(exc, name, None)
        if value is not None:
            out[name] = value
    return out
