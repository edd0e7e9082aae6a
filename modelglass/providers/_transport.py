"""The transport seam: an ``httpx`` transport that takes every retry decision away from the
official clients, and one async client per event loop.

:func:`escalating_transport` wraps the client's transport so that error replies and transport
errors surface as :class:`HTTPFailure` (never an ``httpx`` error a client's own retry loop would
act on), and every request's timeouts are cut to the job's deadline
(:func:`~modelglass.jobs._steps.deadline_scope`).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ..jobs._steps import current_deadline

__all__ = ["HTTPFailure", "PerLoop", "escalating_transport"]

T = TypeVar("T")


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
    deadline = current_deadline()
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
