"""Which job of a batch starts next: a pure scheduler (no I/O), per-provider limits, and the
budget lease each job's engine sees.

- :class:`Scheduler`: at most ``concurrency`` jobs in flight; per provider (the job's
  first-ranked offer's) at most ``in_flight`` jobs and ``per_minute`` starts; providers taken in
  turn, so a long queue for one provider does not starve the others; each job's estimate held on
  the budget when it is admitted, and when the next job could pass the limit, nothing more is
  started (the batch waits for jobs in flight, then leaves the rest undone).
- :func:`load_limits`: per-provider limits from a YAML config file.
- :class:`Lease`: hands a job's admission hold to its engine as the first reservation.
"""

from __future__ import annotations

import collections
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..budget import Budget, Reservation
from ..errors import BudgetExceeded, InvalidRequest

if TYPE_CHECKING:
    from ._batch import Job

__all__ = ["Lease", "ProviderLimit", "Scheduler", "load_limits", "validate_limits"]


# -- limits --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderLimit:
    """How hard a batch may use one provider: jobs ``in_flight`` at once, and job starts
    ``per_minute`` (None: no limit besides the batch's own concurrency)."""

    in_flight: int | None = None
    per_minute: float | None = None

    def __post_init__(self) -> None:
        in_flight, per_minute = self.in_flight, self.per_minute
        if in_flight is not None and (isinstance(in_flight, bool)
                                      or not isinstance(in_flight, int) or in_flight < 1):
            raise InvalidRequest(f"in_flight must be a whole number of at least 1 (jobs at once), "
                                 f"got {in_flight!r}; leave it out for no limit",
                                 field="limits.in_flight")
        if per_minute is not None and (isinstance(per_minute, bool)
                                       or not isinstance(per_minute, (int, float))
                                       or not 0 < per_minute < math.inf):
            raise InvalidRequest(f"per_minute must be a number above 0 (job starts a minute), "
                                 f"got {per_minute!r}; leave it out for no limit",
                                 field="limits.per_minute")


def validate_limits(limits: Mapping[str, Any], *,
                    where: str = "limits") -> dict[str, ProviderLimit]:
    """Per-provider limits from ``{provider: ProviderLimit | {in_flight, per_minute}}``, each
    value checked (``in_flight`` ≥ 1, ``per_minute`` > 0); :class:`InvalidRequest` naming the
    provider and key otherwise.

    >>> validate_limits({"fal": {"in_flight": 2}})
    {'fal': ProviderLimit(in_flight=2, per_minute=None)}
    """
    if not isinstance(limits, Mapping):
        raise InvalidRequest(f"{where} must be a mapping of provider -> {{in_flight, "
                             f"per_minute}}, got {type(limits).__name__}", field="limits")
    out: dict[str, ProviderLimit] = {}
    for provider, spec in limits.items():
        if isinstance(spec, ProviderLimit):
            out[str(provider)] = spec
            continue
        if not isinstance(spec, Mapping) or set(spec) - {"in_flight", "per_minute"}:
            raise InvalidRequest(f"{where}: {provider}: expected a ProviderLimit or a mapping "
                                 f"with in_flight and/or per_minute, got {spec!r}",
                                 field=f"limits.{provider}")
        try:
            out[str(provider)] = ProviderLimit(spec.get("in_flight"), spec.get("per_minute"))
        except InvalidRequest as exc:
            raise InvalidRequest(f"{where}: {provider}: {exc}",
                                 field=f"limits.{provider}") from None
    return out


def load_limits(path: str | os.PathLike[str] | None = None) -> dict[str, ProviderLimit]:
    """Per-provider limits from a YAML file: ``{fal: {in_flight: 16, per_minute: 600}, …}``.

    ``path`` defaults to ``$MODELGLASS_LIMITS``, else ``<user config dir>/modelglass/limits.yaml``
    (platformdirs); no file means no per-provider limits.
    """
    import yaml

    if path is None:
        path = os.environ.get("MODELGLASS_LIMITS")
    if path is None:
        from platformdirs import user_config_dir

        path = Path(user_config_dir("modelglass")) / "limits.yaml"
        if not path.is_file():
            return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read the limits file {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}", field="limits") from None
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{path}: not valid YAML ({exc})", field="limits") from None
    return validate_limits(data, where=str(path))


# -- budget --------------------------------------------------------------------------------------
class Lease:
    """The budget one job's engine sees: the hold taken when the job was admitted becomes the
    engine's first reservation (so no other job can take that money between admission and
    the engine's reserve); later reservations (a pricier fallback) come from the batch budget.
    """

    def __init__(self, budget: Budget, hold: Reservation | None) -> None:
        self._budget, self._hold = budget, hold
        self.limit_usd = budget.limit_usd

    def reserve(self, amount: float | None, *, label: str = "") -> Reservation:
        hold, self._hold = self._hold, None
        if hold is not None:
            if amount is not None and amount <= hold.amount + 1e-12:
                return hold
            self._budget.release(hold)
        return self._budget.reserve(amount, label=label)

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        self._budget.settle(reservation, actual_usd)

    def release(self, reservation: Reservation) -> None:
        self._budget.release(reservation)

    def close(self) -> None:
        """Give back the hold if the engine never took it."""
        hold, self._hold = self._hold, None
        if hold is not None:
            self._budget.release(hold)

    def __getattr__(self, name: str) -> Any:  # spent, reserved, remaining, …
        return getattr(self._budget, name)


# -- scheduling ----------------------------------------------------------------------------------
class Scheduler:
    """Which job to start next, with no I/O: a global concurrency limit, per-provider limits,
    providers taken in turn, and budget admission.

    :meth:`next` returns a job to start (its estimate already held on the budget), or None and
    how many seconds until a rate limit frees a slot (None: wait for a job to finish).
    :meth:`finished` must be called when a started job ends.
    """

    def __init__(self, jobs: Iterable[Job], *, concurrency: int,
                 limits: Mapping[str, ProviderLimit] | None = None,
                 budget: Budget | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency < 1:
            raise InvalidRequest(f"concurrency must be at least 1, got {concurrency}",
                                 field="concurrency")
        self.concurrency = concurrency
        self.limits = dict(limits or {})
        self.budget = budget
        self.clock = clock
        self.queues: dict[str, collections.deque[Job]] = {}
        for job in jobs:
            self.queues.setdefault(job.provider, collections.deque()).append(job)
        self._order = list(self.queues)
        self._turn = 0
        self.running = 0
        self.in_flight: collections.Counter[str] = collections.Counter()
        self._starts: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        self.stopped: BudgetExceeded | None = None
        self.undone: list[Job] = []

    def add(self, job: Job) -> None:
        """Queue one more job (behind its provider's queue)."""
        if job.provider not in self.queues:
            self.queues[job.provider] = collections.deque()
            self._order.append(job.provider)
        self.queues[job.provider].append(job)

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def next(self) -> tuple[Job | None, float | None]:
        if self.running >= self.concurrency or self.stopped is not None:
            return None, None
        now = self.clock()
        soonest: float | None = None
        n = len(self._order)
        for k in range(n):
            provider = self._order[(self._turn + k) % n]
            queue = self.queues[provider]
            if not queue:
                continue
            limit = self.limits.get(provider)
            if limit is not None and limit.in_flight is not None \
                    and self.in_flight[provider] >= limit.in_flight:
                continue
            if limit is not None and limit.per_minute is not None:
                starts = self._starts[provider]
                while starts and starts[0] <= now - 60.0:
                    starts.popleft()
                if len(starts) >= limit.per_minute:
                    free_at = starts[0] + 60.0 - now
                    soonest = free_at if soonest is None else min(soonest, free_at)
                    continue
            job = queue[0]
            if not self._admit(job):
                return None, None
            queue.popleft()
            self._turn = (self._turn + k + 1) % n
            self.running += 1
            self.in_flight[provider] += 1
            self._starts[provider].append(now)
            return job, None
        return None, soonest

    def _admit(self, job: Job) -> bool:
        """Hold the job's estimate; when it does not fit, wait for jobs in flight, and when none
        is left, stop: the rest of the queue is undone."""
        if self.budget is None:
            return True
        try:
            job.hold = self.budget.reserve(job.estimate, label=f"job {job.id}")
            return True
        except BudgetExceeded as exc:
            if self.running == 0 or job.estimate is None:
                self.stopped = exc
                for queue in self.queues.values():
                    self.undone.extend(queue)
                    queue.clear()
            return False

    def finished(self, job: Job) -> None:
        self.running -= 1
        self.in_flight[job.provider] -= 1
