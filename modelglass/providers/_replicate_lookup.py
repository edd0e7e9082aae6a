"""Replicate's lost creates: the prediction a create made when its answer was lost.

A create whose answer never came (a dropped connection, a timeout after sending) may have made
a prediction, and billed it. Replicate lists recent predictions with their inputs, so instead of
creating another (and paying twice) the job finds its own: same model or version, created after
the create was sent, exactly the same input, not owned by another call of this provider. After
a crash a batch asks the same question (:meth:`PredictionLookup.find_created`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Generator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..jobs._drive import run
from ..jobs._steps import Deadline, Wait
from ._keys import scrub
from ._queued import QueuedProvider

if TYPE_CHECKING:
    from ..jobs._steps import Step
    from ..plan import ProviderCall

__all__ = ["PredictionLookup", "snapshot"]

log = logging.getLogger("modelglass")

W = TypeVar("W")


class PredictionLookup(QueuedProvider[W]):
    """A :class:`QueuedProvider` that can find the prediction a lost create made."""

    def __init__(self, api_key: str | None, **settings: Any) -> None:
        super().__init__(api_key, **settings)
        self._claimed: dict[str, None] = {}
        self._claimed_lock = threading.Lock()

    def _claim(self, pid: str) -> None:
        """Remember a prediction this provider owns, so a lost create never adopts it."""
        with self._claimed_lock:
            self._claimed[pid] = None
            while len(self._claimed) > 4096:
                self._claimed.pop(next(iter(self._claimed)))

    def _find_lost(self, call: ProviderCall, sent_at: float, deadline: Deadline
                   ) -> Generator[Step, Any, dict[str, Any] | None]:
        """The prediction a lost create made (see :meth:`_matching`), oldest first. Listed a
        few times, since a create that hung may show up late; None when it never does."""
        reserve = self._reserve(deadline)
        for attempt, wait in enumerate((0.0, 0.25, 0.5, 1.0)):
            if attempt:
                if deadline.remaining() - wait <= reserve:
                    break
                yield Wait(wait)
            # The lookup may run when the create's hang used up the deadline: it gets its own
            # short time, since finding (and cancelling) a billed job is worth a second or two.
            seconds = min(self.request_timeout_s, max(deadline.remaining(), self.cancel_timeout_s))
            matches = yield from self._matching(call, sent_at, seconds)
            if matches:
                # Oldest first: two identical lost creates adopt their predictions in order.
                return min(matches, key=lambda p: _timestamp(p.get("created_at")) or 0.0)
        return None

    def _matching(self, call: ProviderCall, since: float, seconds: float
                  ) -> Generator[Step, Any, list[dict[str, Any]]]:
        """The recent predictions a create of ``call`` sent at ``since`` (epoch seconds) may
        have made: same model (or version), created no earlier (30 s of clock skew allowed),
        exactly the same input, not owned by another call of this provider. Best effort: a
        listing or a prediction that cannot be read counts as no match."""
        model, _, version = call.offer.endpoint.partition(":")
        want = _canonical(call.payload)
        try:
            # Raw JSON, not the client's Prediction objects: one prediction in a state the
            # client does not know ("aborted") would make it refuse the whole page.
            recent = _results((yield self._op(Deadline(seconds), "recent")).json())
        except Exception as exc:  # noqa: BLE001 - the lookup is best effort
            log.info("replicate: listing predictions to find a lost create failed: %s",
                     scrub(str(exc), self._secrets()))
            return []
        matches = []
        for pred in recent:
            if not _may_be(pred, model, version, since, self._claimed, self._claimed_lock):
                continue
            if pred.get("input") is None:
                try:
                    pred = snapshot((yield self._op(Deadline(seconds), "get", str(pred["id"]))))
                except Exception as exc:  # noqa: BLE001 - the lookup is best effort
                    log.info("replicate: reading prediction %s failed: %s", pred.get("id"),
                             scrub(str(exc), self._secrets()))
                    continue
            if _canonical(pred.get("input")) == want:
                matches.append(pred)
        return matches

    def find_created(self, call: ProviderCall, *, since: float,
                     timeout_s: float = 10.0) -> str | None:
        """After a crash: the id of the prediction a create of ``call`` sent at or after
        ``since`` (epoch seconds) made — same model or version, exactly the same input, not
        owned by another call here, oldest first — or None when the listing shows none or
        cannot be read. A batch resumes that prediction instead of naming its job possibly
        charged."""
        self.wire()  # no token, no client: say so rather than "none found"
        matches = run(self._matching(call, since, timeout_s), None)
        if not matches:
            return None
        found = str(min(matches, key=lambda p: _timestamp(p.get("created_at")) or 0.0)["id"])
        self._claim(found)
        return found


def _may_be(pred: Mapping[str, Any], model: str, version: str, since: float,
            claimed: Mapping[str, None], lock: Any) -> bool:
    """Whether a listed prediction may be the one a create of ``model`` (or ``version``) sent at
    ``since`` made: right model, created no earlier (30 s of clock skew allowed), unclaimed."""
    with lock:
        if str(pred.get("id")) in claimed:
            return False
    if version and pred.get("version") != version:
        return False
    if not version and pred.get("model") not in (model, None):
        return False
    created = _timestamp(pred.get("created_at"))
    return not (created is not None and created < since - 30)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 ``created_at``; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)  # Python >= 3.11 reads a trailing Z
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _results(page: Any) -> list[dict[str, Any]]:
    """The prediction objects of a ``GET /v1/predictions`` page (anything else is skipped)."""
    results = page.get("results") if isinstance(page, Mapping) else None
    return [dict(p) for p in results if isinstance(p, Mapping)] if isinstance(results, list) \
        else []


def snapshot(pred: Any) -> dict[str, Any]:
    """A plain dict of a ``replicate`` Prediction (pydantic v1)."""
    return dict(pred.dict())
