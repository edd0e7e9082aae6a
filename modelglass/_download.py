"""Download and verify the images a provider delivered: bytes you can trust, or a clear error.

Every image goes through the same checks, whether the provider sent bytes inline (OpenAI
``b64_json``, local pipelines), as a ``data:`` URL, or as a link to download:

- **where**: ``https`` only, and never to a loopback, private, link-local, shared or metadata
  address — checked on the *resolved* address of every hop, before connecting, and again on
  the address actually connected to (a name that re-resolves elsewhere is caught). The
  simulators are allowed explicitly (:func:`trust_origin`), nothing else. Redirects are
  followed by hand, a few at most; a malformed ``Location`` is a typed error.
- **how much**: a size cap, checked against ``Content-Length`` before reading and against the
  bytes actually streamed *after* decompression (a gzip body cannot blow memory past it).
- **how long**: a wall-clock bound for the whole download: every read gets only what is left,
  so a host that trickles one byte a second ends at the deadline.
- **what**: the content type must be an image type we accept (PNG, JPEG, WebP); the bytes must
  open with Pillow, stay under a pixel cap (the decompression-bomb guard), and hold every pixel:
  JPEG and WebP are decoded in full; a PNG has every chunk's CRC checked and its whole image
  data inflated to the length its header implies, with valid scanline filters (the same
  guarantee as a full decode, at a third of the cost: ``_check_png``).
- **which**: the sha256 of the bytes, as delivered.

Errors are :class:`~modelglass.errors.ProviderError` subclasses with ``retryable=False``: the
provider was paid and answered; only the image could not be had. Messages name the host only,
never the path or query of a URL (signed URLs carry tokens there).

Checking the bytes is ``_verify_image.py`` (pure, no network). The sync and async downloads share one I/O-free state machine, :class:`_Download`; they differ
only where they wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx

from ._c2pa import has_c2pa
from ._destination import (
    Guard,
    acheck_destination,
    check_destination,
    check_url,
    downloading,
    forbidden_address,
    guarded,
    make_async_client,
    make_client,
    origin,
    peer_refused,
    public_url,
    refused,
    trust_origin,
    untrust_origin,
)
from ._destination import host_of as _host
from ._verify_image import (
    _ACCEPTED_TYPES,
    DEFAULT_MAX_PIXELS,
    Fetched,
    verify_bytes,
    verify_executor,
)
from .errors import DownloadFailed, EmptyResult, GenerationTimeout, ModelglassError, ProviderError
from .providers._payload import decode_data_uri
from .result import Fate, FateKind

if TYPE_CHECKING:
    from .providers.base import RawImage

log = logging.getLogger("modelglass")

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "Fetched",
    "afetch",
    "download_failed",
    "fetch",
    "forbidden_address",
    "has_c2pa",
    "make_async_client",
    "make_client",
    "size_fate",
    "trust_origin",
    "untrust_origin",
    "verify_bytes",
    "verify_executor",
]

#: Largest image file accepted, in bytes (64 MiB).
DEFAULT_MAX_BYTES = 64 << 20

# Some storage buckets serve images as generic binary; for those the bytes decide.
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}
_MAX_REDIRECTS = 5
_EXPIRED = {403, 404, 410}
_CHUNK = 64 * 1024


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


def _data_url(url: str, raw: RawImage, provider: str | None, max_bytes: int,
              max_pixels: int) -> Fetched:
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
    # A streamed body is cut one byte past the cap: "over the cap" then says all that is known.
    size_text = "" if size <= max_bytes * 1.01 else f" ({size / 2**20:.1f} MiB)"
    return ProviderError(f"the image from {where} is over the {max_bytes / 2**20:.1f} MiB cap "
                         f"(max_bytes){size_text}; raise max_download_bytes if it is expected",
                         provider=provider, retryable=False)


def _check_type(content_type: str | None, provider: str | None, where: str) -> None:
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in _ACCEPTED_TYPES or ctype in _GENERIC_TYPES:
        return
    raise EmptyResult(f"{where} answered with {ctype!r}, not an image (expected image/png, "
                      "image/jpeg or image/webp)", provider=provider, retryable=False)


# -- the download, without I/O ----------------------------------------------------------------------
_ACCEPT_ENCODING = "gzip, deflate, identity"


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
        self.decoder: Any = None
        self.guard = Guard(self.deadline)
        check_url(self.url, provider)

    @property
    def where(self) -> str:
        return f"the image URL on {_host(self.url)}"

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(max(0.001, self.deadline - time.monotonic()))

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def on_response(self, resp: httpx.Response) -> str | None:
        """Check status and headers; return the next URL for a redirect, None to read the body."""
        stream = resp.extensions.get("network_stream")
        if stream is not None:  # the address really connected to (after any re-resolution)
            host, port = origin(self.url)
            if (why := peer_refused(stream, host, port)) is not None:
                raise refused(self.url, why, self.provider)
        if resp.is_redirect:
            self.redirects += 1
            if self.redirects > _MAX_REDIRECTS:
                raise ProviderError(f"{self.where} redirected more than {_MAX_REDIRECTS} times",
                                    provider=self.provider, status=resp.status_code,
                                    retryable=False)
            location = resp.headers.get("location", "")
            try:
                target = urljoin(self.url, location.strip())
            except ValueError:
                target = ""
            if not location.strip() or not target:
                raise ProviderError(f"{self.where} answered a redirect (HTTP {resp.status_code}) "
                                    "with a missing or malformed Location", provider=self.provider,
                                    status=resp.status_code, retryable=False)
            check_url(target, self.provider)
            self.url = target
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
        encoding = resp.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = _Deflate()
        elif encoding not in ("", "identity"):
            raise ProviderError(f"{self.where} answered with Content-Encoding {encoding!r}, which "
                                "modelglass does not decode (it asks for gzip or identity)",
                                provider=self.provider, retryable=False)
        if length and length.isdigit() and self.decoder is None and int(length) > self.max_bytes:
            raise _too_big(self.provider, self.where, int(length), self.max_bytes)
        return None

    def feed(self, chunk: bytes) -> None:
        """Add raw body bytes, decompressing at most what still fits under ``max_bytes``."""
        if time.monotonic() > self.deadline:
            raise self.timed_out()
        if self.decoder is None:
            self.buf += chunk
        else:
            data = chunk
            while data:
                room = self.max_bytes - len(self.buf) + 1
                try:
                    out = self.decoder.decompress(data, room)
                except zlib.error as exc:
                    raise EmptyResult(f"{self.where} sent a corrupt compressed body ({exc})",
                                      provider=self.provider, retryable=False) from None
                self.buf += out
                if len(self.buf) > self.max_bytes:
                    break
                data = self.decoder.unconsumed_tail
                if not out and data:  # no progress possible (needs more input)
                    break
        if len(self.buf) > self.max_bytes:
            raise _too_big(self.provider, self.where, len(self.buf), self.max_bytes)

    def timed_out(self) -> GenerationTimeout:
        return GenerationTimeout(f"downloading the image from {_host(self.url)} took more than "
                                 f"{self.timeout_s:g} s", provider=self.provider, retryable=False)

    def failed(self, exc: BaseException) -> ProviderError:
        if self.guard.refused is not None:
            return refused(self.url, self.guard.refused, self.provider)
        if isinstance(exc, (httpx.TimeoutException, TimeoutError)) or \
                time.monotonic() >= self.deadline:
            return self.timed_out()
        if isinstance(exc, httpx.InvalidURL):
            return ProviderError(f"{self.where} led to a malformed URL", provider=self.provider,
                                 retryable=False)
        return ProviderError(f"downloading the image from {_host(self.url)} failed: "
                             f"{type(exc).__name__}", provider=self.provider, retryable=False)

    def finish(self) -> Fetched:
        return verify_bytes(bytes(self.buf), self.content_type or self.raw.mime,
                            provider=self.provider, max_pixels=self.max_pixels,
                            source=f"the image from {_host(self.url)}")


class _Deflate:
    """``Content-Encoding: deflate``: zlib-wrapped as the RFC says, or raw as some servers send."""

    def __init__(self) -> None:
        self._obj: Any = None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._obj is None:
            wbits = zlib.MAX_WBITS if data[:1] and (data[0] & 0x0F) == 8 else -zlib.MAX_WBITS
            self._obj = zlib.decompressobj(wbits)
        out = self._obj.decompress(data, max_length)
        self.unconsumed_tail = self._obj.unconsumed_tail
        return out  # type: ignore[no-any-return]


def _tag(err: BaseException, raw: RawImage) -> BaseException:
    """Name the image's URL on the error (an attribute, never the message: it may be signed)."""
    if isinstance(err, ModelglassError) and getattr(err, "url", None) is None:
        err.url = public_url(raw.url)  # type: ignore[attr-defined]
    return err


def download_failed(outcomes: Sequence[Fetched | BaseException], raws: Sequence[RawImage], *,
                    provider: str | None, request_id: str | None = None,
                    cost_usd: float | None = None) -> DownloadFailed | None:
    """The :class:`DownloadFailed` for one provider call's downloads (``outcomes`` in the order
    of ``raws``: a :class:`Fetched` or the error of each), or None when all succeeded. It names
    the call's request id and cost, the first failed image's URL and index, and carries every
    image that *was* fetched, so the caller can return them.
    """
    failed = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
    if not failed:
        return None
    index, first = failed[0]
    fetched = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, Fetched)]
    url = public_url(raws[index].url) if index < len(raws) else None
    rid = f" (request {request_id})" if request_id else ""
    cost = f", which cost ${cost_usd:.4f}," if cost_usd is not None else ""
    kept = (f" The {len(fetched)} image(s) that did download are kept on this error "
            "(.fetched)." if fetched else "")
    err = DownloadFailed(
        f"{len(failed)} of {len(outcomes)} image(s) of the {provider or 'provider'} call{rid}"
        f"{cost} could not be downloaded: image {index}: {first}.{kept}",
        url=url, request_id=request_id, cost_usd=cost_usd, index=index, fetched=fetched,
        reason=first, provider=provider, status=getattr(first, "status", None))
    return err


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


def _begin(raw: RawImage, provider: str | None, timeout_s: float, max_bytes: int,
           max_pixels: int) -> Fetched | _Download:
    """The image when it needs no network (inline bytes, a data: URL), else its download."""
    done = _inline(raw, provider, max_bytes, max_pixels)
    if done is not None:
        return done
    return _Download(raw, provider=provider, timeout_s=timeout_s, max_bytes=max_bytes,
                     max_pixels=max_pixels)


def _raw_chunks(resp: httpx.Response, dl: _Download) -> Any:
    if resp.is_stream_consumed:  # a transport that read the body already (httpx.MockTransport)
        return [_already_read(resp, dl)]
    return resp.iter_raw()


def _already_read(resp: httpx.Response, dl: _Download) -> bytes:
    dl.decoder = None  # httpx decoded it already
    return resp.content


def fetch(raw: RawImage, *, client: httpx.Client, timeout_s: float,
          max_bytes: int = DEFAULT_MAX_BYTES, provider: str | None = None,
          max_pixels: int = DEFAULT_MAX_PIXELS) -> Fetched:
    """Get and verify one image: inline bytes, a ``data:`` URL, or a URL to download.

    ``timeout_s`` bounds the whole download by the wall clock (every hop, every read);
    ``provider`` names the provider in errors. Errors carry the image's URL as ``.url``. Use a
    client from :func:`make_client`, which also checks the address of every connection.
    """
    try:
        dl = _begin(raw, provider, timeout_s, max_bytes, max_pixels)
        if isinstance(dl, Fetched):
            return dl
        with guarded(dl.guard), downloading():
            url: str | None = dl.url
            while url is not None:
                check_destination(url, provider)
                try:
                    with client.stream("GET", url, timeout=dl.timeout(), follow_redirects=False,
                                       headers={"Accept-Encoding": _ACCEPT_ENCODING}) as resp:
                        url = dl.on_response(resp)
                        if url is None:
                            for chunk in _raw_chunks(resp, dl):
                                dl.feed(chunk)
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    err = dl.failed(exc)
                else:
                    continue
                raise err  # outside the handler: no client exception rides along
        return dl.finish()
    except ModelglassError as exc:
        _tag(exc, raw)  # the same error, with its URL named
        raise


async def afetch(raw: RawImage, *, client: httpx.AsyncClient, timeout_s: float,
                 max_bytes: int = DEFAULT_MAX_BYTES, provider: str | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Fetched:
    """The async twin of :func:`fetch` (the whole download also runs under
    ``asyncio.timeout``, a hard wall-clock bound)."""
    try:
        dl = _begin(raw, provider, timeout_s, max_bytes, max_pixels)
        if isinstance(dl, Fetched):
            return dl
        with guarded(dl.guard), downloading():
            err: ProviderError | None = None
            try:
                async with asyncio.timeout(dl.remaining()):
                    url: str | None = dl.url
                    while url is not None:
                        await acheck_destination(url, provider)
                        async with client.stream("GET", url, timeout=dl.timeout(),
                                                 follow_redirects=False,
                                                 headers={"Accept-Encoding": _ACCEPT_ENCODING}
                                                 ) as resp:
                            url = dl.on_response(resp)
                            if url is None:
                                if resp.is_stream_consumed:  # a transport that read it already
                                    dl.feed(_already_read(resp, dl))
                                else:
                                    async for chunk in resp.aiter_raw():
                                        dl.feed(chunk)
            except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as exc:
                err = dl.failed(exc)
            if err is not None:
                raise err
        # the pixel check (milliseconds) on the shared verify threads, not on the event loop
        return await asyncio.get_running_loop().run_in_executor(verify_executor(), dl.finish)
    except ModelglassError as exc:
        _tag(exc, raw)
        raise
