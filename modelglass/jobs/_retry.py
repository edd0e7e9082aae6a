"""What a failure leads to: another try of the same call, the next offer, or the end of the job.

Pure functions of the error and the job's clock; the engine asks them, the drivers never do.

- **retry** (same offer, same chunk): only :class:`~modelglass.errors.RateLimited` and
  :class:`~modelglass.errors.ProviderError` with ``retryable=True`` — the providers set that only
  where no job was created. A :class:`~modelglass.errors.GenerationTimeout` is never retried on
  the same offer (the job was accepted, or the request sent: a retry could bill twice, and would
  likely be as slow), and neither is anything ``possibly_charged``.
- **wait**: ``Retry-After`` capped at ``retry_after_cap_s``, else tenacity's exponential backoff
  from ``retry_backoff_s`` plus jitter (its ``wait_*`` and ``stop_*`` strategies are pure
  functions of the try number); a wait that would pass the job's deadline ends the retries.
- **fallback** (next ranked offer): on a provider failure, exhausted retries, a timeout or a failed
  download. Never on :class:`~modelglass.errors.InvalidRequest`,
  :class:`~modelglass.errors.ContentRejected` or :class:`~modelglass.errors.BudgetExceeded`, and
  after a possibly charged failure only with ``allow_double_payment=True``.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    ContentRejected,
    GenerationTimeout,
    InvalidRequest,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)

__all__ = ["RetryPolicy", "falls_back", "possibly_charged", "retry_after_of", "retryable"]


def retryable(exc: BaseException) -> bool:
    """Whether the same provider call may be tried again."""
    return (isinstance(exc, ProviderError) and exc.retryable
            and not possibly_charged(exc)
            and not isinstance(exc, (GenerationTimeout, AllAttemptsFailed)))


def possibly_charged(exc: BaseException) -> bool:
    """Whether the provider may have billed the call that raised ``exc`` (outcome unknown)."""
    return bool(getattr(exc, "possibly_charged", False))


def falls_back(exc: BaseException, *, allow_double_payment: bool) -> bool:
    """Whether the next ranked offer may be tried after ``exc`` ended this one."""
    if isinstance(exc, (InvalidRequest, BudgetExceeded, ContentRejected)):
        return False
    if possibly_charged(exc) and not allow_double_payment:
        return False
    return isinstance(exc, (ProviderError, ProviderUnavailable))


def retry_after_of(exc: BaseException) -> float | None:
    """The wait the provider asked for, in seconds, when it said."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None


class _State:
    """The one field of tenacity's ``RetryCallState`` its wait/stop strategies read."""

    __slots__ = ("attempt_number",)

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


class RetryPolicy:
    """How many tries a provider call gets and how long to wait between them.

    ``max_retries`` counts retries per provider call; ``retry_backoff_s`` starts the exponential
    backoff; ``retry_after_cap_s`` caps both it and a provider's ``Retry-After``. Built once per
    client; :meth:`wait` is a pure function of the failed try.

    >>> RetryPolicy(max_retries=2, retry_backoff_s=0.0, retry_after_cap_s=5).wait(1, RateLimited(
    ...     "429", retry_after=9.0), remaining_s=60)
    5.0
    """

    def __init__(self, *, max_retries: int, retry_backoff_s: float, retry_after_cap_s: float) -> None:
        from tenacity import stop_after_attempt, wait_exponential, wait_random

        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.retry_after_cap_s = retry_after_cap_s
        self._stop = stop_after_attempt(max_retries + 1)
        self._backoff = (wait_exponential(multiplier=retry_backoff_s, exp_base=2,
                                          max=retry_after_cap_s)
                         + wait_random(0, retry_backoff_s))

    def wait(self, tries: int, exc: BaseException, *, remaining_s: float,
             slack_s: float = 0.05) -> float | None:
        """Seconds to wait before try ``tries + 1`` after ``exc`` ended try ``tries``; None when
        there is no next try (not retryable, retries used up, or the wait passes the deadline)."""
        if not retryable(exc):
            return None
        state: Any = _State(tries)
        if self._stop(state):
            return None
        after = retry_after_of(exc) if isinstance(exc, RateLimited) else None
        seconds = (min(after, self.retry_after_cap_s) if after is not None
                   else min(self.retry_after_cap_s, float(self._backoff(state))))
        if seconds >= remaining_s - slack_s:
            return None
        return float(seconds)
