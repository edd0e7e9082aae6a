"""A lean HTTP/1.1 transport for the official clients' async ``httpx`` client.

Why: at a batch's concurrency (64 requests in flight and more), ``httpcore``'s connection pool
scans every connection twice per request, through four properties each (``is_idle``,
``is_closed``, ``is_available``, ...): ~150 calls per request at 64 connections, a third of the
raw ``AsyncOpenAI`` loop's CPU (``benchmarks/batch_cpu.py``). This transport keeps a stack of
idle connections per origin (checkout and return are O(1)), writes and reads HTTP/1.1 with the
small strict codec in ``_h1.py`` (``h11``'s state machine cost ~150 µs a request), and runs on
an :class:`asyncio.Protocol` without ``anyio``.

What it is not: a general client. HTTP/1.1 only, no proxies (the provider builds the client's
default transport instead when the environment names a proxy, see :func:`usable`), and only
``asyncio``. Everything above the transport (the client's request building, retries, auth,
redirects, typed errors) is the official client's own.

Failures are the ``httpx`` module's own exceptions, so the client maps them as it maps
``httpcore``'s, and :func:`~modelglass.providers._errors.never_sent` can tell a request that
never left (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``: nothing was written) from one
that may have (anything after the first byte was handed to the socket). A connection whose
server closed it while idle is dropped at checkout, before anything is written on it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import time
from collections import deque
from typing import Any

from . import _h1

__all__ = ["lean_transport", "usable"]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def usable() -> bool:
    """Whether the lean transport can stand in for the client's default one here: no proxy is
    named in the environment (the default client honours those; this transport does not speak
    to proxies)."""
    return not any(os.environ.get(v) for v in _PROXY_VARS)


def lean_transport(httpx: Any, *, max_connections: int = 1000, max_keepalive: int = 100,
                   keepalive_expiry: float = 5.0) -> Any:
    """A new transport for ``httpx`` (the module the client is built on: ``httpx`` or its
    vendored copy ``httpx2``), with the client's default limits. TLS verifies as the client's
    own transport does by default (``httpx.create_ssl_context()``: ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``, else the bundled CAs)."""
    cls = _transport_class(httpx)
    return cls(max_connections=max_connections, max_keepalive=max_keepalive,
               keepalive_expiry=keepalive_expiry)


class _Conn(asyncio.Protocol):
    """One TCP (or TLS) connection: received bytes, end of stream, and write back-pressure,
    each awaited through one future at a time."""

    __slots__ = (
        "buf",
        "chunks",
        "drained",
        "eof",
        "idle_since",
        "lost",
        "paused",
        "transport",
        "waiter",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.eof = False
        self.lost: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.paused = False
        self.drained: asyncio.Future[None] | None = None
        self.buf = bytearray()  # bytes received and not parsed yet
        self.idle_since = 0.0

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.lost = exc
        self._wake()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -- use ---------------------------------------------------------------------------------------
    def stale(self) -> bool:
        """Closed, half-closed or holding bytes nobody asked for: not to be used again."""
        t = self.transport
        return self.eof or bool(self.chunks) or bool(self.buf) or t is None or t.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _wait(fut: asyncio.Future[None], timeout: float | None, on_timeout: Any) -> None:
    """Await ``fut``; after ``timeout`` seconds raise ``on_timeout()`` instead. A cancellation
    of the awaiting task stays a cancellation."""
    if timeout is None:
        await fut
        return
    fired: list[bool] = []
    handle = asyncio.get_running_loop().call_later(max(timeout, 0.0), _expire, fut, fired)
    try:
        await fut
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not fired or (task is not None and task.cancelling()):
            raise
        raise on_timeout() from None
    finally:
        handle.cancel()


def _expire(fut: asyncio.Future[None], fired: list[bool]) -> None:
    if not fut.done():
        fired.append(True)
        fut.cancel()


_PIECE = 1 << 20  # the largest piece of a sized body handed to the client at once


@functools.cache
def _transport_class(httpx: Any) -> type:
    Problem = _h1.ProtocolProblem

    class _Body(httpx.AsyncByteStream):
        """The reply's body, read from the connection as the client iterates it (framed by
        ``mode``: ``length`` / ``chunked`` / ``close``); the connection goes back to the pool
        once the whole reply was read and the server keeps it, else it is closed."""

        def __init__(self, pool: Any, key: tuple[Any, ...], conn: _Conn, read_timeout: float | None,
                     mode: str, length: int, keep: bool) -> None:
            self.pool, self.key, self.conn, self.read_timeout = pool, key, conn, read_timeout
            self.mode, self.length, self.keep = mode, length, keep
            self.done = False
            self.closed = False

        async def __aiter__(self) -> Any:
            try:
                if self.mode == "length":
                    async for piece in self._sized():
                        yield piece
                elif self.mode == "chunked":
                    async for piece in self._chunked():
                        yield piece
                else:
                    async for piece in self._until_close():
                        yield piece
            except Problem as exc:
                raise httpx.RemoteProtocolError(str(exc)) from None
            self.done = True

        async def _more(self, what: str) -> None:
            data = await self.pool._recv(self.conn, self.read_timeout)
            if not data:
                raise Problem(f"the server closed the connection {what}")
            self.conn.buf += data

        async def _sized(self) -> Any:
            buf, left = self.conn.buf, self.length
            while left > 0:
                # the whole body in one piece when it has come (up to 1 MB pieces otherwise):
                # the client joins the pieces anyway, and each costs it a pass of its own
                if len(buf) >= left or len(buf) >= _PIECE:
                    n = min(left, len(buf))
                    if n == len(buf):
                        piece = bytes(buf)
                        buf.clear()
                    else:
                        piece = bytes(buf[:n])
                        del buf[:n]
                    left -= n
                    yield piece
                else:
                    await self._more(f"{left - len(buf)} bytes short of the reply's "
                                     f"Content-Length ({self.length})")

        async def _line(self) -> bytes:
            buf = self.conn.buf
            while (end := buf.find(b"\r\n")) < 0:
                if len(buf) > 4096:
                    raise Problem("a chunk size or trailer line over 4 KB")
                await self._more("in the middle of a chunked body")
            line = bytes(buf[:end])
            del buf[:end + 2]
            return line

        async def _chunked(self) -> Any:
            buf = self.conn.buf
            while (size := _h1.parse_chunk_size(await self._line())) > 0:
                while len(buf) < size + 2:
                    await self._more("in the middle of a chunked body")
                if buf[size:size + 2] != b"\r\n":
                    raise Problem("a chunk is not followed by CRLF")
                piece = bytes(buf[:size])
                del buf[:size + 2]
                yield piece
            for _ in range(100):  # trailers, up to the blank line
                if not await self._line():
                    return
            raise Problem("over 100 trailer lines")

        async def _until_close(self) -> Any:
            buf = self.conn.buf
            while True:
                if buf:
                    piece = bytes(buf)
                    buf.clear()
                    yield piece
                data = await self.pool._recv(self.conn, self.read_timeout)
                if not data:
                    return
                buf += data

        async def aclose(self) -> None:
            if self.closed:
                return
            self.closed = True
            # reused only when read whole and the server keeps it (bytes left over after the
            # reply make the connection stale: ``_release`` drops it)
            self.pool._release(self.key, self.conn, reusable=self.done and self.keep)

    class LeanTransport(httpx.AsyncBaseTransport):
        def __init__(self, *, max_connections: int, max_keepalive: int,
                     keepalive_expiry: float) -> None:
            self.max_connections = max_connections
            self.max_keepalive = max_keepalive
            self.keepalive_expiry = keepalive_expiry
            self._ssl: ssl.SSLContext | None = None  # made at the first https connection
            self._idle: dict[tuple[Any, ...], list[_Conn]] = {}
            self._open = 0  # connections, idle or busy
            self._idle_count = 0
            self._waiters: deque[asyncio.Future[None]] = deque()
            self._closed = False

        # -- the pool ------------------------------------------------------------------------------
        async def _checkout(self, key: tuple[Any, ...], timeouts: dict[str, Any]) -> _Conn:
            while True:
                idle = self._idle.get(key)
                now = time.monotonic()
                while idle:
                    conn = idle.pop()
                    self._idle_count -= 1
                    if conn.stale() or now - conn.idle_since > self.keepalive_expiry:
                        self._drop(conn)
                        continue
                    return conn
                if self._closed:
                    raise httpx.ConnectError("the transport is closed")
                if self._open < self.max_connections:
                    self._open += 1
                    try:
                        return await self._connect(key, timeouts.get("connect"))
                    except BaseException:
                        self._open -= 1
                        self._wake()
                        raise
                if self._idle_count:  # idle connections of other origins: make room
                    self._evict_one()
                    continue
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append(fut)
                try:
                    await _wait(fut, timeouts.get("pool"),
                                lambda: httpx.PoolTimeout("no connection free in time"))
                except BaseException:
                    if fut.done() and not fut.cancelled():
                        self._wake()  # pass the slot on
                    raise

        async def _connect(self, key: tuple[Any, ...], timeout: float | None) -> _Conn:
            scheme, host, port = key
            loop = asyncio.get_running_loop()
            tls = None
            if scheme == "https":
                tls = self._ssl
                if tls is None:
                    tls = self._ssl = httpx.create_ssl_context()
            try:
                coro = loop.create_connection(_Conn, host, port, ssl=tls,
                                              server_hostname=host if tls else None)
                if timeout is None:
                    _, conn = await coro
                else:
                    async with asyncio.timeout(timeout):
                        _, conn = await coro
            except TimeoutError:
                raise httpx.ConnectTimeout(f"no connection to {host}:{port} within "
                                           f"{timeout:g} s") from None
            except (OSError, ssl.SSLError) as exc:
                raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from exc
            return conn

        def _release(self, key: tuple[Any, ...], conn: _Conn, *, reusable: bool) -> None:
            if (reusable and not self._closed and not conn.stale()
                    and self._idle_count < self.max_keepalive):
                conn.idle_since = time.monotonic()
                self._idle.setdefault(key, []).append(conn)
                self._idle_count += 1
                self._wake()
            else:
                self._drop(conn)

        def _drop(self, conn: _Conn) -> None:
            conn.close()
            self._open -= 1
            self._wake()

        def _evict_one(self) -> None:
            for idle in self._idle.values():
                if idle:
                    self._idle_count -= 1
                    self._drop(idle.pop(0))
                    return

        def _wake(self) -> None:
            while self._waiters:
                fut = self._waiters.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return

        async def _recv(self, conn: _Conn, timeout: float | None) -> bytes:
            """The next bytes the server sent (b"" at the end of the stream)."""
            while not conn.chunks:
                if conn.eof:
                    if conn.lost is not None:
                        raise httpx.ReadError(f"{type(conn.lost).__name__}: {conn.lost}")
                    return b""
                fut = conn.waiter = asyncio.get_running_loop().create_future()
                try:
                    await _wait(fut, timeout, lambda: httpx.ReadTimeout("no answer in time"))
                finally:
                    conn.waiter = None
            chunks = conn.chunks
            return chunks.popleft() if len(chunks) == 1 else b"".join(
                [chunks.popleft() for _ in range(len(chunks))])

        async def _send(self, conn: _Conn, data: bytes, timeout: float | None) -> None:
            t = conn.transport
            if t is None or t.is_closing():
                # closed between checkout and now: not one byte of this request was written
                raise httpx.ConnectError("the kept-alive connection closed before the request "
                                         "was written")
            t.write(data)
            while conn.paused and conn.lost is None and not conn.eof:
                fut = conn.drained = asyncio.get_running_loop().create_future()
                try:
                    await _wait(fut, timeout, lambda: httpx.WriteTimeout("could not send in time"))
                finally:
                    conn.drained = None
            if conn.lost is not None:
                raise httpx.WriteError(f"{type(conn.lost).__name__}: {conn.lost}")

        # -- one request ---------------------------------------------------------------------------
        async def handle_async_request(self, request: Any) -> Any:
            url = request.url
            scheme = url.scheme
            if scheme not in ("http", "https"):
                raise httpx.UnsupportedProtocol(f"no transport for {scheme!r} URLs")
            key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
            timeouts = request.extensions.get("timeout") or {}
            conn = await self._checkout(key, timeouts)
            # Once its first byte is written (``_send``) the request may reach the server: no
            # failure after that may look like "not sent".
            try:
                method = request.method
                method = method.encode("ascii", "replace") if isinstance(method, str) else method
                try:
                    head, length, chunked, close = _h1.request_head(method, url.raw_path,
                                                                    request.headers.raw)
                    body = [chunk async for chunk in request.stream if chunk]
                    if chunked:
                        body = [b"%x\r\n%b\r\n" % (len(c), c) for c in body] + [b"0\r\n\r\n"]
                    elif sum(map(len, body)) != (length or 0):
                        raise _h1.ProtocolProblem(
                            f"the body is {sum(map(len, body))} bytes, its Content-Length "
                            f"says {length or 0}")
                except _h1.ProtocolProblem as exc:
                    raise httpx.LocalProtocolError(str(exc)) from None
                await self._send(conn, b"".join([head, *body]), timeouts.get("write"))
                read_timeout = timeouts.get("read")
                reply = await self._head(conn, read_timeout)
                mode, size = _h1.framing(reply, method)
                keep = mode != "close" and not close and _h1.keeps_alive(reply)
            except _h1.ProtocolProblem as exc:
                self._drop(conn)
                raise httpx.RemoteProtocolError(str(exc)) from None
            except BaseException:
                self._drop(conn)  # cancelled, timed out or broken mid-request: never reused
                raise
            return httpx.Response(reply.status, headers=reply.headers,
                                  stream=_Body(self, key, conn, read_timeout, mode, size, keep),
                                  extensions={"http_version": b"HTTP/1.0" if reply.http10
                                              else b"HTTP/1.1", "reason_phrase": reply.reason})

        async def _head(self, conn: _Conn, timeout: float | None) -> _h1.Head:
            """The reply's head (informational 1xx replies skipped)."""
            buf = conn.buf
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0 or end > _h1.MAX_HEAD:
                    if len(buf) > _h1.MAX_HEAD:
                        raise _h1.ProtocolProblem(f"the reply's head is over "
                                                  f"{_h1.MAX_HEAD >> 10} KB")
                    data = await self._recv(conn, timeout)
                    if not data:
                        raise _h1.ProtocolProblem(
                            "Server disconnected without sending a response." if not buf else
                            "the server closed the connection in the middle of the reply's head")
                    buf += data
                    continue
                reply = _h1.parse_head(bytes(buf[:end]))
                del buf[:end + 4]
                if reply.status == 101:
                    raise _h1.ProtocolProblem("unexpected 101 Switching Protocols")
                if reply.status >= 200:
                    return reply

        async def aclose(self) -> None:
            self._closed = True
            for idle in self._idle.values():
                for conn in idle:
                    self._drop(conn)
                idle.clear()
            self._idle_count = 0
            for fut in self._waiters:
                if not fut.done():
                    fut.cancel()
            self._waiters.clear()

    return LeanTransport
