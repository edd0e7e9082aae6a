"""Hostile image hosts (issue 8, items 6, 7 and 8), on loopback only.

Each test starts a tiny raw-socket server on 127.0.0.1 that misbehaves on purpose: it trickles
bytes, redirects into loopback, private or metadata ranges, cuts its body short, sends a gzip
bomb, a malformed ``Location``, or half an image. The server's origin is trusted explicitly
(as the simulators are); every other loopback or private address must be refused.
"""

from __future__ import annotations

import asyncio
import gzip
import resource
import socket
import socketserver
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest

from modelglass import _destination as destination
from modelglass._download import afetch, fetch, make_async_client, make_client
from modelglass.errors import EmptyResult, GenerationTimeout, ModelglassError, ProviderError
from modelglass.providers.base import RawImage
from modelglass.testing import render_image

JPEG = render_image("a red bicycle", 7, 256, 192, "jpeg")
WEBP = render_image("a red bicycle", 7, 256, 192, "webp")
PNG = render_image("a red bicycle", 7, 256, 192, "png")

Handler = Callable[[socket.socket, bytes], None]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], str]]:
    """Start servers that answer every request with ``handler(conn, request_head)``; their
    origins are trusted like the simulators'. All are shut down after the test."""
    servers: list[tuple[_Server, str]] = []

    def start(handler: Handler) -> str:
        class H(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                head = b""
                self.request.settimeout(10)
                try:
                    while b"\r\n\r\n" not in head:
                        part = self.request.recv(4096)
                        if not part:
                            return
                        head += part
                    handler(self.request, head)
                except OSError:
                    pass

        server = _Server(("127.0.0.1", 0), H)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        destination.trust_origin(base)
        servers.append((server, base))
        return base

    yield start
    for server, base in servers:
        destination.untrust_origin(base)
        server.shutdown()
        server.server_close()


def reply(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode() + body


def image(body: bytes, ctype: str = "image/jpeg", **extra: str) -> Handler:
    def handler(conn: socket.socket, head: bytes) -> None:
        conn.sendall(reply("200 OK", {"Content-Type": ctype, "Content-Length": str(len(body)),
                                      "Connection": "close", **extra}, body))
    return handler


async def afetch_with_new_client(url: str, **kw: object) -> object:
    async with make_async_client() as client:
        return await afetch(RawImage(url=url), client=client, **kw)  # type: ignore[arg-type]


def fetch_sync(url: str, **kw: object) -> object:
    with make_client() as client:
        return fetch(RawImage(url=url), client=client, **kw)  # type: ignore[arg-type]


def fetch_async(url: str, **kw: object) -> object:
    return asyncio.run(afetch_with_new_client(url, **kw))


MODES = {"sync": fetch_sync, "async": fetch_async}


# -- item 6: a wall-clock bound, whatever the host does ----------------------------------------------

def trickle(prefix_only: bool) -> Handler:
    """One byte every 0.1 s: of the status line itself, or of the body after full headers."""
    def handler(conn: socket.socket, head: bytes) -> None:
        headers = reply("200 OK", {"Content-Type": "image/jpeg",
                                   "Content-Length": str(len(JPEG))})
        data = headers + JPEG if prefix_only else JPEG
        if not prefix_only:
            conn.sendall(headers)
        for b in data:
            conn.sendall(bytes([b]))
            time.sleep(0.1)
    return handler


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_host_ends_at_the_deadline(hostile, mode: str, where: str) -> None:  # type: ignore[no-untyped-def]
    base = hostile(trickle(prefix_only=where == "headers"))
    t0 = time.monotonic()
    with pytest.raises(GenerationTimeout, match="took more than 1.5 s"):
        MODES[mode](base + "/a.jpg", timeout_s=1.5)
    elapsed = time.monotonic() - t0
    # Ends at the 1.5 s deadline, not when the trickle would (len(JPEG) x 0.1 s, minutes);
    # the upper bound leaves room for a loaded CI machine.
    assert 1.4 < elapsed < 3.5, elapsed


# -- item 7: where a download may go ------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://10.0.0.5/a.png", "https://192.168.1.1/a.png", "https://172.16.3.4/a.png",
    "https://169.254.169.254/latest/meta-data/", "https://100.64.0.1/a.png",
    "https://[fe80::1]/a.png", "https://[::ffff:127.0.0.1]/a.png", "https://127.0.0.1:2375/x",
    "https://0.0.0.0/a.png", "https://metadata.google.internal/computeMetadata/v1/",
    "https://localhost/a.png", "http://cdn.example.com/a.png", "ftp://cdn.example.com/a.png",
])
@pytest.mark.parametrize("mode", MODES)
def test_private_loopback_metadata_and_plain_http_are_refused_before_connecting(
        mode: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(destination, "_resolve", lambda host, port: ["93.184.215.14"])
    with pytest.raises(ProviderError, match="refusing to download") as info:
        MODES[mode](url, timeout_s=2)
    assert not info.value.retryable


@pytest.mark.parametrize("address", ["10.1.2.3", "169.254.169.254", "127.0.0.1", "::1",
                                     "fd00:ec2::254", "192.168.0.7"])
def test_a_name_resolving_to_a_forbidden_address_is_refused(
        address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(destination, "_resolve", lambda host, port: ["93.184.215.14", address])
    with pytest.raises(ProviderError, match="resolves to"):
        fetch_sync("https://images.example.com/a.png", timeout_s=2)


@pytest.mark.parametrize("mode", MODES)
def test_a_name_that_re_resolves_to_loopback_is_caught_on_the_connected_address(
        hostile, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # The pre-check sees a public address; the connection really goes to loopback (a DNS
    # rebinding): the guarded client refuses it before a byte is sent.
    seen: list[bytes] = []

    def record(conn: socket.socket, head: bytes) -> None:
        seen.append(head)
        image(JPEG)(conn, head)

    port = int(hostile(record).rsplit(":", 1)[1])
    real = socket.getaddrinfo
    monkeypatch.setattr(destination, "_resolve", lambda host, p: ["93.184.215.14"])

    def rebinding(host: str | bytes, *a: object, **k: object) -> object:
        name = host.decode() if isinstance(host, bytes) else host
        return real("127.0.0.1" if name == "rebind.example.com" else host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(ProviderError, match="loopback"):
        MODES[mode](f"https://rebind.example.com:{port}/a.jpg", timeout_s=3)
    assert seen == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["http://127.0.0.1:2375/containers/json",
                                    "https://169.254.169.254/latest/meta-data/",
                                    "https://10.0.0.1/a.png", "http://192.168.1.1/a.png"])
def test_redirects_into_loopback_or_private_ranges_are_refused(hostile, mode: str,  # type: ignore[no-untyped-def]
                                                               target: str) -> None:
    base = hostile(lambda conn, head: conn.sendall(reply("302 Found", {
        "Location": target, "Content-Length": "0", "Connection": "close"})))
    with pytest.raises(ProviderError, match="refusing to download"):
        MODES[mode](base + "/a.jpg", timeout_s=3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("location", ["https://[::1", "http://[not-an-ip]/x", "", "   ",
                                      "https://exa mple.com/a.png\x00"])
def test_a_malformed_location_is_a_typed_error(hostile, mode: str, location: str) -> None:  # type: ignore[no-untyped-def]
    base = hostile(lambda conn, head: conn.sendall(reply("302 Found", {
        "Location": location, "Content-Length": "0", "Connection": "close"})))
    with pytest.raises(ModelglassError) as info:
        MODES[mode](base + "/a.jpg", timeout_s=3)
    assert isinstance(info.value, ProviderError) and not info.value.retryable


def test_the_simulator_origin_is_the_only_loopback_allowed(hostile) -> None:  # type: ignore[no-untyped-def]
    base = hostile(image(JPEG))
    assert fetch_sync(base + "/a.jpg", timeout_s=3).width == 256  # type: ignore[attr-defined]
    other = base.rsplit(":", 1)[0] + ":1"
    with pytest.raises(ProviderError, match="refusing"):
        fetch_sync(other + "/a.jpg", timeout_s=3)


# -- truncation and half images (item 8) --------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_body_cut_short_is_a_typed_error(hostile, mode: str) -> None:  # type: ignore[no-untyped-def]
    def cut(conn: socket.socket, head: bytes) -> None:
        conn.sendall(reply("200 OK", {"Content-Type": "image/jpeg",
                                      "Content-Length": str(len(JPEG))}, JPEG[: len(JPEG) // 2]))
        conn.shutdown(socket.SHUT_RDWR)

    base = hostile(cut)
    with pytest.raises(ProviderError, match="failed"):
        MODES[mode](base + "/a.jpg", timeout_s=3)


def _short_idat_png() -> bytes:
    """A PNG whose chunks are all well-formed (CRCs right) but whose IDAT holds only half of
    the compressed pixels."""
    pos, out = 8, [PNG[:8]]
    while pos < len(PNG):
        length = int.from_bytes(PNG[pos:pos + 4], "big")
        ctype, body = PNG[pos + 4:pos + 8], PNG[pos + 8:pos + 8 + length]
        if ctype == b"IDAT":
            body = body[: len(body) // 2]
        out.append(struct.pack(">I", len(body)) + ctype + body
                   + struct.pack(">I", zlib.crc32(ctype + body)))
        pos += 12 + length
    return b"".join(out)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("body", "ctype"), [
    (JPEG[: len(JPEG) // 2], "image/jpeg"), (WEBP[: len(WEBP) // 2], "image/webp"),
    (_short_idat_png(), "image/png")], ids=["half-jpeg", "half-webp", "short-idat-png"])
def test_half_images_fail_typed_after_a_full_decode(hostile, mode: str, body: bytes,  # type: ignore[no-untyped-def]
                                                    ctype: str) -> None:
    base = hostile(image(body, ctype))
    with pytest.raises(EmptyResult, match="corrupt"):
        MODES[mode](base + "/a", timeout_s=3)


# -- the decompressed-size bound (item 8) -----------------------------------------------------------

@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """About 1 MB of gzip that inflates to 1 GiB of zeros."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (16 << 20)
    parts = [comp.compress(block) for _ in range(64)]
    parts.append(comp.flush())
    return b"".join(parts)


@pytest.mark.parametrize("mode", MODES)
def test_a_gzip_bomb_stops_at_max_bytes_without_blowing_memory(hostile, mode: str,  # type: ignore[no-untyped-def]
                                                               gzip_bomb: bytes) -> None:
    assert len(gzip_bomb) < 1_100_000
    base = hostile(image(gzip_bomb, "image/png", **{"Content-Encoding": "gzip"}))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError, match="over the 4.0 MiB cap"):
            MODES[mode](base + "/bomb.png", timeout_s=10, max_bytes=4 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rss_growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert peak < 32 << 20, f"peak Python allocations {peak / 2**20:.0f} MiB"
    assert rss_growth_mib < 64, f"peak RSS grew by {rss_growth_mib:.0f} MiB"


@pytest.mark.parametrize("mode", MODES)
def test_a_gzip_encoded_image_under_the_cap_is_decoded(hostile, mode: str) -> None:  # type: ignore[no-untyped-def]
    base = hostile(image(gzip.compress(PNG), "image/png", **{"Content-Encoding": "gzip"}))
    got = MODES[mode](base + "/a.png", timeout_s=3)
    assert got.data == PNG  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_content_encoding_is_refused(hostile, mode: str) -> None:  # type: ignore[no-untyped-def]
    base = hostile(image(b"xxxx", "image/png", **{"Content-Encoding": "br"}))
    with pytest.raises(ProviderError, match="Content-Encoding 'br'"):
        MODES[mode](base + "/a.png", timeout_s=3)
