"""Pure helpers shared by the hosted providers (openai, fal, replicate).

Nothing here imports an official client. What lives here:

- keys: :func:`resolve_key` (argument, then environment) and :func:`scrub` (no key value ever
  reaches a message, a log line or a repr);
- errors: :func:`excerpt`, :func:`retry_after_from`, :func:`http_error` (status → modelglass
  error with a what-to-do message);
- payload pieces: :func:`wire_name`, :func:`format_for_offer`, :func:`mime_for_format`,
  :func:`ratio_for`, :func:`merge_options` (the payload core that uses them, ``build_fields``,
  is in ``_fields.py``);
- data URIs: :func:`decode_data_uri`;
- time: :class:`Deadline` and the per-job deadline that :func:`escalating_transport` applies to
  every HTTP request a client makes;
- the sans-I/O job runner: a provider writes its queue/poll logic once as a generator that
  yields :class:`Op` / :class:`Sleep`; :func:`drive` and :func:`adrive` execute it with blocking
  or awaiting I/O. The sync and async twins therefore share every decision.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import email.utils
import functools
import html
import json
import math
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import (
    ContentRejected,
    GenerationTimeout,
    InvalidRequest,
    ModelglassError,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
)

if TYPE_CHECKING:
    from ..catalog import OfferView

__all__ = [
    "Deadline",
    "HTTPFailure",
    "Op",
    "PerLoop",
    "Sleep",
    "adrive",
    "deadline_scope",
    "decode_data_uri",
    "detach",
    "drive",
    "escalating_transport",
    "excerpt",
    "format_for_offer",
    "http_error",
    "merge_options",
    "mime_for_format",
    "never_sent",
    "outcome_unknown",
    "ratio_for",
    "resolve_key",
    "retry_after_from",
    "retryable",
    "scrub",
    "transport_reason",
    "wire_name",
]

T = TypeVar("T")

# -- keys -----------------------------------------------------------------------------------------


def resolve_key(explicit: str | None, env_keys: tuple[str, ...]) -> str | None:
    """The key given as an argument, else the first of ``env_keys`` that is set (non-empty)."""
    if explicit:
        return explicit
    for name in env_keys:
        value = os.environ.get(name)
        if value:
            return value
    return None


def scrub(text: str, secrets: tuple[str | None, ...]) -> str:
    """``text`` with every secret (and each ``:``-separated half of one) replaced by ``***``."""
    for secret in secrets:
        if not secret:
            continue
        parts = {secret, *(p for p in secret.split(":") if len(p) >= 8)}
        for part in sorted(parts, key=len, reverse=True):
            text = text.replace(part, "***")
    return text


# -- errors ---------------------------------------------------------------------------------------

_TAG_RE = re.compile(r"<[^>]+>")
_WS_RE = re.compile(r"\s+")


def excerpt(body: Any, secrets: tuple[str | None, ...] = (), limit: int = 300) -> str:
    """A short, single-line, key-free excerpt of a reply body (JSON, text or HTML)."""
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        try:
            body = json.dumps(body, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            body = repr(body)
    if "<" in body and ">" in body and re.search(r"<\s*(html|body|head|title|h1)\b", body, re.IGNORECASE):
        body = html.unescape(_TAG_RE.sub(" ", body))
    text = _WS_RE.sub(" ", body).strip()
    text = scrub(text, secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def looks_like_html(body: Any, content_type: str | None = None) -> bool:
    """True for gateway pages: an HTML content type, or a body that opens with markup."""
    if content_type and "html" in content_type.lower():
        return True
    return isinstance(body, str) and body.lstrip()[:15].lower().startswith(("<html", "<!doctype"))


def retry_after_from(headers: Mapping[str, str] | None, body: Any = None) -> float | None:
    """Seconds to wait before retrying, from ``retry-after-ms`` / ``Retry-After`` (seconds or an
    HTTP date) or a JSON body's ``retry_after`` (Replicate). None when the provider did not say."""
    h = {k.lower(): v for k, v in (headers or {}).items()}
    raw_ms = h.get("retry-after-ms")
    if raw_ms:
        try:
            ms = float(raw_ms)
            if math.isfinite(ms) and ms >= 0:
                return ms / 1000
        except ValueError:
            pass
    raw = h.get("retry-after")
    if raw:
        try:
            secs = float(raw)
            if math.isfinite(secs) and secs >= 0:
                return secs
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    if isinstance(body, Mapping):
        value = body.get("retry_after")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def http_error(provider: str, status: int, *, headers: Mapping[str, str] | None = None,
               body: Any = None, key_env: str, what: str, secrets: tuple[str | None, ...] = (),
               detail: str | None = None, retryable: bool | None = None) -> ProviderError:
    """The modelglass error for an HTTP error reply, with what to do next.

    ``what`` names the thing called (``"fal endpoint fal-ai/flux/dev"``); ``detail`` overrides
    the excerpt of ``body``. Content refusals are provider-specific and decided by the caller
    before this. ``retryable`` overrides the status-based decision (e.g. ``x-should-retry``).
    """
    text = detail if detail is not None else excerpt(body, secrets)
    html_page = looks_like_html(body, (headers or {}).get("content-type")
                                if headers is not None else None)
    if html_page:
        text = f"gateway page: {excerpt(body, secrets, 120)}"
    short = excerpt(body, secrets)
    suffix = f": {text}" if text else ""
    if status == 429:
        after = retry_after_from(headers, body)
        wait = f"; it asked to wait {after:g} s" if after is not None else ""
        return RateLimited(f"{provider} rate limit (HTTP 429) on {what}{wait}{suffix}. "
                           f"modelglass retries after the delay; lower concurrency if it persists.",
                           retry_after=after, provider=provider, status=429, body=short,
                           retryable=True if retryable is None else retryable)
    if status >= 500 or status in (408, 409):
        return ProviderError(f"{provider} server error (HTTP {status}) on {what}{suffix}. "
                             f"Transient; retrying may help.", provider=provider, status=status,
                             body=short, retryable=True if retryable is None else retryable)
    if status == 401:
        msg = (f"{provider} refused the key (HTTP 401) on {what}{suffix}. "
               f"Check {key_env}: it is missing, mistyped or revoked.")
    elif status == 403:
        msg = (f"{provider} denied access (HTTP 403) on {what}{suffix}. "
               f"The key in {key_env} lacks access to it (billing, organisation or model access).")
    elif status == 404:
        msg = (f"{provider} does not know {what} (HTTP 404){suffix}. The model may be retired or "
               f"renamed: check its lifecycle in the catalog, or pick another model.")
    elif status in (400, 422):
        msg = (f"{provider} rejected the request (HTTP {status}) on {what}{suffix}. "
               f"A field is out of range or not accepted; `client.plan(request)` shows the payload.")
    else:
        msg = f"{provider} answered HTTP {status} on {what}{suffix}."
    return ProviderError(msg, provider=provider, status=status, body=short,
                         retryable=False if retryable is None else retryable)


def wrong_shape(provider: str, what: str, problem: str, body: Any = None,
                secrets: tuple[str | None, ...] = ()) -> ProviderError:
    """A reply that parsed but is not what the API documents (not retryable: it would repeat)."""
    tail = f" Reply: {excerpt(body, secrets, 200)}" if body is not None else ""
    return ProviderError(f"{provider} answered {what} with a reply modelglass cannot use: "
                         f"{problem}.{tail} This is a provider or proxy fault; report it if it "
                         f"persists.", provider=provider, body=excerpt(body, secrets),
                         retryable=False)


def connection_error(provider: str, what: str, exc: BaseException,
                     secrets: tuple[str | None, ...] = ()) -> ProviderError:
    """A connection failure or timeout below HTTP (retryable)."""
    reason = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if _is_timeout(exc):
        return GenerationTimeout(f"{provider} did not answer {what} in time ({reason}).",
                                 provider=provider, retryable=True)
    return ProviderError(f"could not reach {provider} for {what} ({reason}). Check the network "
                         f"or the provider's status page; retrying may help.", provider=provider,
                         retryable=True)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def never_sent(exc: BaseException) -> bool:
    """True when a transport failure certainly happened before the request reached the server
    (no connection, or no free connection in the pool), so sending it again cannot bill twice.

    Anything else — a read error, a dropped or reset connection, a read timeout, a reply cut
    short — may have come after the server took the request. The chain (``error``,
    ``__cause__``, ``__context__``) is walked down to the transport's own exception, matched by
    class name because the clients vendor their own copies of httpx (openai: ``httpx2``).
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        name = type(cur).__name__
        if name in _NOT_SENT or isinstance(cur, ConnectionRefusedError):
            return True
        if name in _MAYBE_SENT:
            return False
        cur = getattr(cur, "error", None) or cur.__cause__ or cur.__context__
    return False


_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})
_MAYBE_SENT = frozenset({"ReadError", "ReadTimeout", "WriteError", "WriteTimeout",
                         "RemoteProtocolError", "LocalProtocolError", "ProtocolError",
                         "CloseError", "NetworkError", "TimeoutException"})


def transport_reason(exc: BaseException) -> str:
    """``Type: message`` of the transport failure under ``exc`` (an :class:`HTTPFailure`'s
    error, else ``exc``): what happened, without a what-to-do that would not apply."""
    cause = getattr(exc, "error", None) or exc
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def outcome_unknown(provider: str, what: str, reason: str, *, request_id: str | None = None,
                    stage: str = "create", secrets: tuple[str | None, ...] = (),
                    cancelled: bool = False) -> OutcomeUnknown:
    """The error for a create that may have run: say so, and say what to do."""
    rid = (f" Its request id is {request_id}"
           + ("; it was cancelled." if cancelled else "; look it up in the provider's dashboard.")
           if request_id else " The provider did not say its request id.")
    return OutcomeUnknown(
        f"{provider} may have run {what}, but its answer was lost ({scrub(reason, secrets)}). "
        f"It may have been billed, so modelglass did not send it again.{rid} The budget keeps "
        f"its estimate. To try another offer anyway (and maybe pay twice), pass "
        f"allow_double_payment=True.", provider=provider, request_id=request_id, stage=stage)


def detach(err: BaseException) -> BaseException:
    """``err`` without its ``__cause__`` / ``__context__``: the client exception it replaced
    holds the HTTP request (with the key in its Authorization header) and the unscrubbed reply,
    and must not travel with a modelglass error."""
    err.__cause__ = None
    err.__context__ = None
    err.__suppress_context__ = True
    return err


# -- payload pieces -------------------------------------------------------------------------------

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp",
         "gif": "image/gif", "svg": "image/svg+xml"}


def mime_for_format(fmt: str | None) -> str | None:
    """``"jpg"`` → ``"image/jpeg"``; None for an unknown format."""
    return _MIME.get((fmt or "").lower())


def format_for_offer(wanted: str, allowed: list[str]) -> str:
    """The offer's spelling of ``wanted`` (``jpeg`` ↔ ``jpg``), else PNG, else the first allowed."""
    wanted = wanted.lower()
    aliases = {"jpeg": ("jpeg", "jpg"), "jpg": ("jpg", "jpeg")}.get(wanted, (wanted,))
    for a in aliases:
        if a in allowed:
            return a
    return "png" if "png" in allowed else allowed[0]


def wire_name(offer: OfferView, control: str, default: str | None) -> str | None:
    """The offer's field name for ``control`` (``wire:`` map, else the provider default);
    None when the offer has no such field (``none``)."""
    name = offer.offer.wire.get(control, default)
    if name is None or str(name).lower() in ("none", "", "-"):
        return None
    return str(name)


def ratio_for(width: int, height: int, table: Mapping[str, str] | None) -> str | None:
    """The ratio key of ``table`` whose size is exactly ``width``×``height``; else the reduced
    ``W:H`` when it is a key of the table (or there is no table); else None."""
    size = f"{width}x{height}"
    for ratio, s in (table or {}).items():
        if s == size:
            return ratio
    g = math.gcd(width, height)
    reduced = f"{width // g}:{height // g}"
    if table is None or reduced in table:
        return reduced
    return None


def nearest_ratio(width: int, height: int, ratios: list[str]) -> str:
    """The ratio in ``ratios`` closest to ``width/height`` (log distance)."""
    def dist(r: str) -> float:
        a, b = (float(x) for x in r.split(":"))
        return abs(math.log((a / b) / (width / height)))
    return min(ratios, key=dist)


def merge_options(payload: dict[str, Any], options: Mapping[str, Any], *, provider: str,
                  reserved: dict[str, str], forbidden: Mapping[str, str] | None = None) -> None:
    """Add ``provider_options`` to ``payload``.

    An option may not set a field a request control owns (``reserved``: field → control) or a
    field the provider module refuses (``forbidden``: field → why); both raise
    :class:`InvalidRequest` saying what to use instead.
    """
    for key, value in options.items():
        if forbidden and key in forbidden:
            raise InvalidRequest(f"provider_options[{provider!r}][{key!r}]: {forbidden[key]}",
                                 field=f"provider_options.{provider}.{key}")
        if key in reserved:
            raise InvalidRequest(
                f"provider_options[{provider!r}][{key!r}] sets a field that the request's "
                f"`{reserved[key]}` control owns; set {reserved[key]}=... on the request instead",
                field=f"provider_options.{provider}.{key}")
        payload[key] = value


# -- data URIs ------------------------------------------------------------------------------------

_DATA_URI_RE = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?),(?P<data>.*)$",
                          re.DOTALL)


def decode_data_uri(uri: str) -> tuple[bytes, str | None]:
    """``data:image/png;base64,...`` → (bytes, mime). Raises ValueError on a malformed URI."""
    m = _DATA_URI_RE.match(uri)
    if not m:
        raise ValueError("not a data: URI")
    params = m.group("params") or ""
    data = m.group("data")
    if ";base64" in params:
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"bad base64 in data: URI ({exc})") from None
    else:
        from urllib.parse import unquote_to_bytes

        raw = unquote_to_bytes(data)
    return raw, m.group("mime")


def decode_b64(data: str) -> bytes:
    """Strict base64 → bytes (ValueError on garbage, so a corrupt reply is not taken as an image)."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 image data ({exc})") from None


# -- time -----------------------------------------------------------------------------------------


class Deadline:
    """A point in monotonic time by which one job must be done."""

    def __init__(self, seconds: float, *, per_request_s: float | None = None) -> None:
        if not seconds or seconds <= 0 or not math.isfinite(seconds):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {seconds!r}")
        self.seconds = float(seconds)
        self.per_request_s = per_request_s
        self.started = time.monotonic()
        self.at = self.started + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def clamp(self, seconds: float | None) -> float:
        """``seconds`` cut to what is left and to ``per_request_s`` (at least 1 ms, so a client
        never gets 0, which some read as "no limit")."""
        left = self.remaining()
        if self.per_request_s is not None:
            left = min(left, self.per_request_s)
        value = left if seconds is None else min(seconds, left)
        return max(value, 0.001)


_CURRENT_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "modelglass_provider_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(deadline: Deadline) -> Iterator[Deadline]:
    """Within this block (this thread / this task), every HTTP request made through an
    :func:`escalating_transport` has its timeouts cut to the deadline's remaining time."""
    token = _CURRENT_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT_DEADLINE.reset(token)


# -- the transport seam ---------------------------------------------------------------------------


class HTTPFailure(Exception):
    """An HTTP error reply (``response`` set, body already read) or a transport error (``error``
    set), raised from inside the client's transport.

    It deliberately is *not* an ``httpx.HTTPError``: the fal and replicate clients retry only
    ``httpx`` errors and error statuses they see, so raising this from the transport takes the
    decision to retry away from them and gives it to modelglass (which honours Retry-After).
    """

    def __init__(self, response: Any = None, error: BaseException | None = None) -> None:
        self.response = response
        self.error = error
        super().__init__(f"HTTP {response.status_code}" if response is not None
                         else f"{type(error).__name__}: {error}")

    @property
    def status(self) -> int | None:
        return None if self.response is None else int(self.response.status_code)

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.response is None else {k.lower(): v for k, v in
                                                  self.response.headers.items()}

    def body(self) -> Any:
        """The reply body: parsed JSON when it is JSON, else text."""
        if self.response is None:
            return None
        try:
            return self.response.json()
        except (ValueError, UnicodeDecodeError):
            return self.response.text


def _clamp_request_timeouts(request: Any) -> None:
    deadline = _CURRENT_DEADLINE.get()
    if deadline is None:
        return
    timeouts = dict(request.extensions.get("timeout") or {})
    for k in ("connect", "read", "write", "pool"):
        timeouts[k] = deadline.clamp(timeouts.get(k))
    request.extensions["timeout"] = timeouts


@functools.cache
def _transport_classes() -> tuple[type, type]:
    import httpx

    class EscalatingTransport(httpx.BaseTransport):
        def __init__(self, inner: httpx.BaseTransport) -> None:
            self.inner = inner

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            _clamp_request_timeouts(request)
            try:
                response = self.inner.handle_request(request)
                # Read the body here: a reply cut short then surfaces as HTTPFailure too, and
                # never as an httpx error that the client's own retry loop would act on (fal
                # re-submitting a create whose reply was truncated would bill twice).
                try:
                    response.read()
                finally:
                    if response.status_code >= 400:
                        response.close()
            except httpx.TransportError as exc:
                raise HTTPFailure(error=exc) from exc
            if response.status_code >= 400:
                response.request = request
                raise HTTPFailure(response=response)
            return response

        def close(self) -> None:
            self.inner.close()

    class AsyncEscalatingTransport(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            _clamp_request_timeouts(request)
            try:
                response = await self.inner.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    if response.status_code >= 400:
                        await response.aclose()
            except httpx.TransportError as exc:
                raise HTTPFailure(error=exc) from exc
            if response.status_code >= 400:
                response.request = request
                raise HTTPFailure(response=response)
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    return EscalatingTransport, AsyncEscalatingTransport


def escalating_transport(inner: Any, *, asynchronous: bool = False) -> Any:
    """Wrap an ``httpx`` transport so that error replies and transport errors surface as
    :class:`HTTPFailure` (never retried inside the client) and every request's timeouts are cut
    to the current :func:`deadline_scope`."""
    sync_cls, async_cls = _transport_classes()
    return (async_cls if asynchronous else sync_cls)(inner)


# -- one client per event loop --------------------------------------------------------------------


class PerLoop(Generic[T]):
    """Async clients hold connections bound to one event loop; keep one per running loop."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = \
            weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        client = self._by_loop.get(loop)
        if client is None:
            client = self._by_loop[loop] = self._factory()
        return client

    def pop_current(self) -> T | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._by_loop.pop(loop, None)

    def clear(self) -> None:
        self._by_loop.clear()


# -- the sans-I/O job runner ----------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One I/O step of a job: call ``name`` on the provider's wire object with ``args``."""

    name: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before the next step."""

    seconds: float


Job = Generator["Op | Sleep", Any, T]


def drive(job: Job[T], wire: Any) -> T:
    """Run a job with blocking I/O: each :class:`Op` is ``getattr(wire, name)(*args)``; its
    result (or exception) is sent (or thrown) back into the job."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = job.throw(error) if error is not None else job.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except ModelglassError as err:
            detach(err)
            raise
        value, error = None, None
        if isinstance(step, Sleep):
            time.sleep(max(0.0, step.seconds))
            continue
        try:
            value = getattr(wire, step.name)(*step.args)
        except Exception as exc:  # noqa: BLE001 - every client failure goes back to the job
            error = exc


async def adrive(job: Job[T], wire: Any) -> T:
    """:func:`drive` for coroutines: each :class:`Op` is awaited."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = job.throw(error) if error is not None else job.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except ModelglassError as err:
            detach(err)
            raise
        value, error = None, None
        if isinstance(step, Sleep):
            await asyncio.sleep(max(0.0, step.seconds))
            continue
        try:
            result = getattr(wire, step.name)(*step.args)
            value = await result if isinstance(result, Awaitable) else result
        except Exception as exc:  # noqa: BLE001 - every client failure goes back to the job
            error = exc


def retryable(err: BaseException) -> bool:
    """Whether another try of the same step may succeed (False for refusals and non-provider
    errors)."""
    return bool(getattr(err, "retryable", False))


def content_rejected(provider: str, message: str, code: str | None) -> ContentRejected:
    """A content refusal, with the standard advice."""
    # Provider messages end with or without a full stop: exactly one before the advice.
    message = message.rstrip().rstrip(".")
    return ContentRejected(f"{message}. Rephrase the prompt; modelglass does not retry refusals "
                           f"or fall back to another model for them.", provider=provider, code=code)


def poll_backoff(err: BaseException, failures: int, base_s: float,
                 deadline: Deadline) -> float | None:
    """How long to wait before polling again after a failed poll: the provider's Retry-After,
    else exponential from ``base_s`` (capped at 2 s). None when the wait would pass the deadline
    (waiting would only run the job out)."""
    wait = err.retry_after if isinstance(err, RateLimited) and err.retry_after else \
        min(base_s * 2 ** (failures - 1), 2.0)
    return None if wait >= deadline.remaining() else wait


def ran_out(provider: str, brand: str, what: str, state: str, deadline: Deadline,
            cancelled: bool, request_id: str, why: BaseException | None,
            secrets: tuple[str | None, ...]) -> ProviderError:
    """The error for a queued job given up at its deadline: a retryable timeout when the
    provider confirmed the cancel, else :class:`OutcomeUnknown` (it may still run and bill)."""
    because = f" ({why})" if why is not None else ""
    if cancelled:
        return GenerationTimeout(
            f"{what} was still {state} when its {deadline.seconds:g} s ran out{because}; it "
            f"was cancelled. Raise the job timeout, or pick a faster model.",
            provider=provider, retryable=True)
    return outcome_unknown(
        provider, what, f"it was still {state} when its {deadline.seconds:g} s ran out"
        f"{because}, and {brand} did not confirm the cancel, so it may still run", stage="poll",
        request_id=request_id, secrets=secrets)
