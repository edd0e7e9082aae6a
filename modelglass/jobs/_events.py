"""What a job tells the outside world: one event per state transition.

A job moves pending → sending (a create with a request id to come is about to go out:
emitted before its first byte may leave) → submitted (provider request id known) → generated (result URLs or
bytes) → downloaded (sha256 of each image) → done, or to failed with a typed error.
"waiting" reports a retry, Retry-After or poll wait; "checked" reports a try's outcome checks
(``generate(check=...)``); both are progress only and are not persisted. "rejected" carries
the images of a try a check rejected, just before the next try is sent (a batch saves them).
A sink (a journal, a progress bar) receives the events synchronously and in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

JobState = Literal["pending", "sending", "submitted", "generated", "downloaded", "done",
                   "failed", "waiting", "checked", "rejected"]


@dataclass(frozen=True)
class JobEvent:
    """One transition of one job; `chunk` says which provider call of n (0-based)."""

    job_id: str
    state: JobState
    offer_key: str | None = None      # "model@provider"
    provider: str | None = None
    chunk: int = 0                    # which provider call of n (0-based)
    request_id: str | None = None     # submitted: fal request id / Replicate prediction id / None
    urls: tuple[str, ...] = field(default=(), repr=False)  # generated: result URLs (empty for
    #                                   inline bytes); signed URLs carry tokens, so not in a repr
    sha256: tuple[str, ...] = ()      # downloaded: one per image
    cost_usd: float | None = None     # what this step charged (settled), when known
    possibly_charged: bool = False    # the provider may have billed though the outcome is unknown
    wait_s: float | None = None       # waiting: how long, and why in `message`
    error: dict[str, Any] | None = None   # failed: {"type": "RateLimited", "message": ..., ...}
    message: str = ""
    at: float = field(default_factory=time.time)
    #: rejected: the paid images of the try a check rejected, sent before the next try goes out
    #: (so a runner can keep them on disk should the run stop), and how many tries the job has
    #: made so far.
    images: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    tries: int = 0


EventSink = Callable[[JobEvent], None]


@dataclass(frozen=True)
class Resume:
    """What a journal knows about a job submitted before a crash: poll it, never re-submit it."""

    offer_key: str
    request_id: str
    chunk: int = 0
