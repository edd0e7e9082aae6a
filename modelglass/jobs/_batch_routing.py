"""Routing a batch's jobs: each routed once, just ahead of its run, looked up in the result
cache, and parked while every offer it may use cools down.

:class:`BatchRouting` is the part of :class:`~._batch.Batch` that turns a job into the facts
the scheduler and the budget need (its first-choice provider and offer, the upper bound of its
cost) and keeps the routing decision for the job's engine, so a job is routed and planned once.
A decision whose first offer began cooling down before the job ran is dropped: the engine's
client routes again, as a fresh call would.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..errors import ModelglassError, NoEligibleModel
from ._cache import ResultCache, cache_key
from ._cooling import COOLING_MAX_S, Parking, cooldown_left, cooling_reason
from ._events import JobEvent
from ._reconcile import error_dict as _error_dict
from ._report import JobOutcome

if TYPE_CHECKING:
    from ..result import ImageResult
    from ._journal import Journal
    from ._report import Status
    from ._schedule import Job

log = logging.getLogger("modelglass")

__all__ = ["BatchRouting"]


class BatchRouting:
    """Routing for :class:`~._batch.Batch` (which provides the attributes below,
    :meth:`record` and :meth:`succeeded`)."""

    client: Any
    journal: Journal | None
    cache: ResultCache | None
    parking: Parking
    on_event: Any
    _lazy: bool

    def record(self, outcome: JobOutcome) -> JobOutcome:
        raise NotImplementedError

    def succeeded(self, job: Job, result: ImageResult, status: Status = "done") -> JobOutcome:
        raise NotImplementedError

    def route_one(self, job: Job) -> JobOutcome | None:
        """Route ``job`` (first-choice provider and estimate, for the scheduler and the
        budget) and look it up in the cache; the job's outcome when it needs no run (it cannot
        be routed, or the cache has it), else None: schedule it."""
        if not job.routed:
            failed = self._route(job)
            if failed is not None:
                return failed
        return self._cached(job)  # free: no budget hold, no slot

    def _route(self, job: Job) -> JobOutcome | None:
        """Route ``job``: its provider, offer, cost bound, cache key (and, when it runs soon,
        its decision); its outcome when it cannot be routed (or parks), else None."""
        job.routed = True
        try:
            decision = self.client.route(job.request)
        except ModelglassError as exc:
            return self._fail_early(job, exc)
        if decision.choice is None:
            why = cooling_reason(decision.rejected)
            if why is not None:
                if (parked := self._park(job, why)) is not None:
                    return parked
                waited = time.monotonic() - (job.cooling_since or time.monotonic())
                return self._fail_early(job, NoEligibleModel(
                    f"no offer can serve job {job.id}: every eligible offer is cooling down "
                    f"({why}); it waited {waited:.0f} s, up to its deadline. Run the batch again "
                    f"later (with --journal it picks up where it stopped).",
                    {r.offer_key: r.reason for r in decision.rejected}))
            try:  # why, and what to do (e.g. the key to set), not the axis's description
                decision.require()
            except ModelglassError as exc:
                return self._fail_early(job, exc)
        first = decision.choice  # proven first; the rest is ranked only if read
        job.provider, job.offer_key = first.offer.provider, first.key
        job.decision = decision if self._lazy else None  # the Ray workers route their own
        # The upper bound of what the call can cost (when the estimate carries one) is what
        # the budget must hold; the point estimate otherwise.
        job.estimate = getattr(getattr(first.call, "estimate", None), "max_usd", None) \
            or first.cost_usd
        if self.cache is not None:
            job.call = first.call
            job.cache_key = cache_key(job.call)
        return None

    def _fail_early(self, job: Job, exc: ModelglassError) -> JobOutcome:
        """The job failed before it could run (it cannot be routed)."""
        if self.journal is not None:
            self.journal.failed(job.id, error=_error_dict(exc) or {})
        return self.record(JobOutcome(job.id, job.index, job.request, "failed", error=exc))

    def _decision(self, job: Job) -> Any:
        """The decision the job was routed with, for its engine; None (route again, as a
        fresh call does) when its first offer started cooling down since."""
        decision, job.decision = job.decision, None
        if decision is None:
            return None
        health = getattr(self.client, "health", None)
        rules = getattr(getattr(decision, "policy", None), "health", None)
        first = decision.choice  # proven first; the rest is ranked only if read
        if first is None:
            return None
        if health is not None and rules is not None \
                and health.cooling(first.key, first.offer.provider, rules) is not None:
            return None
        return decision

    def _cached(self, job: Job) -> JobOutcome | None:
        """The job's outcome served from the result cache (free: no hold, no slot), or None."""
        if self.cache is None or job.cache_key is None:
            return None
        result = self.cache.get(job.cache_key, job.call)
        if result is None:
            return None
        return self.succeeded(job, result, status="cached")

    def _park(self, job: Job, why: str) -> JobOutcome | None:
        """Park a job that sent nothing because every offer it may use is cooling down; None
        when it has waited its deadline out (it fails then)."""
        if not self._lazy:
            return None
        now = time.monotonic()
        if job.cooling_since is None:
            job.cooling_since = now
        limit = getattr(self.client, "deadline_s", None) or COOLING_MAX_S
        left = limit - (now - job.cooling_since)
        if left <= 0:
            return None
        wait = min(cooldown_left(self.client), left)
        job.routed, job.hold, job.decision = False, None, None
        self.parking.park(job, wait)
        log.info("job %s waits %.1f s for a cooldown: %s", job.id, wait, why)
        if self.on_event is not None:
            self.on_event(JobEvent(job.id, "waiting", wait_s=wait,
                                   message=f"waiting for a cooldown: {why}"))
        return JobOutcome(job.id, job.index, job.request, "cooling")
