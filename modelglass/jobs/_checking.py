"""Outcome checks inside a job: check each try's images, and on a failed check try again.

Part of :class:`~._engine.Job`'s state machine (``generate(check=..., on_fail=...)``). After an
offer delivered its images (every one, or some: a partial result, whose delivered images are
checked the same way; the missing ones are no failed check), the job yields a
:class:`~._steps.Check` step; its results go on
the run, to the client's observed store (per offer × check × prompt class) and, at the end, on
the result (``ImageResult.checks``, each image's provenance).

When a check fails and ``on_fail`` asks for it, one more try, at most ``max_check_retries``:

- ``"retry"``: the same offer with a new seed (the next one after the last seed sent; a fresh
  draw when the request left the seed open);
- ``"escalate"``: the next offer in the ranking that this job has not tried.

Each try is planned and reserved on the budget before it is sent, exactly as the first
(:meth:`Job._open`), so a budget that cannot hold it stops the retries, not the call. A try that
fails outright ends the retries too (the images it delivered before it failed, if any, are
checked and kept). The call returns the first try whose images pass, else the
try whose checks did best; every try is paid for and counted in ``cost_usd`` and ``attempts``,
and the images of the tries not returned are on ``ImageResult.rejected``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ..errors import ModelglassError
from . import _outcome
from ._delivery import Check
from ._steps import Step

if TYPE_CHECKING:
    from ..checks import CheckResult
    from ..plan import ProviderCall
    from ..result import ImageResult
    from ._engine import Job, Run

log = logging.getLogger("modelglass")

__all__ = ["attach", "deliver", "is_partial", "partial"]


def deliver(job: Job, run: Run, index: int) -> Generator[Step, Any, ImageResult]:
    """The result of ``run`` (the offer at ``index`` of the job's candidates), checked, with the
    tries ``on_fail`` asks for."""
    checking = job.checking
    if checking is None:
        return job.finish(run)
    tries = [run]
    notes: list[str] = []
    yield from _check(job, run, [])
    _outcome.close(job.budget, run)  # settled now: the next try's reservation must not stack on it
    while (not _passed(tries[-1]) and checking.on_fail != "keep"
           and len(tries) <= checking.max_retries):
        nxt = _next_try(job, tries, index)
        if nxt is None:
            notes.append("no untried offer was left to escalate to")
            break
        key, call_of, index = nxt
        # the rejected try's images are paid for: out to the runner before the next is sent
        try:
            job.emit("rejected", tries[-1], strict=True,
                     images=tuple(_mark_rejected(tries[-1])), tries=len(tries),
                     request_id=tries[-1].outputs[0].request_id if tries[-1].outputs else None,
                     message=f"try {len(tries)} failed its checks; {checking.on_fail} on {key}")
        except Exception as exc:  # noqa: BLE001 - not kept (disk full): pay for no more tries
            why = job.hooks.scrub(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("%s: the rejected try's images could not be kept (%s); no %s sent",
                        tries[-1].key, why, checking.on_fail)
            notes.append(f"the rejected try could not be kept ({type(exc).__name__}: {why}); "
                         f"no {checking.on_fail} was sent")
            break
        new: Run | None = None
        try:
            new = job.open_run(key, call_of)
            yield from job.run_offer(new)
        except Exception as exc:
            _outcome.close(job.budget, new)
            if not isinstance(exc, ModelglassError):
                _outcome.close_all(job)
                raise
            why = job.hooks.scrub(str(exc)).splitlines()[0]
            log.warning("%s: the %s after a failed check failed (%s); keeping the checked "
                        "images", key, checking.on_fail, why)
            notes.append(f"{checking.on_fail} on {key} failed: {type(exc).__name__}: {why}")
            if is_partial(new, exc):  # some of its images arrived, paid for: checked and kept
                assert new is not None
                if new.failure is not exc:
                    _outcome.missing_from(job, new, exc)
                yield from _check(job, new, tries)
                tries.append(new)
            break
        yield from _check(job, new, tries)
        _outcome.close(job.budget, new)
        tries.append(new)
    # strict: a try that came back partial is never the one returned while a whole one exists
    whole = [t for t in tries if not t.missing] if job.request.strict else tries
    best = max(whole or tries, key=_rank)
    result = job.finish(best, rejected=[t for t in tries if t is not best])
    result.extra["checks"] = {"tries": len(tries), "on_fail": checking.on_fail,
                              "offers": [t.key for t in tries], "notes": notes}
    return result


def is_partial(run: Run | None, exc: BaseException) -> bool:
    """Whether ``exc`` ended ``run`` after some of its images arrived: a partial result, whose
    images are checked like any (the missing ones are no failed check), not the next offer."""
    return run is not None and bool(run.images) and isinstance(exc, ModelglassError)


def partial(job: Job, run: Run, exc: ModelglassError, index: int
            ) -> Generator[Step, Any, ImageResult]:
    """The checked result of ``run``, which delivered some of its images before ``exc``; with
    ``strict``, ``exc`` raised with that partial result (checked) on it."""
    _outcome.close(job.budget, run)  # every image it delivered was paid for: settled once
    if run.failure is not exc:
        _outcome.missing_from(job, run, exc)
    if job.request.strict:
        yield from _check(job, run, [])
        exc.partial = job.finish(run, failure=exc)  # type: ignore[attr-defined]
        raise job.fail(_outcome.attach(job, exc))
    log.warning("%s: returning %d of %d images: %s", run.key, len(run.images), job.request.n,
                run.missing[-1].reason if run.missing else type(exc).__name__)
    return (yield from deliver(job, run, index))


def _check(job: Job, run: Run, before: list[Run]) -> Generator[Step, Any, None]:
    """Check ``run``'s images (the same-bytes check also against every earlier try's)."""
    assert job.checking is not None
    earlier = tuple((img.index, img.sha256) for r in before for img in r.images)
    t0 = job.clock()
    results: list[CheckResult] = yield Check(job.checking.checkers, tuple(run.images),
                                             run.call.request, earlier)
    job.add_time("check_s", job.clock() - t0)
    run.checks = list(results)
    failed = [c for c in results if c.failed]
    job.emit("checked", run, message=("all checks passed" if not failed else "failed: " + ", ".join(
        f"{c.name} on image {c.image}" for c in failed)))
    # observed-store hook: pass rates per offer × check × prompt class
    job.hooks.checks_done(run.key, run.call.request, results)


def _passed(run: Run) -> bool:
    return not any(c.failed for c in run.checks)


def _rank(run: Run) -> tuple[int, int, float]:
    """Fewest failed checks first, then the most images delivered (a partial try has fewer),
    then the highest mean score (ties: the earliest try, as ``max`` keeps the first of
    equals)."""
    scores = [c.score for c in run.checks if c.score is not None]
    return (-sum(c.failed for c in run.checks), len(run.images),
            sum(scores) / len(scores) if scores else 0.0)


def _next_try(job: Job, tries: list[Run], index: int
              ) -> tuple[str, Callable[[], ProviderCall], int] | None:
    """The offer and plan of the next try, and its index among the candidates."""
    assert job.checking is not None
    last = tries[-1]
    if job.checking.on_fail == "retry":
        request = last.call.request
        seeds = last.call.planned.seeds
        if request.seed is not None and seeds:
            from ..request import SEED_MAX

            request = request.model_copy(update={"seed": (seeds[-1] + 1) % (SEED_MAX + 1)})
        return last.key, lambda: job.owner.plan_offer(request, last.key), index
    tried = {t.key for t in tries}
    candidates = job.candidates()
    for j in range(index + 1, len(candidates)):
        key, call_of = candidates[j]
        if key in tried:
            continue
        if why := job.cooling(key):
            job.skipped.append((key, why))
            continue
        return key, call_of, j
    return None


def attach(job: Job, result: ImageResult, run: Run, rejected: list[Run]) -> None:
    """Put the checks on the result and into each image's provenance; the tries not returned
    go on ``result.rejected``."""
    result.checks = list(run.checks)
    for img in result.images:
        img.metadata["checks"] = [c.to_dict() for c in run.checks if c.image == img.index]
    result.rejected = [img for r in rejected for img in _mark_rejected(r)]


def _mark_rejected(run: Run) -> list[Any]:
    """``run``'s images, each with the provenance of a rejected image (offer, seed, sha256,
    its checks' verdicts)."""
    for img in run.images:
        img.metadata = {"offer": run.key, "seed": img.seed, "sha256": img.sha256,
                        "rejected": True, "simulated": img.simulated,
                        "checks": [c.to_dict() for c in run.checks if c.image == img.index]}
    return list(run.images)
