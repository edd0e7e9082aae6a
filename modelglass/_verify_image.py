"""Image bytes you can trust: :func:`verify_bytes` checks that bytes are a PNG, JPEG or WebP image
with every pixel there, under the pixel cap, and describes them (:class:`Fetched`). Pure (no
network); the downloader (``_download.py``) and the job engine call it for every image, inline or
downloaded.

A PNG has every chunk's CRC checked and its whole image data inflated to the length its header
implies, with valid scanline filters (the guarantee of a full decode at a third of the cost:
:func:`_check_png`); JPEG and WebP are decoded in full by Pillow.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import warnings
import zlib
from dataclasses import dataclass
from typing import Any

from . import _inflate  # zlib-ng when installed: the same checks, ~5x faster inflate
from .errors import EmptyResult

log = logging.getLogger("modelglass")

__all__ = ["DEFAULT_MAX_PIXELS", "INLINE_MAX_PIXELS", "Fetched", "cheap_to_check",
           "verify_bytes", "verify_executor"]

#: Largest image accepted, in pixels (8192 x 8192 ≈ 67 MP): the decompression-bomb guard.
DEFAULT_MAX_PIXELS = 8192 * 8192

_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_ACCEPTED_TYPES = {"image/png": "image/png", "image/jpeg": "image/jpeg",
                   "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
                   "image/webp": "image/webp"}


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
    fmt, width, height = "", 0, 0
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
                # Structure alone (Pillow's verify()) lets half a JPEG or a short IDAT pass:
                # every pixel's data must be there. One pass, on this one open image.
                problem = _check_png(data) if fmt == "PNG" else _PILLOW
                if problem is _PILLOW:
                    _decode_fully(im)
                elif problem is not None:
                    raise bad(f"corrupt PNG data ({problem})")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise bad(f"decompression-bomb guard: {exc}") from None
        except UnidentifiedImageError:
            raise bad(f"{len(data)} bytes that are not an image Pillow can read "
                      f"(starts with {data[:8]!r})") from None
        except EmptyResult:
            raise
        except MemoryError:
            raise bad(f"{width}x{height} does not fit in memory to decode") from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure (Pillow raises many kinds)
            raise bad(f"corrupt {fmt or 'image'} data ({type(exc).__name__}: {exc})") from None
    mime = _FORMATS[fmt]
    hint = _ACCEPTED_TYPES.get((mime_hint or "").split(";")[0].strip().lower())
    if mime_hint and hint != mime:
        log.debug("%s said %s but the bytes are %s; using %s", provider or "provider",
                  mime_hint, mime, mime)
    return Fetched(data=data, mime=mime, width=width, height=height,
                   sha256=hashlib.sha256(data).hexdigest())


#: Largest PNG (in pixels) that async code checks inline on the event loop rather than on the
#: verify thread: its fast check costs ~0.5 ms per megapixel, less than the thread's handoffs.
INLINE_MAX_PIXELS = 2_000_000


def cheap_to_check(data: bytes) -> bool:
    """Whether ``data`` is a PNG of at most :data:`INLINE_MAX_PIXELS` by its header: its whole
    check (:func:`verify_bytes`) then costs about a millisecond and is best run where it is,
    without a thread handoff. A verify thread waits for the GIL after each of its ~15 calls that
    release it, up to the 5 ms switch interval each time the event loop is busy
    (benchmarks/RESULTS.md); anything larger, or decoded by Pillow, still goes to the thread."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width * height <= INLINE_MAX_PIXELS


def _decode_fully(im: Any) -> None:
    """Decode every pixel of ``im``; raise when the data ends early.

    Pillow pads a truncated image with grey when ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set
    (a process-wide switch other code may flip); it is forced off for this decode.
    """
    from PIL import ImageFile

    if not ImageFile.LOAD_TRUNCATED_IMAGES:  # the default: no lock, decodes run in parallel
        im.load()
        return
    with _truncated_lock:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            im.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


_truncated_lock = threading.Lock()
_executor: tuple[int, Any] | None = None


def verify_executor() -> Any:
    """The thread pool that async code verifies images on, shared by every client of the process.

    Checking an image is CPU work (milliseconds per megapixel) that mostly releases the GIL;
    off the event loop it overlaps other jobs' I/O. Few threads on purpose: each extra thread
    fights the event loop for the GIL each time its C call returns (measured on 2 cores at
    concurrency 64: one thread took 2.4-2.7 s for 512 jobs where the default executor's six
    took 4.3 s). A small PNG (:func:`cheap_to_check`) is checked inline instead: its check is
    cheaper than the thread's GIL handoffs. Recreated after a fork (the parent's threads do not
    exist in the child).
    """
    global _executor
    pool = _executor
    pid = os.getpid()
    if pool is None or pool[0] != pid:
        with _executor_lock:
            pool = _executor
            if pool is None or pool[0] != pid:
                from concurrent.futures import ThreadPoolExecutor

                workers = max(1, min(8, (os.cpu_count() or 2) // 2))
                pool = _executor = (pid, ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="modelglass-verify"))
    return pool[1]


_executor_lock = threading.Lock()


# -- PNG: every pixel's data checked without building the image ---------------------------------------
#: ``_check_png``'s answer for a PNG it does not handle itself: let Pillow decode it.
_PILLOW = "pillow"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of each interlace pass
#: Bytes of scanlines inflated per zlib call. Bigger pieces are fresh pages from the OS each
#: time, depending on the allocator's state (measured: 2-2.5 ms of page faults per 1024 x 1024
#: image, and an async batch 1.5-2x slower); these reuse the same heap memory. Memory stays
#: bounded by it, whatever the image claims.
_INFLATE_STEP = 256 << 10


def _check_png(data: bytes) -> str | None:
    """What is wrong with a PNG's data, None when every pixel is there, or :data:`_PILLOW`.

    The same guarantee as Pillow's ``verify()`` followed by a full decode, at a third of the
    cost: every chunk's CRC up to ``IEND``, then the ``IDAT`` stream inflated (bounded pieces,
    nothing kept) to the exact length the header implies, every scanline's filter type valid.
    What a decode does beyond that (unfiltering, unpacking samples) cannot fail on such data.
    Animated PNGs and anything unusual go to Pillow (:data:`_PILLOW`).
    """
    view = memoryview(data)
    size = len(data)
    pos = 8
    header: bytes | None = None
    idat: list[memoryview] = []
    run_ended = False  # Pillow reads the first run of IDAT chunks only; so do we
    ended = False
    while pos + 12 <= size:
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if end > size:
            return f"chunk at byte {pos} runs past the end of the data"
        ctype = data[pos + 4:pos + 8]
        if zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"bad CRC in the {ctype.decode('latin-1')!r} chunk at byte {pos}"
        if header is None:
            if ctype != b"IHDR" or length != 13:
                return "the first chunk is not a 13-byte IHDR"
            header = data[pos + 8:end - 4]
        elif ctype == b"IDAT":
            if not run_ended:
                idat.append(view[pos + 8:end - 4])
        elif ctype == b"acTL":
            return _PILLOW  # animated: Pillow knows which frame is the image
        elif ctype == b"IEND":
            ended = True
            break
        elif idat:
            run_ended = True
        pos = end
    if not ended:
        return "the data ends before IEND"
    if header is None or not idat:
        return "no IHDR or no IDAT chunk"
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, compression, filtering, interlace = header[8:13]
    if (depth not in _PNG_DEPTHS.get(colour, ()) or compression or filtering
            or interlace not in (0, 1)):
        return _PILLOW
    bits = depth * _PNG_CHANNELS[colour]
    # (start, end, stride) of the scanlines of each pass in the inflated stream
    spans: list[tuple[int, int, int]] = []
    at = 0
    for x0, y0, dx, dy in (_ADAM7 if interlace else ((0, 0, 1, 1),)):
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            stride = 1 + (w * bits + 7) // 8
            spans.append((at, at + h * stride, stride))
            at += h * stride
    expected = at
    inflater = _inflate.decompressobj()
    got = 0
    try:
        # one stream, so that zlib is called once per piece, not once per IDAT chunk
        stream = idat[0] if len(idat) == 1 else b"".join(idat)
        for part in (stream, b""):  # the empty tail drains what zlib still holds back
            while got < expected:
                want = min(_INFLATE_STEP, expected - got)
                out = inflater.decompress(part, want)
                part = inflater.unconsumed_tail
                for start, stop, stride in spans:
                    lo, hi = max(start, got), min(stop, got + len(out))
                    first = lo + (start - lo) % stride  # the first scanline start at or after lo
                    if first < hi and max(out[first - got:hi - got:stride]) > 4:
                        return "a scanline has an unknown filter type"
                got += len(out)
                if inflater.eof or not out or (len(out) < want and not part):
                    break  # the stream ended, or this chunk is used up
            if got >= expected or inflater.eof:
                break
    except _inflate.errors as exc:
        return f"the image data does not inflate ({exc})"
    if got < expected:
        return f"the image data ends early ({got} of {expected} bytes of scanlines)"
    return None
