"""Download and verify the images a provider delivered: bytes you can trust, or a clear error.

Every image goes through the same checks, whether the provider sent bytes inline (OpenAI
``b64_json``, local pipelines), as a ``data:`` URL, or as a link to download:

- **where**: ``https`` only; plain ``http`` only for loopback hosts (the simulators). Redirects
  are followed by hand, a few at most, each hop checked against the same rule.
- **how much**: a size cap, checked against ``Content-Length`` before reading and against the
  bytes actually streamed; an explicit timeout for the whole download.
- **what**: the content type must be an image type we accept (PNG, JPEG, WebP); the bytes must
  open with Pillow, pass ``verify()``, and stay under a pixel cap (the decompression-bomb guard).
- **which**: the sha256 of the bytes, as delivered.

Errors are :class:`~modelglass.errors.ProviderError` subclasses with ``retryable=False``: the
provider was paid and answered; only the image could not be had. Messages name the host only,
never the path or query of a URL (signed URLs carry tokens there).

The sync and async downloads share one I/O-free state machine, :class:`_Download`; they differ
only where they wait.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import logging
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import httpx

from .errors import EmptyResult, GenerationTimeout, ProviderError
from .result import Fate, FateKind

if TYPE_CHECKING:
    from .providers.base import RawImage

log = logging.getLogger("modelglass")

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "Fetched",
    "afetch",
    "fetch",
    "has_c2pa",
    "size_fate",
    "verify_bytes",
]

#: Largest image file accepted, in bytes (64 MiB).
DEFAULT_MAX_BYTES = 64 << 20
#: Largest image accepted, in pixels (8192 x 8192 ≈ 67 MP): the decompression-bomb guard.
DEFAULT_MAX_PIXELS = 8192 * 8192

_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_ACCEPTED_TYPES = {"image/png": "image/png", "image/jpeg": "image/jpeg",
                   "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
                   "image/webp": "image/webp"}
# Some storage buckets serve images as generic binary; for those the bytes decide.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
_MAX_REDIRECTS = 5
_EXPIRED = {403, 404, 410}
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    """Verified image bytes: their real type and size (read from the bytes, not claimed)."""

    data: bytes
    mime: str
    width: int
    height: int
    sha256: str


# -- verification (pure) --------------------------------------------------------------------------
def verify_bytes(data: bytes, mime_hint: str | None = None, *, provider: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "the image") -> Fetched:
    """Check that ``data`` is a PNG, JPEG or WebP image Pillow can read, and describe it.

    ``mime_hint`` is what the provider claimed; the bytes win when they disagree (logged).
    Raises :class:`~modelglass.errors.EmptyResult` for empty, corrupt or unsupported bytes and
    for images over ``max_pixels``.

    >>> from modelglass.testing import render_image
    >>> verify_bytes(render_image("a cat", 1, 64, 32)).width
    64
    """
    from PIL import Image, UnidentifiedImageError

    def bad(problem: str) -> EmptyResult:
        return EmptyResult(f"{source} from {provider or 'the provider'} is unusable: {problem}",
                           provider=provider, retryable=False)

    if not data:
        raise bad("it is empty (0 bytes)")
    # Pillow's own bomb check is a warning below its hard limit; make it an error here, and apply
    # our (lower, configurable) cap before any pixel is decoded.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or ""
                width, height = im.size
                if fmt not in _FORMATS:
                    raise bad(f"it is {fmt or 'an unknown format'}, not PNG, JPEG or WebP")
                if width * height > max_pixels:
                    raise bad(f"{width}x{height} is {width * height / 1e6:.0f} MP, over the "
                              f"{max_pixels / 1e6:.0f} MP cap (decompression-bomb guard)")
                im.verify()  # the size was read from the header above; verify checks the rest
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise bad(f"decompression-bomb guard: {exc}") from None
        except UnidentifiedImageError:
            raise bad(f"{len(data)} bytes that are not an image Pillow can read "
                      f"(starts with {data[:8]!r})") from None
        except EmptyResult:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise bad(f"corrupt {fmt or 'image'} data ({exc})") from None
    mime = _FORMATS[fmt]
    hint = _ACCEPTED_TYPES.get((mime_hint or "").split(";")[0].strip().lower())
    if mime_hint and hint != mime:
        log.debug("%s said %s but the bytes are %s; using %s", provider or "provider",
                  mime_hint, mime, mime)
    return Fetched(data=data, mime=mime, width=width, height=height,
                   sha256=hashlib.sha256(data).hexdigest())


def size_fate(fetched: Fetched, planned_w: int, planned_h: int,
              prior: Fate | None) -> Fate | None:
    """An ``approximated`` size fate when the image is not the planned size, else None.

    ``prior`` is the plan's size fate: its ``requested`` value is kept, so the fate still says
    what the user asked for.

    >>> f = Fetched(b"", "image/png", 1024, 1024, "")
    >>> size_fate(f, 1536, 1024, None).delta
    'got 1024x1024, planned 1536x1024'
    """
    if (fetched.width, fetched.height) == (planned_w, planned_h):
        return None
    got, planned = f"{fetched.width}x{fetched.height}", f"{planned_w}x{planned_h}"
    reason = f"the provider returned {got} instead of the planned {planned}"
    if prior is not None and prior.reason:
        reason = f"{reason}; plan: {prior.reason}"
    return Fate("size", FateKind.approximated,
                requested=prior.requested if prior is not None else planned,
                applied=got, reason=reason, delta=f"got {got}, planned {planned}")


# -- C2PA ------------------------------------------------------------------------------------------
def has_c2pa(data: bytes) -> bool:
    """True when the image carries a C2PA manifest (content credentials) in its JUMBF store.

    Looks where the C2PA spec puts it: a PNG ``caBX`` chunk, a JPEG APP11 segment holding a
    JUMBF box labelled ``c2pa``, or a WebP ``C2PA`` chunk. Nothing is validated here; the point
    is to know that the bytes must not be rewritten.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return any(ctype == b"caBX" for ctype, _, _ in png_chunks(data))
    if data.startswith(b"\xff\xd8"):
        return _jpeg_has_c2pa(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_has_c2pa(data)
    return False


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """``(type, start, end)`` of every chunk in a PNG, ``start``/``end`` spanning the whole chunk
    (length, type, body, CRC). Stops quietly at a truncated chunk."""
    chunks = []
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        ctype = data[pos + 4:pos + 8]
        chunks.append((ctype, pos, end))
        pos = end
        if ctype == b"IEND":
            break
    return chunks


def _jpeg_has_c2pa(data: bytes) -> bool:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no more metadata
            return False
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        body = data[pos + 4:pos + 2 + length]
        # APP11 carries JUMBF as "JP" + instance + sequence + the box ("jumb" ... "c2pa").
        if marker == 0xEB and body[:2] == b"JP" and b"jumb" in body and b"c2pa" in body:
            return True
        pos += 2 + length
    return False


def _webp_has_c2pa(data: bytes) -> bool:
    pos = 12
    while pos + 8 <= len(data):
        ctype = data[pos:pos + 4]
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if ctype == b"C2PA":
            return True
        pos += 8 + size + (size & 1)
    return False


# -- URLs ------------------------------------------------------------------------------------------
def _host(url: str) -> str:
    """The host (and port) of ``url`` — all an error message may show of it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(url: str, provider: str | None) -> None:
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        raise EmptyResult(f"{provider or 'the provider'} gave a malformed image URL",
                          provider=provider, retryable=False) from None
    if scheme == "https" and host:
        return
    if scheme == "http" and _is_loopback(host):
        return  # the loopback simulators speak plain http
    what = f"{scheme}://{host or ''}" if scheme in ("http", "https") else f"a {scheme or 'relative'} URL"
    raise ProviderError(f"refusing to download the image from {what}: only https URLs are "
                        "downloaded (plain http only from loopback hosts)",
                        provider=provider, retryable=False)


def _data_url(url: str, raw: RawImage, provider: str | None, max_bytes: int,
              max_pixels: int) -> Fetched:
    from .providers._common import decode_data_uri

    # base64 inflates by 4/3: refuse before decoding what is clearly too big.
    if len(url) * 3 // 4 > max_bytes + 1024:
        raise _too_big(provider, "a data: URL", len(url) * 3 // 4, max_bytes)
    try:
        data, mime = decode_data_uri(url)
    except ValueError as exc:
        raise EmptyResult(f"{provider or 'the provider'} sent a malformed data: URL ({exc})",
                          provider=provider, retryable=False) from None
    if len(data) > max_bytes:
        raise _too_big(provider, "a data: URL", len(data), max_bytes)
    _check_type(mime, provider, "a data: URL")
    return verify_bytes(data, mime or raw.mime, provider=provider, max_pixels=max_pixels,
                        source="the image in a data: URL")


def _too_big(provider: str | None, where: str, size: int, max_bytes: int) -> ProviderError:
    return ProviderError(f"the image from {where} is {size / 2**20:.1f} MiB, over the "
                         f"{max_bytes / 2**20:.1f} MiB cap (max_bytes)",
                         provider=provider, retryable=False)


def _check_type(content_type: str | None, provider: str | None, where: str) -> None:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _ACCEPTED_TYPES or ctype in _GENERIC_TYPES:
        return
    raise EmptyResult(f"{where} answered with {ctype!r}, not an image (expected image/png, "
                      "image/jpeg or image/webp)", provider=provider, retryable=False)


# -- the download, without I/O ----------------------------------------------------------------------
class _Download:
    """What one download decides, fed by whichever loop does the waiting."""

    def __init__(self, raw: RawImage, *, provider: str | None, timeout_s: float,
                 max_bytes: int, max_pixels: int) -> None:
        self.raw = raw
        self.url = raw.url or ""
        self.provider = provider
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.deadline = time.monotonic() + timeout_s
        self.redirects = 0
        self.buf = bytearray()
        self.content_type: str | None = None
        _check_url(self.url, provider)

    @property
    def where(self) -> str:
        return f"the image URL on {_host(self.url)}"

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(max(0.001, self.deadline - time.monotonic()))

    def on_response(self, resp: httpx.Response) -> str | None:
        """Check status and headers; return the next URL for a redirect, None to read the body."""
        if resp.is_redirect and "location" in resp.headers:
            self.redirects += 1
            if self.redirects > _MAX_REDIRECTS:
                raise ProviderError(f"{self.where} redirected more than {_MAX_REDIRECTS} times",
                                    provider=self.provider, status=resp.status_code,
                                    retryable=False)
            self.url = urljoin(self.url, resp.headers["location"])
            _check_url(self.url, self.provider)
            return self.url
        status = resp.status_code
        if status in _EXPIRED:
            raise EmptyResult(f"the image URL expired: {_host(self.url)} answered HTTP {status}. "
                              "Providers keep outputs for a limited time; download sooner or "
                              "generate again", provider=self.provider, status=status,
                              retryable=False)
        if status >= 400:
            raise ProviderError(f"{self.where} answered HTTP {status} to the image download",
                                provider=self.provider, status=status, retryable=False)
        self.content_type = resp.headers.get("content-type")
        _check_type(self.content_type, self.provider, self.where)
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise _too_big(self.provider, self.where, int(length), self.max_bytes)
        return None

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > self.max_bytes:
            raise _too_big(self.provider, self.where, len(self.buf), self.max_bytes)
        if time.monotonic() > self.deadline:
            raise self.timed_out()

    def timed_out(self) -> GenerationTimeout:
        return GenerationTimeout(f"downloading the image from {_host(self.url)} took more than "
                                 f"{self.timeout_s:g} s", provider=self.provider, retryable=False)

    def failed(self, exc: httpx.HTTPError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException):
            return self.timed_out()
        return ProviderError(f"downloading the image from {_host(self.url)} failed: "
                             f"{type(exc).__name__}", provider=self.provider, retryable=False)

    def finish(self) -> Fetched:
        return verify_bytes(bytes(self.buf), self.content_type or self.raw.mime,
                            provider=self.provider, max_pixels=self.max_pixels,
                            source=f"the image from {_host(self.url)}")


def _inline(raw: RawImage, provider: str | None, max_bytes: int,
            max_pixels: int) -> Fetched | None:
    """The image when it needs no network (inline bytes or a data: URL), else None."""
    if raw.data is not None:
        if len(raw.data) > max_bytes:
            raise _too_big(provider, "the provider's inline data", len(raw.data), max_bytes)
        return verify_bytes(raw.data, raw.mime, provider=provider, max_pixels=max_pixels)
    if not raw.url:
        raise EmptyResult(f"{provider or 'the provider'} delivered an image with neither bytes "
                          "nor a URL", provider=provider, retryable=False)
    if raw.url.startswith("data:"):
        return _data_url(raw.url, raw, provider, max_bytes, max_pixels)
    return None


def fetch(raw: RawImage, *, client: httpx.Client, timeout_s: float,
          max_bytes: int = DEFAULT_MAX_BYTES, provider: str | None = None,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> Fetched:
    """Get and verify one image: inline bytes, a ``data:`` URL, or a URL to download.

    ``timeout_s`` bounds the whole download (redirects and body included); ``provider`` names
    the provider in errors.
    """
    done = _inline(raw, provider, max_bytes, max_pixels)
    if done is not None:
        return done
    dl = _Download(raw, provider=provider, timeout_s=timeout_s, max_bytes=max_bytes,
                   max_pixels=max_pixels)
    url: str | None = dl.url
    try:
        while url is not None:
            with client.stream("GET", url, timeout=dl.timeout(), follow_redirects=False) as resp:
                url = dl.on_response(resp)
                if url is None:
                    for chunk in resp.iter_bytes(_CHUNK):
                        dl.feed(chunk)
    except httpx.HTTPError as exc:
        raise dl.failed(exc) from None
    return dl.finish()


async def afetch(raw: RawImage, *, client: httpx.AsyncClient, timeout_s: float,
                 max_bytes: int = DEFAULT_MAX_BYTES, provider: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Fetched:
    """The async twin of :func:`fetch`."""
    done = _inline(raw, provider, max_bytes, max_pixels)
    if done is not None:
        return done
    dl = _Download(raw, provider=provider, timeout_s=timeout_s, max_bytes=max_bytes,
                   max_pixels=max_pixels)
    url: str | None = dl.url
    try:
        while url is not None:
            async with client.stream("GET", url, timeout=dl.timeout(),
                                     follow_redirects=False) as resp:
                url = dl.on_response(resp)
                if url is None:
                    async for chunk in resp.aiter_bytes(_CHUNK):
                        dl.feed(chunk)
    except httpx.HTTPError as exc:
        raise dl.failed(exc) from None
    return dl.finish()
