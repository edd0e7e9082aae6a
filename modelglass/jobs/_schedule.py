"""Which job of a batch starts next: the jobs, a pure scheduler (no I/O) and per-provider limits.

- :class:`Scheduler`: at most ``concurrency`` jobs in flight; per provider (the job's
  first-ranked offer's) at most ``in_flight`` jobs and ``per_minute`` starts; providers taken in
  turn, so a long queue for one provider does not starve the others; each job's estimate held on
  the budget when it is admitted, and when the next job could pass the limit, nothing more is
  started (the batch waits for jobs in flight, then leaves the rest undone).
- :func:`load_limits`: per-provider limits from a YAML config file.
- :class:`Job` and :func:`job_ids`: what the scheduler queues, each with a stable id.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import Budget, Reservation
from ..errors import BudgetExceeded, InvalidRequest
from ..request import ImageRequest
from ._events import Resume

__all__ = ["Job", "ProviderLimit", "Scheduler", "job_ids", "load_limits", "request_json",
           "validate_limits"]

Requests = Iterable[ImageRequest | Mapping[str, Any]]


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


# -- jobs ----------------------------------------------------------------------------------------
@dataclass
class Job:
    """One job the batch will run: its id, request, first-choice provider and estimate."""

    id: str
    index: int
    request: ImageRequest
    provider: str = "?"
    offer_key: str | None = None
    estimate: float | None = None
    resume: Resume | None = None
    cache_key: str | None = None
    call: Any = None  # the first-ranked ProviderCall (for the cache)
    decision: Any = None  # its RoutingDecision, for the engine: routed and planned once
    hold: Reservation | None = None
    routed: bool = False  # provider and estimate known (resumed jobs: from the journal)
    cooling_since: float | None = None  # when it first waited for a cooldown
    #: From the journal of an earlier run: the images its checks rejected (paid, on disk) and
    #: the tries it made, so a rerun retries only what ``max_check_retries`` has left.
    rejected_before: list[dict[str, Any]] = field(default_factory=list)
    tries_before: int = 0
    rejected_ids: set[str] = field(default_factory=set)  # request ids of those tries


def job_ids(requests: Requests) -> list[tuple[str, ImageRequest]]:
    """Each request with its id: the one it names, else a hash of the request (plus ``#k`` for
    its k-th repeat), so the same jobs file gets the same ids on every run."""
    out: list[tuple[str, ImageRequest]] = []
    seen: collections.Counter[str] = collections.Counter()
    given: set[str] = set()
    for i, item in enumerate(requests):
        job_id: str | None = None
        if isinstance(item, ImageRequest):
            request = item
        elif isinstance(item, Mapping):
            fields = dict(item)
            job_id = fields.pop("id", None)
            try:
                request = ImageRequest(**fields)
            except Exception as exc:  # noqa: BLE001 - InvalidRequest or pydantic's ValidationError
                raise InvalidRequest(f"request {i} ({job_id or 'no id'}): {exc}",
                                     field=getattr(exc, "field", None)) from None
        else:
            raise InvalidRequest(f"request {i}: expected an ImageRequest or a dict of its fields, "
                                 f"got {type(item).__name__}")
        if job_id is not None:
            job_id = str(job_id)
            if job_id in given:
                raise InvalidRequest(f"request {i}: id {job_id!r} is used twice; ids must be "
                                     f"unique within a batch", field="id")
            given.add(job_id)
        else:
            digest = hashlib.sha256(request_json(request).encode()).hexdigest()[:16]
            seen[digest] += 1
            job_id = digest if seen[digest] == 1 else f"{digest}#{seen[digest]}"
        out.append((job_id, request))
    return out


def request_json(request: ImageRequest) -> str:
    return json.dumps(request.model_dump(mode="json", exclude_defaults=True), sort_keys=True,
                      separators=(",", ":"), default=str)


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
