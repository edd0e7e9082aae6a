"""How a batch's jobs ended: one :class:`JobOutcome` per job, and the :class:`BatchReport` of
them all (in input order, with what the batch spent)."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..request import ImageRequest
from ._reconcile import error_dict as _error_dict

if TYPE_CHECKING:
    from ..budget import Budget
    from ..errors import ModelglassError
    from ..result import ImageResult

__all__ = ["BatchReport", "JobOutcome", "Status"]

Status = Literal["done", "cached", "skipped", "failed", "possibly_charged", "undone",
                 "cancelled", "cooling"]  # "cooling": parked for a cooldown, never reported


@dataclass
class JobOutcome:
    """How one job of a batch ended.

    ``status``: ``done`` (ran now), ``cached`` (served from the result cache, no cost),
    ``skipped`` (done in an earlier run of the journal; files re-verified), ``failed``,
    ``possibly_charged`` (sent before a crash with no result recorded, or cancelled while a
    request was out; not re-sent), ``undone`` (never submitted: the budget ran out first),
    ``cancelled`` (the batch was stopped before the job sent anything: it runs on a rerun).
    ``result`` is set for the first three.
    """

    id: str
    index: int
    request: ImageRequest
    status: Status
    result: ImageResult | None = None
    error: ModelglassError | None = None
    files: list[Path] = field(default_factory=list)
    cost_usd: float | None = None
    entry: dict[str, Any] | None = None
    file_sha256: list[str] = field(default_factory=list)
    resumed: bool = False
    """Whether the job was resumed by its provider request id after an earlier run stopped."""
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """The paid images of the tries an outcome check rejected (``ImageResult.rejected``): each
    one's ``sha256``, ``seed``, ``offer`` and, with ``out=``, its ``file`` and ``file_sha256``."""

    @property
    def ok(self) -> bool:
        """Whether the job has its images."""
        return self.status in ("done", "cached", "skipped")

    def manifest(self) -> dict[str, Any]:
        """The job's line in the batch manifest: id, model, provider, cost, seed, sha256, fates,
        error (and status, files)."""
        known = [*(self.entry or {}).get("rejected", []), *self.rejected]
        rejected = {"rejected": list({r["sha256"]: r for r in known}.values())} if known else {}
        if self.entry is not None and self.result is None:
            return {**self.entry, "status": self.status, **rejected}
        r = self.result
        checks = {"checks": [c.to_dict() for c in r.checks]} if r is not None and r.checks else {}
        return {
            "id": self.id, "status": self.status,
            "model": r.model if r else None, "provider": r.provider if r else None,
            "offer": (r.plan.offer.key if r and r.plan is not None
                      else r.extra.get("offer") if r else None),
            "cost_usd": self.cost_usd,
            "seed": [i.seed for i in r.images] if r else None,
            "sha256": [i.sha256 for i in r.images] if r else [],
            "files": [str(f) for f in self.files],
            "file_sha256": list(self.file_sha256),
            "fates": [f.to_dict() for f in r.fates] if r else [],
            "simulated": r.simulated if r else False,
            "resumed": self.resumed,
            "error": _error_dict(self.error),
            **checks,  # outcome checks, when the job ran any (in the journal's entry too)
            **rejected,
            **({"adopted": True} if self.entry is not None and self.entry.get("adopted") else {}),
        }


class BatchReport(Sequence[JobOutcome]):
    """Every job's :class:`JobOutcome`, in input order, and what the batch spent.

    >>> report = client.generate_many(requests, budget=mg.Budget(5.0))     # doctest: +SKIP
    >>> [o.result.images[0] for o in report if o.ok]                       # doctest: +SKIP
    >>> report.undone                                                      # doctest: +SKIP
    """

    def __init__(self, outcomes: list[JobOutcome], budget: Budget | None, elapsed_s: float) -> None:
        self.outcomes = sorted(outcomes, key=lambda o: o.index)
        self.budget = budget
        self.elapsed_s = elapsed_s
        self.engine: dict[str, Any] = {"engine": "local"}
        """Which engine ran the batch, and what it reports (Ray: its local workers)."""
        self.stopped: dict[str, list[str]] | None = None
        """After Ctrl-C: the ids of the jobs in flight that were ``cancelled``, those of them
        ``possibly_charged`` (a request was out), those ``still_running`` when the wait for the
        cancels ended, and every job left ``pending`` for the next run."""

    def __getitem__(self, i: Any) -> Any:
        return self.outcomes[i]

    def __len__(self) -> int:
        return len(self.outcomes)

    def __repr__(self) -> str:
        return f"BatchReport({self.counts()}, spent=${self.spent_usd:.4f})"

    @property
    def results(self) -> list[ImageResult | None]:
        """Each job's result in input order (None where it has none)."""
        return [o.result for o in self.outcomes]

    @property
    def spent_usd(self) -> float:
        """What the batch's jobs cost (this run's settled costs, plus earlier runs' journal)."""
        return self.budget.spent if self.budget is not None else sum(
            o.cost_usd or 0.0 for o in self.outcomes if o.status == "done")

    @property
    def undone(self) -> list[str]:
        """Ids of the jobs never submitted because the budget ran out."""
        return [o.id for o in self.outcomes if o.status == "undone"]

    def counts(self) -> dict[str, int]:
        """How many jobs ended in each status."""
        return dict(collections.Counter(o.status for o in self.outcomes))

    def summary(self) -> dict[str, Any]:
        """A JSON view: counts, spend, budget, undone and failed job ids, elapsed time."""
        return {"jobs": len(self), "counts": self.counts(), "spent_usd": round(self.spent_usd, 6),
                "budget_usd": self.budget.limit_usd if self.budget is not None else None,
                "undone": self.undone,
                "failed": [o.id for o in self.outcomes if o.status == "failed"],
                "possibly_charged": [o.id for o in self.outcomes
                                     if o.status == "possibly_charged"],
                "elapsed_s": round(self.elapsed_s, 3),
                **({"stopped": self.stopped} if self.stopped is not None else {})}

