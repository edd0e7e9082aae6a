"""The images an outcome check rejected, in a batch: paid for like the rest, so kept.

:class:`RejectedImages` is the part of :class:`~._batch.Batch` that saves a rejected try's
images under ``out`` and names them in the journal *before* the retry is sent (the engine's
``rejected`` event), lists them in the job's manifest line (``"rejected"``), and gives a rerun
the tries already made, so a crash neither loses a paid image nor buys an extra try.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._spill import keep_rejected, rejected_name, save_rejected

if TYPE_CHECKING:
    from ..result import ImageResult
    from ._events import JobEvent
    from ._journal import Journal
    from ._schedule import Job

__all__ = ["RejectedImages"]


class RejectedImages:
    """Rejected images for :class:`~._batch.Batch` (which provides the attributes below)."""

    out: Path | None
    journal: Journal | None
    check_options: dict[str, Any]
    _lock: threading.Lock
    _rejected: dict[str, list[dict[str, Any]]]

    def check_options_for(self, job: Job) -> dict[str, Any]:
        """The batch's check options for ``job``: the check retries an earlier run of the
        journal already made are not made again."""
        options = self.check_options
        if job.tries_before and options.get("on_fail", "keep") != "keep":
            # the earlier run's try number tries_before was rejected: this run's first try is
            # the one after it (resumed by its request id, or sent now), unless it fetches that
            # rejected try again (the run stopped before the next went out)
            made = job.tries_before - (job.resume is not None
                                       and job.resume.request_id in job.rejected_ids)
            left = int(options.get("max_check_retries", 1)) - made
            options = {**options, "max_check_retries": max(0, left)}
        return options

    def _keep_rejected(self, event: JobEvent) -> None:
        """A try a check rejected: its paid images saved under ``out`` and named in the journal
        before the next try is sent (a run that stops now loses none of them)."""
        entries = keep_rejected(self.out, self.journal, event.job_id, event.tries,
                                list(event.images), event.request_id)
        with self._lock:
            self._rejected.setdefault(event.job_id, []).extend(entries)

    def _returned(self, job: Job, result: ImageResult) -> None:
        """A try saved as rejected when its retry went out, and returned in the end (no try
        did better): saved as the job's image now, so its rejected copy goes."""
        returned = {img.sha256 for img in result.images}
        # a rejected image's file is named by its bytes, whoever saved it (this process, or a
        # Ray worker's relay): the disk says which returned images have a rejected copy
        copies = [c for c in (self.out / rejected_name(job.id, img) for img in result.images)
                  if c.exists()] if self.out is not None and self.check_options else []
        with self._lock:
            kept = self._rejected.get(job.id, [])
            if not copies and not any(e["sha256"] in returned
                                      for e in [*kept, *job.rejected_before]):
                return
            self._rejected[job.id] = [e for e in kept if e["sha256"] not in returned]
        job.rejected_before = [e for e in job.rejected_before if e["sha256"] not in returned]
        if self.journal is not None:
            self.journal.unreject(job.id, returned)
        for path in copies:
            path.unlink()

    def _all_rejected(self, job: Job, now: list[dict[str, Any]] | None = None
                      ) -> list[dict[str, Any]]:
        """Every image a check rejected for ``job``: in an earlier run of the journal, saved
        as its tries were rejected in this one, and on its result (``now``); once each."""
        with self._lock:
            kept = self._rejected.pop(job.id, [])
        out: dict[str, dict[str, Any]] = {}
        for entry in [*job.rejected_before, *kept, *(now or [])]:
            out[entry["sha256"]] = {**out.get(entry["sha256"], {}), **entry}
        return list(out.values())

    def _save_rejected(self, job: Job, result: ImageResult) -> list[tuple[Path, str]]:
        """The images a check rejected, paid for like the rest: saved under ``out`` too."""
        if self.out is None or not result.rejected:
            return []
        return save_rejected(self.out, job.id, result.rejected)
