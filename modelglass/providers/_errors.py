"""From a client's failure to a modelglass error that says what happened and what to do next.

- :func:`http_error`: an HTTP error status → ``RateLimited`` / ``ProviderError`` with advice;
  :func:`retry_after_from` reads how long the provider asked to wait;
- :func:`connection_error`, :func:`never_sent`, :func:`transport_reason`: failures below HTTP,
  and whether the request certainly never left (so sending it again cannot bill twice);
- :func:`outcome_unknown`: a create that may have run (possibly charged, never re-sent);
- :func:`wrong_shape`, :func:`content_rejected`: replies modelglass cannot use, refusals;
- :func:`excerpt` and :func:`detach`: key-free excerpts, and errors cut loose from the client
  exception (and the request with its key) they replaced.
"""

from __future__ import annotations

import email.utils
import html
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from ..errors import ContentRejected, GenerationTimeout, OutcomeUnknown, ProviderError, RateLimited
from ._keys import scrub

__all__ = ["connection_error", "content_rejected", "detach", "excerpt", "http_error",
           "is_httpx_error", "looks_like_html", "never_sent", "outcome_unknown", "retry_after_from",
           "transport_reason", "wrong_shape"]

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


def is_httpx_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``httpx`` error (httpx imported only when it is installed)."""
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, httpx.HTTPError)


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


def content_rejected(provider: str, message: str, code: str | None) -> ContentRejected:
    """A content refusal, with the standard advice."""
    # Provider messages end with or without a full stop: exactly one before the advice.
    message = message.rstrip().rstrip(".")
    return ContentRejected(f"{message}. Rephrase the prompt; modelglass does not retry refusals "
                           f"or fall back to another model for them.", provider=provider, code=code)
