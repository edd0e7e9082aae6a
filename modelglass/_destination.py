"""Where an image download may go, and the connection that enforces it.

- :func:`forbidden_address`: loopback, private, link-local, shared, multicast, reserved and
  cloud metadata addresses are refused (IPv4-mapped IPv6 included);
- :func:`check_destination` / :func:`acheck_destination`: the scheme (https only), local and
  metadata names, and every address the name *resolves* to, before connecting;
- :func:`make_client` / :func:`make_async_client`: httpx clients whose network backend checks
  the address each connection really reached (a name that re-resolves elsewhere is caught)
  before a byte is sent, and cuts every read and write to the current download's wall-clock
  deadline (:func:`guarded`), so a host that trickles bytes cannot hold a download open;
- :func:`trust_origin`: the one exception, for the loopback simulators.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from .errors import ProviderError

__all__ = [
    "Guard",
    "acheck_destination",
    "check_destination",
    "check_url",
    "forbidden_address",
    "guarded",
    "host_of",
    "make_async_client",
    "make_client",
    "origin",
    "peer_refused",
    "public_url",
    "redact_httpx_log",
    "refused",
    "trust_origin",
    "trusted_origins",
    "untrust_origin",
]


_trusted: set[tuple[str, int]] = set()
_trusted_lock = threading.Lock()
# Names that resolve to a cloud metadata service inside the cloud (and to nothing outside it).
_METADATA_NAMES = ("metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                   "metadata.azure.com")
_METADATA_IPS = {ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2",
                                                   "fd00:ec2::254", "100.100.100.200")}


def origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return host, port


def trust_origin(url: str) -> None:
    """Allow downloads from ``url``'s host and port although its address is loopback or private
    (and over plain http). Only the simulators call this (``modelglass.testing.simulate``)."""
    with _trusted_lock:
        _trusted.add(origin(url))


def trusted_origins() -> list[str]:
    """The origins :func:`trust_origin` allowed, as ``http://host:port`` (for processes that
    must trust them too: the Ray workers)."""
    with _trusted_lock:
        return [f"http://{host}:{port}" for host, port in sorted(_trusted)]


def untrust_origin(url: str) -> None:
    """Undo :func:`trust_origin`."""
    with _trusted_lock:
        _trusted.discard(origin(url))


#: Set by ``modelglass.testing.simulate()`` in ``sim.env``: the simulators' exact origins, so a
#: child process (a CLI, an app under test) trusts them too. Honoured only for loopback hosts.
SIM_ORIGINS_ENV = "MODELGLASS_SIM_ORIGINS"
_LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


def _env_trusted() -> set[tuple[str, int]]:
    out = set()
    for url in os.environ.get(SIM_ORIGINS_ENV, "").split():
        try:
            host, port = origin(url)
        except ValueError:
            continue
        if host.strip("[]") in _LOOPBACK_NAMES and urlsplit(url).port:  # exact loopback only
            out.add((host.strip("[]"), port))
    return out


def _is_trusted(host: str, port: int) -> bool:
    key = (host.lower().strip("[]"), port)
    with _trusted_lock:
        if key in _trusted or (host.lower(), port) in _trusted:
            return True
    return SIM_ORIGINS_ENV in os.environ and key in _env_trusted()


def forbidden_address(address: str) -> str | None:
    """Why an image may not be downloaded from IP ``address`` (None: it may). Loopback,
    private, link-local, shared (CGNAT), multicast, reserved, unspecified and cloud metadata
    addresses are refused, IPv4-mapped IPv6 included.

    >>> forbidden_address("169.254.169.254")
    'a cloud metadata address'
    >>> forbidden_address("93.184.215.14") is None
    True
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_IPS:
        return "a cloud metadata address"
    for test, what in ((ip.is_loopback, "a loopback address"),
                       (ip.is_link_local, "a link-local address"),
                       (ip.is_private, "a private address"),
                       (ip.is_multicast, "a multicast address"),
                       (ip.is_unspecified, "an unspecified address"),
                       (ip.is_reserved, "a reserved address")):
        if test:
            return what
    if not ip.is_global:
        return "not a public address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the seam tests replace)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def host_of(url: str) -> str:
    """The host (and port) of ``url`` — all an error message may show of it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


def public_url(url: str | None) -> str | None:
    """``url`` as it may be written down, shown or logged: without its query, fragment and
    credentials (a signed URL's token lives there); a ``data:`` URL as its header only.

    >>> public_url("https://bucket.s3.amazonaws.com/a.png?X-Amz-Signature=abc#x")
    'https://bucket.s3.amazonaws.com/a.png'
    """
    if url is None:
        return None
    if url.startswith("data:"):
        return url.split(",", 1)[0] + ",…"
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "?"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# Our downloads mark their context so the filter on httpx's logger redacts their log lines only.
_downloading: contextvars.ContextVar[bool] = contextvars.ContextVar("modelglass_downloading",
                                                                     default=False)


class _RedactOurDownloads(logging.Filter):
    """On the ``httpx`` logger: the ``HTTP Request: GET <url> …`` line of a modelglass image
    download loses the URL's query (a signed URL's token); other requests are left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _downloading.get() and isinstance(record.args, tuple):
            record.args = tuple(public_url(str(a)) if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


_redactor = _RedactOurDownloads()


def redact_httpx_log() -> None:
    """Install the filter on httpx's logger (once; idempotent)."""
    logger = logging.getLogger("httpx")
    if _redactor not in logger.filters:
        logger.addFilter(_redactor)


@contextlib.contextmanager
def downloading() -> Iterator[None]:
    """Mark the requests made inside as modelglass image downloads (see the filter above)."""
    redact_httpx_log()
    token = _downloading.set(True)
    try:
        yield
    finally:
        _downloading.reset(token)


def refused(url: str, why: str, provider: str | None) -> ProviderError:
    return ProviderError(f"refusing to download the image from {host_of(url)}: {why}; modelglass "
                         "downloads only https URLs on public hosts", provider=provider,
                         retryable=False)


def check_url(url: str, provider: str | None) -> tuple[str, int, bool]:
    """Scheme and name checks (no I/O); returns ``(host, port, trusted)``."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
        httpx.URL(url)  # what the client will parse; a URL it refuses is refused here, typed
    except (ValueError, httpx.InvalidURL):
        raise ProviderError(f"{provider or 'the provider'} gave a malformed image URL (or a "
                            "redirect to one)", provider=provider, retryable=False) from None
    if scheme not in ("http", "https") or not host:
        raise refused(url, f"a {scheme or 'relative'} URL is not a web address", provider)
    port = port or (443 if scheme == "https" else 80)
    trusted = _is_trusted(host, port)
    if trusted:
        return host, port, True
    if scheme != "https":
        raise refused(url, "plain http", provider)
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith((".localhost", ".internal", ".local")) \
            or name in _METADATA_NAMES:
        raise refused(url, f"{name} is a local or metadata name", provider)
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return host, port, False
    if (why := forbidden_address(name)) is not None:
        raise refused(url, why, provider)
    return host, port, False


def _check_resolved(url: str, addresses: Sequence[str], provider: str | None) -> None:
    if not addresses:
        raise refused(url, "its name resolves to no address", provider)
    for address in addresses:
        if (why := forbidden_address(address)) is not None:
            raise refused(url, f"its name resolves to {why} ({address})", provider)


def check_destination(url: str, provider: str | None) -> None:
    host, port, trusted = check_url(url, provider)
    if trusted:
        return
    try:
        ipaddress.ip_address(host.strip("[]"))
        return  # an IP literal was checked above
    except ValueError:
        pass
    try:
        addresses = _resolve(host, port)
    except OSError as exc:
        raise ProviderError(f"could not resolve the image host {host_of(url)} ({exc})",
                            provider=provider, retryable=False) from None
    _check_resolved(url, addresses, provider)


async def acheck_destination(url: str, provider: str | None) -> None:
    host, port, trusted = check_url(url, provider)
    if trusted:
        return
    try:
        ipaddress.ip_address(host.strip("[]"))
        return
    except ValueError:
        pass
    try:
        addresses = await asyncio.to_thread(_resolve, host, port)
    except OSError as exc:
        raise ProviderError(f"could not resolve the image host {host_of(url)} ({exc})",
                            provider=provider, retryable=False) from None
    _check_resolved(url, addresses, provider)


# -- the guarded connection: address checked on connect, every read bounded by the deadline ------
@dataclass
class Guard:
    deadline: float
    refused: str | None = None


_GUARD: contextvars.ContextVar[Guard | None] = contextvars.ContextVar("modelglass_download",
                                                                        default=None)


def _left(timeout: float | None) -> float | None:
    guard = _GUARD.get()
    if guard is None:
        return timeout
    left = guard.deadline - time.monotonic()
    if left <= 0:
        import httpcore

        raise httpcore.ReadTimeout("the download's deadline passed")
    return left if timeout is None else min(timeout, left)


def peer_refused(stream: Any, host: str | bytes, port: int) -> str | None:
    host_s = host.decode() if isinstance(host, bytes) else host
    if _is_trusted(host_s, port):
        return None
    peer = stream.get_extra_info("server_addr")
    if not peer:
        return None
    why = forbidden_address(str(peer[0]))
    return None if why is None else f"{host_s} connected to {why} ({peer[0]})"


class _Inner:
    """A guarded stream or backend: the httpcore one it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner


def _refused(stream: Any, host: str | bytes, port: int) -> str | None:
    """:func:`peer_refused`, the reason also left on the running download's guard."""
    why = peer_refused(stream, host, port)
    if why is not None and (guard := _GUARD.get()) is not None:
        guard.refused = why
    return why


@functools.cache
def _backends() -> tuple[type, type]:
    """The guarded httpcore network backends, sync and async, built once on first use."""
    return _sync_backend(), _async_backend()


def _sync_backend() -> type:
    import httpcore

    class GuardedStream(_Inner, httpcore.NetworkStream):
        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self.inner.read(max_bytes, _left(timeout))  # type: ignore[no-any-return]

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.inner.write(buffer, _left(timeout))

        def close(self) -> None:
            self.inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                      timeout: float | None = None) -> Any:
            return GuardedStream(self.inner.start_tls(ssl_context, server_hostname,
                                                      _left(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self.inner.get_extra_info(info)

    class GuardedBackend(_Inner, httpcore.NetworkBackend):
        def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                        local_address: str | None = None, socket_options: Any = None) -> Any:
            stream = self.inner.connect_tcp(host, port, _left(timeout), local_address,
                                            socket_options)
            if (why := _refused(stream, host, port)) is not None:
                stream.close()
                raise httpcore.ConnectError(f"refused: {why}")
            return GuardedStream(stream)

        def connect_unix_socket(self, *args: Any, **kw: Any) -> Any:
            raise httpcore.ConnectError("unix sockets are not used for downloads")

        def sleep(self, seconds: float) -> None:
            self.inner.sleep(seconds)

    return GuardedBackend


def _async_backend() -> type:
    import httpcore

    class AsyncGuardedStream(_Inner, httpcore.AsyncNetworkStream):
        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return await self.inner.read(max_bytes, _left(timeout))  # type: ignore[no-any-return]

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            await self.inner.write(buffer, _left(timeout))

        async def aclose(self) -> None:
            await self.inner.aclose()

        async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                            timeout: float | None = None) -> Any:
            return AsyncGuardedStream(await self.inner.start_tls(ssl_context, server_hostname,
                                                                 _left(timeout)))

        def get_extra_info(self, info: str) -> Any:
            return self.inner.get_extra_info(info)

    class AsyncGuardedBackend(_Inner, httpcore.AsyncNetworkBackend):
        async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                              local_address: str | None = None, socket_options: Any = None) -> Any:
            stream = await self.inner.connect_tcp(host, port, _left(timeout), local_address,
                                                  socket_options)
            if (why := _refused(stream, host, port)) is not None:
                await stream.aclose()
                raise httpcore.ConnectError(f"refused: {why}")
            return AsyncGuardedStream(stream)

        async def connect_unix_socket(self, *args: Any, **kw: Any) -> Any:
            raise httpcore.ConnectError("unix sockets are not used for downloads")

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    return AsyncGuardedBackend


def make_client(**kwargs: Any) -> httpx.Client:
    """The ``httpx.Client`` for image downloads: every connection's peer address is checked
    (:func:`forbidden_address`) before a byte is sent, and every read is cut to the current
    download's deadline. Redirects are left to :func:`fetch`."""
    transport = httpx.HTTPTransport()
    # httpx builds its httpcore pool without a network-backend argument; swapping the pool's
    # backend is the one place the connect and every read can be guarded.
    transport._pool._network_backend = _backends()[0](transport._pool._network_backend)
    return httpx.Client(transport=transport, follow_redirects=False, **kwargs)


def make_async_client(**kwargs: Any) -> httpx.AsyncClient:
    """The async twin of :func:`make_client`."""
    transport = httpx.AsyncHTTPTransport()
    transport._pool._network_backend = _backends()[1](transport._pool._network_backend)
    return httpx.AsyncClient(transport=transport, follow_redirects=False, **kwargs)


@contextlib.contextmanager
def guarded(guard: Guard) -> Iterator[Guard]:
    """Within this block (this thread / task), connections made by :func:`make_client` clients
    are bounded by ``guard.deadline``; a refused connection leaves its reason in
    ``guard.refused``."""
    token = _GUARD.set(guard)
    try:
        yield guard
    finally:
        _GUARD.reset(token)
