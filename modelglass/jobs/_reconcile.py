"""What the journal says about each job of a rerun: skip it, resume it, adopt its files, run
it again, or name it as possibly charged (see :mod:`._journal` for the states).

:class:`JournalReconcile` is the part of :class:`~._batch.Batch` that reads an earlier run's
journal before anything is sent: a ``done`` job whose files check out is skipped; one whose
images are already on disk is adopted (:mod:`._adopt`); one with a provider request id is
resumed by it; one that reached ``sending`` is looked up where the provider can list its jobs
(Replicate); one that never reached ``sending`` runs again; the rest may have been charged and
are named, not re-sent. It also refuses a journal of the other mode (simulated or real).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import JournalError, ModelglassError, OutcomeUnknown
from ._adopt import safe_name
from ._events import Resume
from ._spill import spill

if TYPE_CHECKING:
    from ..result import ImageResult
    from ._journal import Journal, JournalJob
    from ._report import JobOutcome, Status
    from ._schedule import Job

log = logging.getLogger("modelglass")

__all__ = ["JournalReconcile", "error_dict", "error_from_dict", "result_from_files"]


class JournalReconcile:
    """Reading an earlier run's journal for :class:`~._batch.Batch` (which provides the
    attributes below and :meth:`_ended`)."""

    journal: Journal | None
    simulated: bool | None
    out: Path | None
    client: Any
    allow_double_payment: bool
    retry_failed: bool
    _resume_ok: bool
    _events_ok: bool

    def _ended(self, job: Job, status: Status, **fields: Any) -> JobOutcome:
        raise NotImplementedError

    def _check_mode(self) -> None:
        """A real run refuses a journal a simulated run wrote (its placeholder images would
        stand as the deliverable), and the reverse; the first run records which it was."""
        assert self.journal is not None
        if self.simulated is None:
            return
        recorded = self.journal.meta("simulated")
        if recorded is not None and bool(recorded) != self.simulated and not any(
                j.state not in ("pending", "failed") or j.possibly_charged or j.cost
                for j in self.journal.jobs()):
            recorded = None  # nothing was made or paid for under the other mode yet
        if recorded is not None and bool(recorded) != self.simulated:
            path = self.journal.path
            if recorded:
                what = (f"the journal {path} was written by a simulated run (--simulate): its "
                        f"images are placeholders. A real run must not adopt them: use a new "
                        f"--journal (and --out) for the real run, or run with --simulate")
            else:
                what = (f"the journal {path} belongs to a real run (its jobs were paid for); a "
                        f"simulated run must not mix placeholders into it: give --simulate its "
                        f"own --journal, or drop --simulate")
            raise JournalError(what + ".", path=str(path))
        if recorded is None:
            self.journal.set_meta("simulated", bool(self.simulated))

    def _from_journal(self, job: Job, record: JournalJob) -> bool:
        """Whether ``job`` still has to run, given what the journal says; sets ``job.resume``."""
        assert self.journal is not None
        state = record.state
        if state == "done":
            problems = record.files_ok()
            if not problems:
                self._ended(job, "skipped", result=result_from_files(record), cost_usd=record.cost,
                            files=[Path(p) for p, _ in record.files], entry=record.entry,
                            rejected=list(record.rejected))
                return False
            log.warning("job %s: %s", job.id, "; ".join(problems))
            if not self.allow_double_payment:
                err = OutcomeUnknown(
                    f"job {job.id} was paid for (${record.cost or 0:.4f}) but its files changed "
                    f"on disk ({'; '.join(problems)}); not sent again. Restore the files, or pass "
                    f"allow_double_payment (--allow-double-payment) to pay for it again.")
                self._ended(job, "failed", error=err,
                                        cost_usd=record.cost, entry=record.entry)
                return False
            self.journal.reset(job.id, carry=record.cost or 0.0)
            return True
        if state == "failed":
            if (self.retry_failed and not record.possibly_charged) or (
                    record.possibly_charged and self.allow_double_payment):
                # What the earlier try may have cost stays counted against the budget.
                carry = record.cost if record.cost is not None else (
                    record.estimate or 0.0) if record.possibly_charged else 0.0
                self.journal.reset(job.id, carry=carry)
                return True
            status: Status = "possibly_charged" if record.possibly_charged else "failed"
            self._ended(job, status,
                                    error=error_from_dict(record.error),
                                    cost_usd=record.cost, entry=record.entry,
                                    rejected=list(record.rejected))
            return False
        if state == "pending":
            return True
        if self._adopted(job, record):
            return False
        call = record.resumable_call() or record.refetchable_call()
        if call is not None and self._resume_ok and not record.possibly_charged:
            job.resume = Resume(offer_key=call.offer_key, request_id=call.request_id or "",
                                chunk=call.chunk)
            job.routed = True
            job.offer_key = call.offer_key
            job.provider = call.offer_key.rsplit("@", 1)[-1]
            job.estimate = record.estimate
            return True
        if state == "started" and not record.calls and not record.possibly_charged \
                and (self.journal.meta("marks_sends") or not self._announces_sends(
                    record.offer_key)):
            # The engine says "sending" before a create's first byte may leave (and
            # "submitted" before a plain call): neither came, so nothing was sent.
            self.journal.reset(job.id)
            return True
        if state == "sending" and not record.calls and not record.possibly_charged \
                and self._resume_ok and (found := self._look_up(job, record)) is not None:
            job.resume = Resume(offer_key=found[0], request_id=found[1], chunk=0)
            job.routed, job.offer_key = True, found[0]
            job.provider, job.estimate = found[0].rsplit("@", 1)[-1], record.estimate
            log.info("job %s: its create's answer was lost in the crash; found it as %s on "
                     "%s, resumed", job.id, found[1], job.provider)
            return True
        # Started (or submitted to a provider without resumable jobs) and no result recorded:
        # the provider may have billed it.
        if self.allow_double_payment:
            self.journal.reset(job.id, carry=record.estimate or 0.0)
            return True
        where = record.offer_key or "its first-ranked offer"
        err = OutcomeUnknown(
            f"job {job.id} was sent to {where} before the previous run stopped, and no result or "
            f"resumable request id was recorded: it may have been charged (up to "
            f"${record.estimate or 0:.4f}), so it was not sent again. Check the provider's "
            f"dashboard; pass allow_double_payment (--allow-double-payment) to send it anyway.",
            request_id=None)
        self.journal.failed(job.id, error=error_dict(err) or {}, possibly_charged=True)
        self._ended(job, "possibly_charged", error=err, rejected=list(record.rejected))
        return False

    def _adopted(self, job: Job, record: JournalJob) -> bool:
        """A job whose images were written before the run stopped (the journal has their
        sha256, the files on disk carry the same): done, nothing is sent (see ._adopt)."""
        from ._adopt import adopt

        if self.out is None or self.journal is None:
            return False
        got = adopt(record, self.out, safe_name(job.id))
        if got is None:
            return False
        self.journal.done(job.id, cost=got.cost, entry=got.entry, files=got.files)
        record = self.journal.get(job.id) or record
        self._ended(job, "skipped",
                                result=result_from_files(record), cost_usd=got.cost,
                                files=[Path(p) for p, _ in got.files], entry=got.entry,
                                file_sha256=[s for _, s in got.files], resumed=True,
                                rejected=list(record.rejected))
        log.info("job %s: its images were already on disk with the journal's sha256; adopted",
                 job.id)
        return True

    def _look_up(self, job: Job, record: JournalJob) -> tuple[str, str] | None:
        """Ask the provider whether a create the crash cut short made a job (Replicate lists
        its recent predictions: ``find_created``); (offer key, request id) when it did."""
        key = record.offer_key
        if not key or "@" not in key:
            return None
        try:
            finder = getattr(self.client.provider(key.rsplit("@", 1)[1]), "find_created", None)
            if finder is None:
                return None
            call = next((c.call for c in self.client.route(job.request).ranked if c.key == key),
                        None)
            rid = finder(call, since=record.updated) if call is not None else None
        except Exception as exc:  # noqa: BLE001 - best effort: unknown stays possibly charged
            log.info("job %s: looking its create up failed: %s", job.id, exc)
            return None
        return (key, str(rid)) if rid else None

    def _announces_sends(self, offer_key: str | None) -> bool:
        """False when the offer's provider runs plain calls, for which the engine emits
        ``submitted`` *before* sending; True (a create may be out with no event yet) for
        providers with resumable jobs, and whenever that cannot be told."""
        if not offer_key or "@" not in offer_key or not self._events_ok:
            return True
        try:
            return self.client.provider(offer_key.rsplit("@", 1)[1]).resumable
        except Exception:  # noqa: BLE001 - unknown: assume a create may be out
            return True


def error_dict(exc: BaseException | None) -> dict[str, Any] | None:
    """An error as the journal and the manifest keep it: type, first line, and the money
    facts it carries (request id, status, cost, URL without its query)."""
    if exc is None:
        return None
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc).splitlines()[0][:500]}
    for attr in ("request_id", "status", "retry_after", "estimate_usd", "cost_usd", "url"):
        value = getattr(exc, attr, None)
        if value is not None:
            out[attr] = value
    return out


def error_from_dict(data: dict[str, Any] | None,
                     origin: str = "from the journal") -> ModelglassError:
    from .. import errors

    data = data or {}
    cls = getattr(errors, str(data.get("type", "")), None)
    message = f"({origin}) {data.get('message', 'failed')}"
    if isinstance(cls, type) and issubclass(cls, ModelglassError):
        try:
            return cls(message)
        except TypeError:
            pass
    return ModelglassError(message)


def result_from_files(record: JournalJob) -> ImageResult | None:
    """An :class:`ImageResult` rebuilt from a done job's saved files and manifest entry."""
    from ..checks import CheckResult
    from ..result import Fate, FateKind, GeneratedImage, ImageResult

    entry = record.entry or {}
    images = []
    seeds = entry.get("seed") or []
    for i, (path, _sha) in enumerate(record.files):
        data = Path(path).read_bytes()
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
        images.append(GeneratedImage(data=data, mime="image/png", width=width, height=height,
                                     seed=seeds[i] if i < len(seeds) else None, index=i,
                                     simulated=bool(entry.get("simulated"))))
    fates = [Fate(f["control"], FateKind(f["kind"]), f.get("requested"), f.get("applied"),
                  f.get("reason", ""), f.get("delta")) for f in entry.get("fates", [])]
    result = ImageResult(images=images, model=entry.get("model") or "?",
                         provider=entry.get("provider") or "?", cost_usd=record.cost,
                         cost_is_estimate=False, latency_s=0.0, fates=fates,
                         simulated=bool(entry.get("simulated")),
                         extra={"from_journal": True, "job_id": record.id},
                         checks=[CheckResult.from_dict(c) for c in entry.get("checks", [])])
    return spill(result, [Path(p) for p, _ in record.files])
