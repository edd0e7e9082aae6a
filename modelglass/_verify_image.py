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
import struct
import threading
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

from ._png_check import _PILLOW
from ._png_check import check_png as _check_png
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
    _note_hint(mime_hint, mime, provider)
    return Fetched(data=data, mime=mime, width=width, height=height,
                   sha256=hashlib.sha256(data).hexdigest())


def _note_hint(mime_hint: str | None, mime: str, provider: str | None) -> None:
    hint = _ACCEPTED_TYPES.get((mime_hint or "").split(";")[0].strip().lower())
    if mime_hint and hint != mime:
        log.debug("%s said %s but the bytes are %s; using %s", provider or "provider",
                  mime_hint, mime, mime)


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


# -- the check process's side of its pipe (``_check_process.py``) --------------------------------
#: A question: its id, the length of the image that follows it, and the pixel cap.
ASK = struct.Struct("!IIQ")
#: An answer: the question's id, :data:`VERIFIED` or :data:`CHECK_HERE`, and the length of the
#: ASCII message that follows it (``"mime width height sha256"`` when verified).
ANSWER = struct.Struct("!IBI")
VERIFIED, CHECK_HERE = 0, 1


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The check process: :func:`verify_bytes` of every image asked for on ``inp``, answered
    on ``out`` in order, until ``inp`` ends (the parent closed it, or died). Only a verified
    image's description goes back; for anything else the parent runs the check itself, so
    every refusal and its wording are the ones it would give anyway."""
    while len(head := inp.read(ASK.size)) == ASK.size:
        ident, length, max_pixels = ASK.unpack(head)
        data = inp.read(length)
        if len(data) != length:
            return
        try:
            got = verify_bytes(data, max_pixels=max_pixels)
        except Exception as exc:  # noqa: BLE001 - the parent checks it again and says why
            kind, message = CHECK_HERE, type(exc).__name__.encode()
        else:
            kind = VERIFIED
            message = f"{got.mime} {got.width} {got.height} {got.sha256}".encode()
        out.write(ANSWER.pack(ident, kind, len(message)) + message)
        out.flush()


def verified(data: bytes, message: str, mime_hint: str | None,
             provider: str | None) -> Fetched:
    """The :class:`Fetched` of ``data`` from the check process's :data:`VERIFIED` answer."""
    mime, width, height, sha256 = message.split(" ")
    if mime not in _FORMATS.values() or len(sha256) != 64:
        raise ValueError(f"not a verified image's description: {message[:100]!r}")
    _note_hint(mime_hint, mime, provider)
    return Fetched(data=data, mime=mime, width=int(width), height=int(height), sha256=sha256)
