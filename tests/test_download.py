"""Downloads: where images may come from, how much, what they must be, and their size fate."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import struct
import threading
import zlib
from collections.abc import Iterator

import httpx
import pytest

import modelglass as mg
from modelglass import _destination as destination
from modelglass import _download as download
from modelglass._download import (
    Fetched,
    afetch,
    fetch,
    has_c2pa,
    size_fate,
    verify_bytes,
)
from modelglass.errors import EmptyResult, GenerationTimeout, ProviderError
from modelglass.providers.base import RawImage
from modelglass.result import Fate, FateKind
from modelglass.testing import render_image

PNG = render_image("a red bicycle", 7, 96, 64, "png")
JPEG = render_image("a red bicycle", 7, 96, 64, "jpeg")
WEBP = render_image("a red bicycle", 7, 96, 64, "webp")
SIGNED = "https://cdn.example.com/files/img.png?token=SECRET-SIGNATURE-123"


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


@pytest.fixture(autouse=True)
def _public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The made-up CDN hosts of these tests resolve to a public address (no DNS is used)."""
    monkeypatch.setattr(destination, "_resolve", lambda host, port: ["93.184.215.14"])


def _mock(handler) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(transport=httpx.MockTransport(handler))


def _serve(body: bytes, ctype: str = "image/png", status: int = 200) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": ctype})

    return _mock(handler)


# -- inline bytes and data: URLs -------------------------------------------------------------------
@pytest.mark.parametrize(("data", "mime"), [(PNG, "image/png"), (JPEG, "image/jpeg"),
                                            (WEBP, "image/webp")])
def test_inline_bytes_are_verified_and_described(data: bytes, mime: str) -> None:
    got = fetch(RawImage(data=data), client=_serve(b""), timeout_s=5)
    assert (got.mime, got.width, got.height) == (mime, 96, 64)
    assert got.data == data
    assert got.sha256 == hashlib.sha256(data).hexdigest()


def test_the_bytes_decide_the_mime_when_the_provider_claims_another() -> None:
    assert verify_bytes(JPEG, "image/png").mime == "image/jpeg"


def test_data_url_is_decoded_and_verified() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    got = fetch(RawImage(url=url), client=_serve(b""), timeout_s=5)
    assert got.data == PNG and got.width == 96


def test_data_url_with_garbage_is_refused() -> None:
    url = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    with pytest.raises(EmptyResult, match="not an image"):
        fetch(RawImage(url=url), client=_serve(b""), timeout_s=5, provider="openai")


def test_data_url_over_the_cap_is_refused_before_decoding() -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with pytest.raises(ProviderError, match="cap"):
        fetch(RawImage(url=url), client=_serve(b""), timeout_s=5, max_bytes=100)


def test_neither_bytes_nor_url_is_an_empty_result() -> None:
    with pytest.raises(EmptyResult, match="neither bytes nor a URL"):
        fetch(RawImage(), client=_serve(b""), timeout_s=5, provider="fal")


# -- where from ------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://cdn.example.com/a.png", "ftp://cdn.example.com/a.png",
                                 "file:///etc/passwd", "/relative/a.png"])
def test_only_https_is_downloaded_outside_loopback(url: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    with pytest.raises(ProviderError, match="only https") as info:
        fetch(RawImage(url=url), client=_mock(handler), timeout_s=5, provider="fal")
    assert info.value.retryable is False and info.value.provider == "fal"
    assert seen == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_is_refused_unless_trusted_explicitly(host: str) -> None:
    # Changed on purpose (issue 8, item 7): loopback is no longer allowed by default; only the
    # simulators' origins are trusted, explicitly.
    url = f"http://{host}:8080/files/a.png"
    with pytest.raises(ProviderError, match="only https"):
        fetch(RawImage(url=url), client=_serve(PNG), timeout_s=5)
    download.trust_origin(url)
    try:
        assert fetch(RawImage(url=url), client=_serve(PNG), timeout_s=5).width == 96
    finally:
        download.untrust_origin(url)


def test_a_redirect_to_plain_http_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://evil.example.net/a.png"})

    with pytest.raises(ProviderError, match="only https"):
        fetch(RawImage(url="https://cdn.example.com/a.png"), client=_mock(handler), timeout_s=5)


def test_https_redirects_are_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/a.png":
            return httpx.Response(302, headers={"location": "/b.png"})
        return httpx.Response(200, content=PNG, headers={"content-type": "image/png"})

    got = fetch(RawImage(url="https://cdn.example.com/a.png"), client=_mock(handler), timeout_s=5)
    assert got.data == PNG


def test_endless_redirects_stop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "https://cdn.example.com/again"})

    with pytest.raises(ProviderError, match="redirected more than"):
        fetch(RawImage(url="https://cdn.example.com/a.png"), client=_mock(handler), timeout_s=5)


# -- status ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [403, 404, 410])
def test_a_gone_url_says_the_image_url_expired(status: int) -> None:
    with pytest.raises(EmptyResult, match="image URL expired") as info:
        fetch(RawImage(url=SIGNED), client=_serve(b"gone", "text/plain", status), timeout_s=5,
              provider="replicate")
    assert info.value.status == status and info.value.retryable is False
    assert "cdn.example.com" in str(info.value)


def test_errors_name_the_host_but_never_the_query_or_path() -> None:
    for client in (_serve(b"x", "text/plain", 404), _serve(b"x", "text/plain", 500),
                   _serve(b"<html>", "text/html"), _serve(b"garbage", "image/png")):
        with pytest.raises(ProviderError) as info:
            fetch(RawImage(url=SIGNED), client=client, timeout_s=5)
        text = str(info.value)
        assert "cdn.example.com" in text
        assert "SECRET" not in text and "token" not in text and "img.png" not in text


def test_server_error_is_a_non_retryable_provider_error() -> None:
    with pytest.raises(ProviderError, match="HTTP 502") as info:
        fetch(RawImage(url=SIGNED), client=_serve(b"bad gateway", "text/html", 502), timeout_s=5)
    assert info.value.status == 502 and info.value.retryable is False


# -- what ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/json", "image/gif"])
def test_a_wrong_content_type_is_refused(ctype: str) -> None:
    with pytest.raises(EmptyResult, match="not an image"):
        fetch(RawImage(url=SIGNED), client=_serve(PNG, ctype), timeout_s=5)


def test_generic_binary_content_type_lets_the_bytes_decide() -> None:
    got = fetch(RawImage(url=SIGNED), client=_serve(WEBP, "application/octet-stream"), timeout_s=5)
    assert got.mime == "image/webp"


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, PNG[: len(PNG) // 2],
                                  b"GIF89a" + b"\x00" * 32, b"hello world"])
def test_corrupt_or_unsupported_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(EmptyResult, match="unusable"):
        verify_bytes(data, "image/png", provider="fal")


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(EmptyResult, match="empty"):
        verify_bytes(b"")


def test_a_png_with_a_broken_crc_is_refused() -> None:
    broken = bytearray(PNG)
    broken[-20] ^= 0xFF  # inside the last IDAT or its CRC
    with pytest.raises(EmptyResult):
        verify_bytes(bytes(broken))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(EmptyResult, match="decompression-bomb guard"):
        verify_bytes(_png_header_only(9000, 9000))


def test_pillows_own_bomb_error_is_caught_too() -> None:
    with pytest.raises(EmptyResult, match="decompression-bomb guard"):
        verify_bytes(_png_header_only(20000, 20000), max_pixels=10**12)


def test_pixel_cap_is_configurable() -> None:
    with pytest.raises(EmptyResult, match="MP cap"):
        verify_bytes(PNG, max_pixels=96 * 64 - 1)
    assert verify_bytes(PNG, max_pixels=96 * 64).width == 96


# -- how much --------------------------------------------------------------------------------------
def test_content_length_over_the_cap_is_refused_before_reading() -> None:
    read = []

    def stream() -> Iterator[bytes]:
        read.append(True)
        yield PNG

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream(),
                              headers={"content-type": "image/png", "content-length": "999999"})

    with pytest.raises(ProviderError, match="cap"):
        fetch(RawImage(url=SIGNED), client=_mock(handler), timeout_s=5, max_bytes=1000)
    assert read == []


def test_streamed_bytes_over_the_cap_stop_the_download() -> None:
    sent = []

    def stream() -> Iterator[bytes]:
        for _ in range(100):
            sent.append(1)
            yield b"\x00" * 1000

    def handler(request: httpx.Request) -> httpx.Response:  # no Content-Length: chunked
        return httpx.Response(200, content=stream(), headers={"content-type": "image/png"})

    with pytest.raises(ProviderError, match="cap"):
        fetch(RawImage(url=SIGNED), client=_mock(handler), timeout_s=5, max_bytes=5000)
    assert len(sent) < 100


def test_a_transport_timeout_is_a_generation_timeout_naming_the_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(GenerationTimeout, match="cdn.example.com") as info:
        fetch(RawImage(url=SIGNED), client=_mock(handler), timeout_s=0.5)
    assert info.value.retryable is False


def test_a_dropped_connection_is_a_provider_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed", request=request)

    with pytest.raises(ProviderError, match="RemoteProtocolError"):
        fetch(RawImage(url=SIGNED), client=_mock(handler), timeout_s=5)


# -- a real loopback server ------------------------------------------------------------------------
@pytest.fixture
def loopback() -> Iterator[tuple[str, dict[str, tuple[int, str, bytes]]]]:
    routes: dict[str, tuple[int, str, bytes]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, ctype, body = routes.get(self.path, (404, "text/plain", b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    download.trust_origin(base)
    try:
        yield base, routes
    finally:
        download.untrust_origin(base)
        server.shutdown()
        server.server_close()


def test_download_from_a_loopback_server(loopback) -> None:  # type: ignore[no-untyped-def]
    base, routes = loopback
    routes["/a.jpg"] = (200, "image/jpeg", JPEG)
    with httpx.Client() as client:
        got = fetch(RawImage(url=base + "/a.jpg"), client=client, timeout_s=5)
        assert (got.mime, got.sha256) == ("image/jpeg", hashlib.sha256(JPEG).hexdigest())
        with pytest.raises(EmptyResult, match="expired"):
            fetch(RawImage(url=base + "/gone.png"), client=client, timeout_s=5)


async def test_async_download_from_a_loopback_server(loopback) -> None:  # type: ignore[no-untyped-def]
    base, routes = loopback
    routes["/a.webp"] = (200, "image/webp", WEBP)
    routes["/big.png"] = (200, "image/png", PNG)
    async with httpx.AsyncClient() as client:
        got = await afetch(RawImage(url=base + "/a.webp"), client=client, timeout_s=5)
        assert (got.mime, got.width, got.height) == ("image/webp", 96, 64)
        with pytest.raises(ProviderError, match="cap"):
            await afetch(RawImage(url=base + "/big.png"), client=client, timeout_s=5,
                         max_bytes=100)
        with pytest.raises(EmptyResult, match="expired"):
            await afetch(RawImage(url=base + "/gone.png"), client=client, timeout_s=5)


async def test_async_twin_applies_the_same_rules() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>", headers={"content-type": "text/html"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ProviderError, match="only https"):
            await afetch(RawImage(url="http://cdn.example.com/a.png"), client=client, timeout_s=5)
        with pytest.raises(EmptyResult, match="not an image"):
            await afetch(RawImage(url=SIGNED), client=client, timeout_s=5)
        got = await afetch(RawImage(data=PNG), client=client, timeout_s=5)
        assert got.width == 96


# -- size fate -------------------------------------------------------------------------------------
def test_size_fate_is_none_when_the_image_is_the_planned_size() -> None:
    assert size_fate(verify_bytes(PNG), 96, 64, None) is None


def test_a_size_mismatch_becomes_an_approximated_fate_keeping_the_request() -> None:
    prior = Fate("size", FateKind.honored, "3:2", "1536x1024", "")
    fetched = Fetched(b"", "image/png", 1024, 1024, "")
    fate = size_fate(fetched, 1536, 1024, prior)
    assert fate is not None
    assert fate.kind is FateKind.approximated
    assert fate.requested == "3:2" and fate.applied == "1024x1024"
    assert fate.delta == "got 1024x1024, planned 1536x1024"
    assert size_fate(fetched, 1536, 1024, None).requested == "1536x1024"  # type: ignore[union-attr]


# -- C2PA ------------------------------------------------------------------------------------------
def test_c2pa_is_found_in_a_png_cabx_chunk() -> None:
    assert not has_c2pa(PNG)
    with_c2pa = PNG[:33] + _chunk(b"caBX", b"\x00\x00\x00\x10jumb c2pa manifest") + PNG[33:]
    assert has_c2pa(with_c2pa)
    assert verify_bytes(with_c2pa).width == 96


def test_c2pa_is_found_in_a_jpeg_app11_jumbf_segment() -> None:
    assert not has_c2pa(JPEG)
    body = b"JP" + b"\x00\x01" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x20jumb\x00\x00\x00\x10jumdc2pa"
    seg = b"\xff\xeb" + struct.pack(">H", len(body) + 2) + body
    assert has_c2pa(JPEG[:2] + seg + JPEG[2:])
    other = b"\xff\xeb" + struct.pack(">H", 8) + b"XXXXXX"
    assert not has_c2pa(JPEG[:2] + other + JPEG[2:])


def test_c2pa_is_found_in_a_webp_chunk() -> None:
    assert not has_c2pa(WEBP)
    payload = b"jumbc2pa"
    chunk = b"C2PA" + struct.pack("<I", len(payload)) + payload
    riff = WEBP[12:] + chunk
    assert has_c2pa(b"RIFF" + struct.pack("<I", len(riff) + 4) + b"WEBP" + riff)


def test_c2pa_check_is_quiet_on_non_images() -> None:
    assert not has_c2pa(b"") and not has_c2pa(b"hello") and not has_c2pa(io.BytesIO().getvalue())


# -- issue 8, item 5: paid images are returned or named; errors carry the URL ----------------------

def test_download_errors_carry_the_url_without_showing_it() -> None:
    with pytest.raises(EmptyResult) as info:
        fetch(RawImage(url=SIGNED), client=_serve(b"gone", "text/plain", 404), timeout_s=5)
    # The URL without its signed query (issue 16: no token at rest, in errors or logs).
    assert info.value.url == SIGNED.split("?")[0]  # type: ignore[attr-defined]
    assert "SECRET-SIGNATURE" not in str(info.value) and "SECRET" not in repr(info.value)


def test_download_failed_names_the_paid_call_and_keeps_what_was_fetched() -> None:
    from modelglass._download import download_failed
    from modelglass.errors import DownloadFailed

    good = verify_bytes(PNG)
    raws = [RawImage(url=f"https://cdn.example.com/{i}.png?sig=S{i}") for i in range(3)]
    gone = EmptyResult("the image URL expired: cdn.example.com answered HTTP 404", provider="fal",
                       status=404)
    err = download_failed([good, gone, good], raws, provider="fal", request_id="req-123",
                          cost_usd=0.075)
    assert isinstance(err, DownloadFailed) and not err.retryable
    assert (err.request_id, err.cost_usd, err.index, err.url) == (
        "req-123", 0.075, 1, "https://cdn.example.com/1.png")  # no signed query
    assert [i for i, _ in err.fetched] == [0, 2] and err.fetched[0][1] is good
    assert err.reason is gone and err.status == 404
    assert "req-123" in str(err) and "$0.0750" in str(err) and "sig=S1" not in str(err)
    assert download_failed([good], raws[:1], provider="fal") is None


def test_a_failed_download_in_a_chunk_keeps_the_chunks_other_paid_images() -> None:
    from modelglass.providers.fal import FalProvider
    from modelglass.testing import simulate

    budget = mg.Budget(5.0)
    with simulate() as sim, mg.Client(observed=False, budget=budget,
                                      providers={"fal": FalProvider(poll_interval_s=0.01)}) as c:
        sim.fail("fal", kind="expired", at="download", times=1)
        result = c.generate("a red bicycle", model="flux-dev", provider="fal", n=6)
        assert sim.billed("fal") == 2  # two calls (4 + 2 images), both paid
    assert len(result.images) == 5
    assert result.cost_usd == pytest.approx(budget.spent)


# -- issue 8, item 6: the job's deadline covers the download ----------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hanging_image_host_ends_at_the_jobs_deadline(mode: str) -> None:
    import asyncio
    import time

    from modelglass.providers.fal import FalProvider
    from modelglass.testing import simulate

    with simulate() as sim:
        sim.fail("fal", kind="hang", at="download", delay=30)
        t0 = time.monotonic()
        with pytest.raises(GenerationTimeout):
            if mode == "sync":
                with mg.Client(observed=False,
                               providers={"fal": FalProvider(poll_interval_s=0.01)}) as c:
                    c.generate("a red bicycle", model="flux-dev", provider="fal", deadline_s=2)
            else:
                async def go() -> None:
                    async with mg.AsyncClient(
                            observed=False,
                            providers={"fal": FalProvider(poll_interval_s=0.01)}) as c:
                        await c.generate("a red bicycle", model="flux-dev", provider="fal",
                                         deadline_s=2)
                asyncio.run(go())
        assert time.monotonic() - t0 < 2.6
