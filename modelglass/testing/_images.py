"""Deterministic, obviously-fake images for the provider simulators.

Every image is a function of ``(prompt, seed, width, height, format)``: a grid of coloured
blocks derived from a hash of prompt and seed, with ``SIMULATED`` drawn across it. Same inputs
give the same bytes; a different seed gives different bytes. Encoded bytes are kept in a small
LRU (bounded by total size) because the benchmarks push thousands of jobs through the servers.

Every format carries the marker :data:`SIMULATED_MARKER` so :func:`is_simulated` can tell
simulator output from a real generation: a PNG ``iTXt`` chunk with key ``Simulated``, a JPEG
``COM`` segment, or WebP XMP metadata.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

__all__ = ["SIMULATED_MARKER", "is_simulated", "mime_for", "normalize_format", "render_image"]

from .._simulated import _MARKER_BYTES, SIMULATED_MARKER, is_simulated

_FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "jpg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}
_GRID = 6  # blocks per side; blocks keep PNG encoding cheap (rows repeat)
_CACHE_BUDGET_BYTES = 96 * 1024 * 1024


def normalize_format(fmt: str) -> str:
    """Return the canonical format name (``png``, ``jpeg`` or ``webp``) for ``fmt``."""
    key = fmt.lower()
    if key not in _FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; use png, jpeg/jpg or webp")
    return "jpeg" if key == "jpg" else key


def mime_for(fmt: str) -> str:
    """The MIME type served for ``fmt`` (``png`` -> ``image/png``)."""
    return _FORMATS[normalize_format(fmt)][1]


class _ByteLRU:
    """A thread-safe LRU of encoded images, bounded by the total size of its values."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._size = 0
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: bytes) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += len(value)
            while self._size > self._budget and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)


_cache = _ByteLRU(_CACHE_BUDGET_BYTES)


@lru_cache(maxsize=64)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def render_image(prompt: str, seed: int, width: int, height: int, fmt: str = "png") -> bytes:
    """Encode a deterministic placeholder image of ``width`` x ``height`` in ``fmt``.

    The content depends only on the arguments; results are cached, so repeated calls are cheap.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    fmt = normalize_format(fmt)
    key = (prompt, int(seed), int(width), int(height), fmt)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    data = _encode(_draw(prompt, int(seed), int(width), int(height)), fmt)
    _cache.put(key, data)
    return data


def _draw(prompt: str, seed: int, width: int, height: int) -> Any:
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(f"{prompt}\x00{seed}".encode()).digest()
    stream = (digest * ((_GRID * _GRID * 3) // len(digest) + 1))[: _GRID * _GRID * 3]
    # Keep colours mid-range so the white label stays readable.
    palette = bytes(64 + b // 2 for b in stream)
    grid = Image.frombytes("RGB", (_GRID, _GRID), palette)
    img = grid.resize((width, height), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    size = max(8, min(width // 8, height // 3))
    font = _font(size)
    label_y = height // 2
    draw.text((width // 2, label_y), "SIMULATED", fill=(255, 255, 255), font=font,
              anchor="mm", stroke_width=max(1, size // 20), stroke_fill=(0, 0, 0))
    small = _font(max(8, size // 3))
    draw.text((width // 2, min(height - 1, label_y + size)), f"seed {seed}",
              fill=(255, 255, 255), font=small, anchor="mt")
    return img


def _encode(img: Any, fmt: str) -> bytes:
    from PIL import PngImagePlugin

    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("Simulated", SIMULATED_MARKER)
        img.save(buf, "PNG", pnginfo=info, compress_level=1)
    elif fmt == "jpeg":
        img.save(buf, "JPEG", quality=85, comment=_MARKER_BYTES)
    else:
        xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
               b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
               b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description>'
               + _MARKER_BYTES + b"</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>")
        img.save(buf, "WEBP", quality=80, method=0, xmp=xmp)
    return buf.getvalue()
