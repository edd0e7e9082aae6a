"""HTTP plumbing shared by the three simulators: threaded servers, records, replies, faults.

Each provider simulator is a :class:`ProviderApp` mounted on one or more :class:`_Server`
listeners. A listener is a ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, one
daemon thread per connection, optional TLS (the handshake runs in the connection's thread, so a
slow client never blocks ``accept``). Every request is recorded before anything else happens,
then the generic faults (status, gateway_html, drop, hang, malformed, wrong_shape, expired) are
applied, and only then does the provider app answer.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, overload
from urllib.parse import parse_qsl, urlsplit

from ._faults import Fault, FaultBook
from ._images import mime_for, render_image, spells_right

__all__ = [
    "DROP",
    "FileSpec",
    "ProviderApp",
    "ProviderState",
    "RecordedRequest",
    "Reply",
    "start_server",
]

logger = logging.getLogger("modelglass")

GENERIC_KINDS = ("status", "gateway_html", "drop", "hang", "malformed", "wrong_shape", "expired",
                 "processed_drop", "processed_hang", "truncated")

_NGINX_PAGE = """<html>
<head><title>{status} {reason}</title></head>
<body>
<center><h1>{status} {reason}</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""


@dataclass
class RecordedRequest:
    """One request as it reached the simulator's socket.

    ``headers`` has lower-case names and keeps ``authorization`` so tests can assert it was
    sent; ``repr`` never shows its value. ``fault`` names the scripted fault it received.
    """

    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)
    json: Any = None
    body: bytes = field(default=b"", repr=False)
    stage: str | None = None
    fault: str | None = None
    time: float = 0.0

    @overload
    def header(self, name: str) -> str | None: ...
    @overload
    def header(self, name: str, default: str) -> str: ...

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header by case-insensitive name."""
        return self.headers.get(name.lower(), default)

    def __repr__(self) -> str:
        auth = "<redacted>" if "authorization" in self.headers else "none"
        return (f"RecordedRequest({self.provider} {self.method} {self.path} stage={self.stage} "
                f"fault={self.fault} authorization={auth})")


@dataclass
class Reply:
    """An HTTP answer: status, body bytes and headers (``Content-Length`` is added later)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Send only this many bytes of the body (``Content-Length`` still promises all), then close.
    truncate_at: int | None = None

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None,
             content_type: str = "application/json") -> Reply:
        """A JSON reply."""
        hdrs = {"Content-Type": content_type}
        hdrs.update(headers or {})
        return cls(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), hdrs)


class _Drop:
    """Sentinel reply: close the connection without answering."""

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()


@dataclass(frozen=True)
class FileSpec:
    """What a ``/files/{name}`` URL renders."""

    prompt: str
    seed: int
    width: int
    height: int
    fmt: str
    model: str = ""  # the endpoint / model that made it (for sim.text_accuracy)


class ProviderState:
    """Per-provider mutable state shared by its listeners: records, faults, files, settings."""

    def __init__(self, provider: str, stop: threading.Event) -> None:
        self.provider = provider
        self.stop = stop
        self.faults = FaultBook()
        self.service_time = 0.0
        self.sign_urls = False  # file URLs carry a signed query (X-Amz-Signature=…)
        self._billed = 0
        self._records: list[RecordedRequest] = []
        self._files: dict[str, FileSpec] = {}
        self._draws = 0  # answered generations of a provider without seeds (OpenAI)
        self._lock = threading.Lock()
        #: (provider or None, wire model name) -> how often its images spell quoted text right
        #: (``Simulator.text_accuracy``; shared by the simulators of one ``simulate()``).
        self.text_accuracy: dict[tuple[str | None, str], float] = {}

    def record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._records.append(req)

    def bill(self, generations: int = 1) -> None:
        """Count a generation the provider would charge for (a create that made its job)."""
        with self._lock:
            self._billed += generations

    @property
    def billed(self) -> int:
        with self._lock:
            return self._billed

    def records(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def add_file(self, spec: FileSpec) -> str:
        """Register a file; its name for a ``/files/`` URL, with a signed-URL query (as S3 or
        Azure hand out) when :attr:`sign_urls` is on."""
        ext = "jpeg" if spec.fmt == "jpeg" else spec.fmt
        name = f"{secrets.token_hex(8)}.{ext}"
        with self._lock:
            self._files[name] = spec
        if self.sign_urls:
            return (f"{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"
                    f"&X-Amz-Signature={secrets.token_hex(32)}")
        return name

    def misspells(self, model: str, prompt: str, seed: int) -> bool:
        """Whether ``model``'s image of ``prompt`` at ``seed`` misspells the quoted text."""
        p = self.text_accuracy.get((self.provider, model), self.text_accuracy.get((None, model)))
        return p is not None and not spells_right(p, model, prompt, seed)

    def file(self, name: str) -> FileSpec | None:
        with self._lock:
            return self._files.get(name)

    def next_draw(self) -> int:
        """The number of this answered generation, from 0 after the start or ``reset()``."""
        with self._lock:
            self._draws += 1
            return self._draws - 1

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._billed = 0
            self._draws = 0
        self.faults.clear()
        self.sign_urls = False

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the simulator stops first; True when it stopped."""
        return self.stop.wait(max(0.0, seconds)) if seconds > 0 else self.stop.is_set()


class ProviderApp:
    """Base of the provider simulators: routing to stages, answers, and the error shape."""

    provider = ""

    def __init__(self, state: ProviderState) -> None:
        self.state = state

    def stage(self, req: RecordedRequest, role: str) -> str | None:
        """The fault stage a request belongs to (None: unknown route)."""
        if req.method == "GET" and req.path.startswith("/files/"):
            return "download"
        return None

    def handle(self, req: RecordedRequest, stage: str | None, role: str) -> Reply | _Drop:
        """Answer a request that no generic fault intercepted."""
        raise NotImplementedError

    def error_reply(self, status: int, stage: str | None, message: str | None = None,
                    retry_after: float | None = None) -> Reply:
        """An error in the provider's own body shape."""
        raise NotImplementedError

    def wrong_shape(self, stage: str | None) -> Any:
        """A 200 body that parses as JSON but lacks keys the client needs."""
        return {"simulated": "wrong shape"}

    # shared helpers -------------------------------------------------------------------
    def serve_file(self, req: RecordedRequest) -> Reply:
        name = req.path.rsplit("/", 1)[-1]
        spec = self.state.file(name)
        if spec is None:
            return self.error_reply(404, "download", f"file {name} not found")
        data = render_image(spec.prompt, spec.seed, spec.width, spec.height, spec.fmt,
                            misspell=self.state.misspells(spec.model, spec.prompt, spec.seed))
        return Reply(200, data, {"Content-Type": mime_for(spec.fmt),
                                 "Cache-Control": "public, max-age=3600"})

    def fault_reply(self, fault: Fault, req: RecordedRequest, stage: str | None,
                    role: str) -> Reply | _Drop | None:
        """Apply a generic fault; None means 'serve normally' (a finished hang)."""
        kind = fault.kind
        if kind == "drop":
            return DROP
        if kind in ("processed_drop", "processed_hang", "truncated"):
            # The request is processed first (a create makes, and bills, its job); only the
            # answer is lost.
            real = self.handle(req, stage, role)
            if isinstance(real, _Drop) or kind == "processed_drop":
                return DROP
            if kind == "processed_hang":
                self.state.sleep(fault.delay or 0.0)
                return DROP
            real.truncate_at = max(1, len(real.body) // 2) if real.body else 0
            return real
        if kind == "hang":
            if self.state.sleep(fault.delay or 0.0):
                return DROP
            return None
        if fault.delay and self.state.sleep(fault.delay):
            return DROP
        if kind == "status" or kind == "expired":
            status = fault.status or (404 if kind == "expired" else 500)
            reply = self.error_reply(status, stage, None, fault.retry_after)
        elif kind == "gateway_html":
            status = fault.status or 502
            reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable",
                      504: "Gateway Time-out"}.get(status, "Error")
            reply = Reply(status, _NGINX_PAGE.format(status=status, reason=reason).encode(),
                          {"Content-Type": "text/html", "Server": "nginx"})
        elif kind == "wrong_shape":
            reply = Reply.json(200, self.wrong_shape(stage))
        else:  # malformed: the real answer, cut in half
            real = self.handle(req, stage, role)
            body = real.body if isinstance(real, Reply) else b'{"data": [1, 2'
            reply = Reply(200, body[: max(1, len(body) // 2)],
                          {"Content-Type": "application/json"})
        if fault.body is not None and kind != "malformed":
            reply.body = fault.body if isinstance(fault.body, bytes) else (
                fault.body.encode() if isinstance(fault.body, str) else json.dumps(fault.body).encode())
        if fault.retry_after is not None:
            reply.headers.setdefault("Retry-After", _fmt_seconds(fault.retry_after))
        reply.headers.update(fault.headers)
        return reply


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def new_request_id() -> str:
    return str(uuid.uuid4())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections give up after this
    server_version = "modelglass-simulator"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # The request line without its query: a signed URL's token is not logged here either.
        args = tuple(re.sub(r"\?[^\s\"]*", "", a) if isinstance(a, str) else a for a in args)
        logger.debug("simulator %s: " + format, self.server.app.provider, *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        app = self.server.app
        role = self.server.role
        body = self._read_body()
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        parsed: Any = None
        if body and "json" in headers.get("content-type", "json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        req = RecordedRequest(provider=app.provider, method=self.command, path=parts.path,
                              query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                              headers=headers, json=parsed, body=body, time=time.time())
        try:
            req.stage = app.stage(req, role)
            app.state.record(req)
            reply: Reply | _Drop | None = None
            fault = app.state.faults.take(req.stage, GENERIC_KINDS) if req.stage else None
            if fault is not None:
                req.fault = fault.kind
                reply = app.fault_reply(fault, req, req.stage, role)
            if reply is None:
                reply = app.handle(req, req.stage, role)
        except Exception:  # a simulator bug must look like a server error, not a hang
            logger.exception("simulator %s crashed on %s %s", app.provider, self.command,
                             parts.path)
            reply = Reply.json(500, {"error": "simulator internal error"})
        if isinstance(reply, _Drop):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            body = reply.body if reply.truncate_at is None else reply.body[:reply.truncate_at]
            self.wfile.write(body)
        if reply.truncate_at is not None:
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, app: ProviderApp, role: str, ssl_context: ssl.SSLContext | None) -> None:
        self.app = app
        self.role = role
        self.ssl_context = ssl_context
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock = request
        try:
            if self.ssl_context is not None:
                sock.settimeout(10)
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
            with self._conns_lock:
                self._conns.add(sock)
            self.RequestHandlerClass(sock, client_address, self)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError) as exc:
            logger.debug("simulator %s connection ended: %s", self.app.provider, exc)
        finally:
            with self._conns_lock:
                self._conns.discard(sock)
            if sock is not request:
                try:
                    sock.close()
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("simulator %s: error on connection from %s", self.app.provider,
                     client_address, exc_info=True)  # noqa: LOG014 - called inside except

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class _Running:
    server: _Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self.thread.join(timeout=5)


def start_server(app: ProviderApp, role: str,
                 ssl_context: ssl.SSLContext | None = None) -> _Running:
    """Start a listener for ``app`` on 127.0.0.1 (random port) in a daemon thread."""
    server = _Server(app, role, ssl_context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"modelglass-sim-{app.provider}-{role}", daemon=True)
    thread.start()
    return _Running(server, thread)
