"""What fal and Replicate share: a job with an id, polled to its end, cancelled at its deadline.

:class:`QueuedProvider` holds the settings (per-request timeout, poll interval and its growth,
cancel time, poll backoff), the wires (one blocking, one per event loop), the cancel, and what a
failed poll leads to. Each subclass writes its submit / poll / fetch as :meth:`job` and its wire.

Backoff: a failed poll is retried *by id* within the job's deadline (the job is never submitted
again: that would bill twice) after the provider's Retry-After, else an exponential wait
(:func:`poll_backoff`); a wait that would pass the deadline cancels the job instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import GenerationTimeout, ModelglassError, ProviderError, RateLimited
from ..jobs._steps import Deadline, Wait, Wire
from ._errors import (
    is_httpx_error,
    outcome_unknown,
    transport_reason,
)
from ._keys import scrub
from ._transport import HTTPFailure, PerLoop
from .base import Provider

if TYPE_CHECKING:
    from ..jobs._steps import Step
    from ..plan import ProviderCall
    from .base import ProviderOutput

__all__ = ["QueuedProvider", "poll_backoff", "transient"]

log = logging.getLogger("modelglass")

W = TypeVar("W")


def transient(err: BaseException) -> bool:
    """Whether the provider's error says another try of the same request (a poll, a fetch by
    id) may succeed. Not the engine's :func:`~modelglass.jobs._retry.retryable`, which also
    asks whether a whole new call may be sent."""
    return bool(getattr(err, "retryable", False))


def poll_backoff(err: BaseException, failures: int, base_s: float,
                 deadline: Deadline) -> float | None:
    """How long to wait before polling again after a failed poll: the provider's Retry-After,
    else exponential from ``base_s`` (capped at 2 s). None when the wait would pass the deadline
    (waiting would only run the job out)."""
    wait = err.retry_after if isinstance(err, RateLimited) and err.retry_after else \
        min(base_s * 2 ** (failures - 1), 2.0)
    return None if wait >= deadline.remaining() else wait


class QueuedProvider(Provider, Generic[W]):
    """A provider whose jobs have an id: submitted once, polled, fetched, cancelled by id.

    ``request_timeout_s`` bounds each HTTP request; the job's ``timeout_s`` bounds the whole
    job. ``poll_interval_s`` is the first poll interval (it grows ×1.5 up to
    ``max_poll_interval_s``); ``cancel_timeout_s`` bounds the cancel; ``poll_retry_backoff_s``
    starts the backoff after a failed poll.
    """

    resumable = True
    #: How the provider is named in messages ("fal", "Replicate").
    brand: str = ""

    def __init__(self, api_key: str | None, *, request_timeout_s: float,
                 poll_interval_s: float | None, max_poll_interval_s: float,
                 cancel_timeout_s: float, poll_retry_backoff_s: float) -> None:
        self._explicit_key = api_key
        self.request_timeout_s = request_timeout_s
        self._poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.cancel_timeout_s = cancel_timeout_s
        self.poll_retry_backoff_s = poll_retry_backoff_s
        self._sync: W | None = None
        self._async: PerLoop[W] = PerLoop(lambda: self._make_wire(asynchronous=True))

    @property
    def poll_interval_s(self) -> float:
        """The first interval between polls."""
        return 0.5 if self._poll_interval_s is None else self._poll_interval_s

    # -- the wires --------------------------------------------------------------------------------
    def _make_wire(self, *, asynchronous: bool) -> W:
        raise NotImplementedError

    def _close_wire(self, wire: W) -> None:
        raise NotImplementedError

    async def _aclose_wire(self, wire: W) -> None:
        raise NotImplementedError

    def wire(self) -> W:
        """The blocking wire (built on first use)."""
        if self._sync is None:
            self._sync = self._make_wire(asynchronous=False)
        return self._sync

    def awire(self) -> W:
        """The awaiting wire of the running event loop."""
        return self._async.get()

    def close(self) -> None:
        if self._sync is not None:
            self._close_wire(self._sync)
            self._sync = None

    async def aclose(self) -> None:
        wire = self._async.pop_current()
        if wire is not None:
            await self._aclose_wire(wire)

    # -- the job ----------------------------------------------------------------------------------
    def job(self, call: ProviderCall, *, timeout_s: float, resume: str | None = None,
            on_submitted: Callable[[str], None] | None = None
            ) -> Generator[Step, Any, ProviderOutput]:
        deadline = Deadline(timeout_s, per_request_s=self.request_timeout_s)
        return self._job(call, deadline, resume=resume, on_submitted=on_submitted)

    def _job(self, call: ProviderCall, deadline: Deadline, *, resume: str | None,
             on_submitted: Callable[[str], None] | None) -> Generator[Step, Any, ProviderOutput]:
        raise NotImplementedError

    def _op(self, deadline: Deadline | None, name: str, *args: Any) -> Wire:
        """The step that calls ``name`` on this provider's wire within ``deadline``."""
        return Wire(self, name, args, deadline)

    def _reserve(self, deadline: Deadline) -> float:
        """Seconds kept back at the end of the job for its cancel: polling stops this early."""
        return min(self.cancel_timeout_s, 0.1 * deadline.seconds)

    def _cancel(self, target: Any, deadline: Deadline | None = None) -> Generator[Step, Any, bool]:
        """Ask the provider to cancel ``target``; True only when it answered. Within a job the
        cancel gets what is left of its deadline (at most ``cancel_timeout_s``)."""
        seconds = self.cancel_timeout_s if deadline is None else \
            max(0.05, min(self.cancel_timeout_s, deadline.remaining()))
        try:
            yield self._op(Deadline(seconds), "cancel", target)
        except Exception as exc:  # noqa: BLE001 - best effort
            log.info("%s: cancel of %s failed: %s", self.name,
                     getattr(target, "request_id", target), scrub(str(exc), self._secrets()))
            return False
        return True

    def _poll_again(self, err: BaseException, failures: int, deadline: Deadline, target: Any,
                    what: str, state: str, request_id: str) -> Generator[Step, Any, None]:
        """After a failed poll: wait, then return (poll again by id); or cancel and raise —
        at once when the error is final, or when waiting would pass the deadline."""
        if transient(err):
            wait = poll_backoff(err, failures + 1, self.poll_retry_backoff_s, deadline)
            if wait is not None and deadline.remaining() - wait > self._reserve(deadline):
                log.info("%s: poll of %s failed (%s); polling again by id", self.name, what, err)
                yield Wait(wait)
                return
            # Waiting as asked would pass the deadline: stop now, not at the deadline.
            cancelled = yield from self._cancel(target, deadline)
            raise self._ran_out(what, state, deadline, cancelled, request_id, err)
        yield from self._cancel(target, deadline)
        raise err

    def _ran_out(self, what: str, state: str, deadline: Deadline, cancelled: bool,
                 request_id: str, why: BaseException | None = None) -> ProviderError:
        """The error for a queued job given up at its deadline: a retryable timeout when the
        provider confirmed the cancel, else :class:`OutcomeUnknown` (it may still run and bill)."""
        because = f" ({why})" if why is not None else ""
        if cancelled:
            return GenerationTimeout(
                f"{what} was still {state} when its {deadline.seconds:g} s ran out{because}; it "
                f"was cancelled. Raise the job timeout, or pick a faster model.",
                provider=self.name, retryable=True)
        return outcome_unknown(
            self.name, what, f"it was still {state} when its {deadline.seconds:g} s ran out"
            f"{because}, and {self.brand} did not confirm the cancel, so it may still run",
            stage="poll", request_id=request_id, secrets=self._secrets())

    # -- errors -----------------------------------------------------------------------------------
    def _error(self, exc: BaseException, what: str) -> ModelglassError:
        """Map anything the client raised on ``what`` to a modelglass error (never by message
        text): error replies through :meth:`_http_error`, the client's own exceptions through
        :meth:`_client_error`, transport failures and the rest here."""
        secrets = self._secrets()
        if isinstance(exc, ModelglassError):
            return exc
        if isinstance(exc, HTTPFailure):
            if exc.response is None:
                return self._unreachable(what, exc.error or exc)
            return self._http_error(exc.status or 0, exc.headers, exc.body(), what)
        if isinstance(exc, json.JSONDecodeError):
            return self._wrong_shape(what, f"malformed JSON ({exc.msg} at char {exc.pos})",
                                     exc.doc[:200] if isinstance(exc.doc, str) else None)
        mapped = self._client_error(exc, what)
        if mapped is not None:
            return mapped
        if isinstance(exc, TimeoutError):
            return GenerationTimeout(f"{what} timed out ({scrub(str(exc), secrets)}).",
                                     provider=self.name, retryable=True)
        if is_httpx_error(exc):
            return self._unreachable(what, exc)
        return ProviderError(f"{self.name} client failed on {what}: "
                             f"{type(exc).__name__}: {scrub(str(exc), secrets)}",
                             provider=self.name, retryable=False)

    def _http_error(self, status: int, headers: Mapping[str, str], body: Any,
                    what: str) -> ModelglassError:
        raise NotImplementedError

    def _client_error(self, exc: BaseException, what: str) -> ModelglassError | None:
        """The error for an exception only this provider's client raises; None for others."""
        return None

    @staticmethod
    def _lost_reason(exc: BaseException, err: BaseException) -> str:
        """Why a create's answer was lost, for :class:`OutcomeUnknown`'s message."""
        if isinstance(err, GenerationTimeout):
            return "no answer in time"
        if isinstance(exc, HTTPFailure) or is_httpx_error(exc):
            return transport_reason(exc)
        return str(err)
