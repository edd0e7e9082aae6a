"""The lean HTTP/1.1 transport under the official clients' async client (providers/_http11.py),
against small servers on 127.0.0.1 that misbehave on purpose: connections reused and dropped
at checkout, failures before and after the request left (``never_sent``), timeouts, cut and
hostile replies, cancellation, and the pool's limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Self

import httpx
import pytest

from modelglass.providers import _http11
from modelglass.providers._errors import never_sent

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


def ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's head and body (Content-Length), or None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


class Server:
    """An asyncio server whose handler gets every connection and its number."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Self:
        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer, self.connections)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def serve_ok(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       n: int, delay: float = 0.0) -> None:
        while (req := await read_request(reader)) is not None:
            self.requests.append(req)
            if delay:
                await asyncio.sleep(delay)
            writer.write(ok(req.split(b" ", 2)[1]))
            await writer.drain()


def client(**kw: Any) -> httpx.AsyncClient:
    timeout = kw.pop("timeout", httpx.Timeout(5.0))
    return httpx.AsyncClient(transport=_http11.lean_transport(httpx, **kw), timeout=timeout)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def test_keeps_one_connection_alive_across_sequential_requests() -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n))
        async with srv, client() as c:
            for i in range(5):
                resp = await c.post(f"{srv.url}/p{i}", json={"i": i})
                assert resp.status_code == 200 and resp.text == f"/p{i}"
            assert srv.connections == 1
            assert b'{"i":4}' in srv.requests[-1].replace(b" ", b"")
    run(go())


def test_concurrent_requests_get_their_own_replies_and_reuse_the_pool() -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n, delay=0.05))
        async with srv, client() as c:
            for _ in range(2):
                replies = await asyncio.gather(*(c.get(f"{srv.url}/{i}") for i in range(64)))
                assert [r.text for r in replies] == [f"/{i}" for i in range(64)]
            assert srv.connections == 64  # the second round reused the first round's
    run(go())


def test_max_connections_queues_and_a_pool_timeout_is_never_sent() -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n, delay=0.3))
        async with srv, client(max_connections=1,
                               timeout=httpx.Timeout(5.0, pool=0.05)) as c:
            first = asyncio.create_task(c.get(f"{srv.url}/a"))
            await asyncio.sleep(0.05)
            with pytest.raises(httpx.PoolTimeout) as info:
                await c.get(f"{srv.url}/b")
            assert never_sent(info.value)
            assert (await first).text == "/a"
            assert len(srv.requests) == 1  # /b never left
            # once free, the one connection serves the next request
            assert (await c.get(f"{srv.url}/c")).text == "/c" and srv.connections == 1
    run(go())


def test_refused_connection_is_a_connect_error_never_sent() -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n))
        async with srv:
            url = srv.url
        await asyncio.sleep(0.05)
        async with client() as c:
            with pytest.raises(httpx.ConnectError) as info:
                await c.get(f"{url}/x")
            assert never_sent(info.value)
    run(go())


def test_idle_connection_closed_by_the_server_is_not_written_to() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        req = await read_request(reader)
        assert req is not None
        srv.requests.append(req)
        writer.write(ok(b"once"))
        await writer.drain()  # then close: keep-alive ends on the server's side

    async def go() -> None:
        async with srv, client() as c:
            assert (await c.get(f"{srv.url}/1")).text == "once"
            await asyncio.sleep(0.1)  # the FIN arrives while the connection is idle
            assert (await c.get(f"{srv.url}/2")).text == "once"
            assert srv.connections == 2 and len(srv.requests) == 2
    srv = Server(handler)
    run(go())


def test_dropped_after_the_request_may_have_been_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if await read_request(reader) is not None:
            srv.requests.append(b"seen")
        # close without a reply: the server took the request

    async def go() -> None:
        async with srv, client() as c:
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await c.post(f"{srv.url}/create", json={"x": 1})
            assert not never_sent(info.value)
            assert srv.requests == [b"seen"]
    srv = Server(handler)
    run(go())


def test_a_hang_is_a_read_timeout_that_may_have_been_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def go() -> None:
        async with Server(handler) as srv, client(timeout=httpx.Timeout(5.0, read=0.2)) as c:
            with pytest.raises(httpx.ReadTimeout) as info:
                await c.post(f"{srv.url}/create", json={})
            assert not never_sent(info.value)
    run(go())


def test_slow_bytes_within_the_read_timeout_arrive_whole() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        for byte in ok(b"slowly"):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.002)

    async def go() -> None:
        async with Server(handler) as srv, client(timeout=httpx.Timeout(5.0, read=0.5)) as c:
            assert (await c.get(f"{srv.url}/s")).text == "slowly"
    run(go())


def test_a_reply_cut_short_fails_and_its_connection_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
            await writer.drain()
            return
        await srv.serve_ok(reader, writer, n)

    async def go() -> None:
        async with srv, client() as c:
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await c.get(f"{srv.url}/cut")
            assert not never_sent(info.value)
            assert (await c.get(f"{srv.url}/next")).text == "/next"
            assert srv.connections == 2
    srv = Server(handler)
    run(go())


@pytest.mark.parametrize("reply", [b"SPLAT\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
                                   b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"])
def test_hostile_reply_heads_are_protocol_errors(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(0.5)

    async def go() -> None:
        async with Server(handler) as srv, client() as c:
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await c.get(f"{srv.url}/h")
            assert not never_sent(info.value)
    run(go())


def test_chunked_reply_and_connection_close_are_honoured() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            await writer.drain()

    async def go() -> None:
        async with srv, client() as c:
            for _ in range(2):
                assert (await c.get(f"{srv.url}/c")).text == "hello world"
            assert srv.connections == 2  # "Connection: close": never reused
    srv = Server(handler)
    run(go())


def test_cancelling_mid_request_stays_a_cancellation_and_frees_the_slot() -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n, delay=0.5))
        async with srv, client(max_connections=1) as c:
            task = asyncio.create_task(c.get(f"{srv.url}/slow"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # the connection with a reply still coming is not reused; the slot is free again
            assert (await c.get(f"{srv.url}/after")).text == "/after"
            assert srv.connections == 2
    run(go())


def test_aclose_closes_idle_connections_and_refuses_new_requests() -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n))
        async with srv:
            transport = _http11.lean_transport(httpx)
            async with httpx.AsyncClient(transport=transport) as c:
                await c.get(f"{srv.url}/a")
                assert transport._idle_count == 1
            assert transport._idle_count == 0 and transport._open == 0
            with pytest.raises(httpx.ConnectError):
                await transport.handle_async_request(httpx.Request("GET", f"{srv.url}/b"))
    run(go())


def test_header_injection_is_refused_before_anything_is_sent() -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n))
        async with srv, client() as c:
            with pytest.raises(httpx.LocalProtocolError):
                await c.get(f"{srv.url}/x", headers={"x-bad": "a\r\nInjected: yes"})
            assert srv.requests == []
    run(go())


def test_a_proxy_in_the_environment_keeps_the_clients_own_transport(monkeypatch: Any) -> None:
    assert _http11.usable()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert not _http11.usable()


def _tls_server_context(ca: Any) -> Any:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_https_verifies_the_server_against_the_trusted_cas(module: str, tmp_path: Any,
                                                           monkeypatch: Any) -> None:
    """TLS as the client's own transport does it: the CAs of SSL_CERT_FILE (else certifi's),
    the host name checked; an untrusted server is a connect error, nothing sent."""
    import importlib

    import trustme

    mod = pytest.importorskip(module) if module == "httpx2" else importlib.import_module(module)
    trusted, stranger = trustme.CA(), trustme.CA()
    trusted.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (req := await read_request(reader)) is not None:
                seen.append(req)
                writer.write(ok(b"over tls"))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def go() -> None:
        for ca, fine in ((trusted, True), (stranger, False)):
            server = await asyncio.start_server(handler, "127.0.0.1", 0,
                                                ssl=_tls_server_context(ca))
            port = server.sockets[0].getsockname()[1]
            transport = _http11.lean_transport(mod)
            async with mod.AsyncClient(transport=transport) as c:
                if fine:
                    for _ in range(2):
                        assert (await c.get(f"https://127.0.0.1:{port}/t")).text == "over tls"
                    assert transport._open == 1  # one TLS connection, kept alive
                else:
                    with pytest.raises(mod.ConnectError) as info:
                        await c.get(f"https://127.0.0.1:{port}/t")
                    assert never_sent(info.value)
            server.close()
        assert len(seen) == 2  # the untrusted server got no request
    run(go())


def test_a_server_that_stops_reading_is_a_write_timeout_that_may_have_been_sent() -> None:
    """Back-pressure: the body does not fit the socket buffers of a server that reads nothing;
    some of it left, so the failure must not look like "never sent"."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(5)  # accept, read nothing

    async def go() -> None:
        async with Server(handler) as srv, client(
                timeout=httpx.Timeout(5.0, write=0.3)) as c:
            with pytest.raises(httpx.WriteTimeout) as info:
                await c.post(f"{srv.url}/edits", content=b"x" * (64 << 20))
            assert not never_sent(info.value)
    run(go())


def test_a_kept_alive_connection_closing_before_the_write_is_never_sent(monkeypatch: Any) -> None:
    """The window between checkout and the write: a connection that closed there had nothing
    written on it, so the failure is "not sent" (retryable), not a possibly charged create."""
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n))
        async with srv:
            transport = _http11.lean_transport(httpx)
            async with httpx.AsyncClient(transport=transport) as c:
                assert (await c.get(f"{srv.url}/a")).text == "/a"
                [conn] = next(iter(transport._idle.values()))
                conn.transport.close()  # closes as the request is about to be written...
                monkeypatch.setattr(type(conn), "stale", lambda self: False)  # ...after checkout
                with pytest.raises(httpx.ConnectError) as info:
                    await c.get(f"{srv.url}/b")
                assert never_sent(info.value)
                assert len(srv.requests) == 1 and transport._open == 0
    run(go())


# -- the HTTP/1.1 codec (providers/_h1.py) through the transport ---------------------------------
def _one_reply(reply: bytes, *, then_close: bool = False) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await read_request(reader) is not None:
            writer.write(reply)
            await writer.drain()
            if then_close:
                return
    return handler


@pytest.mark.parametrize("reply,body,reused", [
    # chunk extensions and trailers are read past; the connection is reused
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", b"abc0123456789", True),
    # informational replies before the real one are skipped
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", True),
    # the same Content-Length twice is one length
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", b"ok", True),
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n", b"", True),
    (b"HTTP/1.1 304 Not Modified\r\n\r\n", b"", True),
    # HTTP/1.0, and HTTP/1.1 with "Connection: close": read, never reused
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok", b"ok",
     False),
    # both framings: chunked wins (RFC 9112 6.3), and a reply that may be smuggling one is
    # never followed by another request on its connection
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2\r\nok\r\n0\r\n\r\n", b"ok", False),
])
def test_reply_framing(reply: bytes, body: bytes, reused: bool) -> None:
    async def go() -> None:
        async with Server(_one_reply(reply)) as srv, client() as c:
            for _ in range(2):
                resp = await c.get(f"{srv.url}/f")
                assert resp.content == body
            assert srv.connections == (1 if reused else 2)
    run(go())


def test_a_reply_without_framing_is_read_until_the_server_closes() -> None:
    async def go() -> None:
        async with Server(_one_reply(b"HTTP/1.1 200 OK\r\n\r\nto the end", then_close=True)
                          ) as srv, client() as c:
            for _ in range(2):
                assert (await c.get(f"{srv.url}/e")).text == "to the end"
            assert srv.connections == 2
    run(go())


def test_a_head_request_reads_no_body_and_keeps_the_connection() -> None:
    async def go() -> None:
        async with Server(_one_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")) as srv, \
                client() as c:
            for _ in range(2):
                resp = await c.head(f"{srv.url}/h")
                assert resp.status_code == 200 and resp.content == b""
            assert srv.connections == 1
    run(go())


def test_bytes_after_a_reply_mean_the_connection_is_not_reused() -> None:
    async def go() -> None:
        async with Server(_one_reply(ok(b"ok") + b"HTTP/1.1 200 OK\r\n")) as srv, client() as c:
            for _ in range(2):
                assert (await c.get(f"{srv.url}/x")).text == "ok"
            assert srv.connections == 2
    run(go())


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",  # conflicting
    b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",  # no chunked framing
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # not a chunk size
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",  # no CRLF
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",  # cut in a chunk
    b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n",  # obsolete folding
    b"HTTP/1.1 200 OK\r\nX-Ctl: a\x01b\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",  # bare LF line ends: not read as a reply
    b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * (70 << 10) + b"\r\n\r\n",  # head over 64 KB
])
def test_malformed_replies_are_protocol_errors_that_may_have_been_sent(reply: bytes) -> None:
    async def go() -> None:
        async with Server(_one_reply(reply, then_close=True)) as srv, \
                client(timeout=httpx.Timeout(5.0, read=1.0)) as c:
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await c.post(f"{srv.url}/create", json={})
            assert not never_sent(info.value)
    run(go())


def test_requests_are_written_as_sent_chunked_bodies_framed() -> None:
    async def go() -> None:
        got: list[bytes] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          n: int) -> None:
            got.append(await reader.readuntil(b"0\r\n\r\n"))
            writer.write(ok(b"ok"))
            await writer.drain()

        async def parts() -> Any:
            yield b"hello "
            yield b"world"

        async with Server(handler) as srv, client() as c:
            resp = await c.post(f"{srv.url}/up?q=1", content=parts(), headers={"X-A": "b"})
            assert resp.text == "ok"
        head, _, body = got[0].partition(b"\r\n\r\n")
        assert head.startswith(b"POST /up?q=1 HTTP/1.1\r\n")
        assert b"\r\nX-A: b" in head and b"Transfer-Encoding: chunked" in head
        assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
    run(go())


@pytest.mark.parametrize("headers", [{"x-bad": "a\nb"}, {"x-bad": "a\x00b"}, {"bad name": "v"}])
def test_illegal_request_headers_are_refused_before_anything_is_sent(headers: Any) -> None:
    async def go() -> None:
        srv = Server(lambda r, w, n: srv.serve_ok(r, w, n))
        async with srv, client() as c:
            with pytest.raises(httpx.LocalProtocolError):
                await c.get(f"{srv.url}/x", headers=headers)
            assert srv.requests == [] and srv.connections <= 1
    run(go())


def test_cancelling_while_the_body_comes_drops_the_connection_and_frees_the_slot() -> None:
    """The reply's head arrived (the create ran), its body is still coming when the caller
    cancels: a cancellation, the half-read connection is never reused, the slot is free."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while (req := await read_request(reader)) is not None:
            if n == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst part")
                await writer.drain()
                await asyncio.sleep(5)
                return
            writer.write(ok(req.split(b" ", 2)[1]))
            await writer.drain()

    async def go() -> None:
        transport = _http11.lean_transport(httpx, max_connections=1)
        async with Server(handler) as srv, httpx.AsyncClient(transport=transport) as c:
            task = asyncio.create_task(c.get(f"{srv.url}/slow-body"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert transport._open == 0 and transport._idle_count == 0
            assert (await c.get(f"{srv.url}/after")).text == "/after"
            assert srv.connections == 2
    run(go())
