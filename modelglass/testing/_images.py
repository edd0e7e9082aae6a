"""Deterministic, obviously-fake images for the provider simulators.

Every image is a function of ``(prompt, seed, width, height, format, misspell)``: a grid of
coloured blocks derived from a hash of prompt and seed, with ``SIMULATED`` drawn across it. When
the prompt quotes text (``a sign that says "OPEN"``), that text is drawn large above the label,
legibly (a real font: Pillow's bundled FreeType font for Latin, a system CJK font for Han and
kana), so the OCR of the text check can read it; ``misspell=True`` draws it with one character
changed (:func:`misspelled`). Whether a model spells it right is scripted per model with
``Simulator.text_accuracy`` and decided per seed by :func:`spells_right`. Same inputs
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
from typing import Any

__all__ = ["SIMULATED_MARKER", "can_draw", "is_simulated", "mime_for", "misspelled", "normalize_format",
           "render_image", "spells_right"]

from .._fonts import can_draw
from .._fonts import cjk_font as _cjk_font
from .._fonts import latin_font as _font
from .._fonts import needs_cjk as _needs_cjk
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


def spells_right(accuracy: float, model: str, prompt: str, seed: int) -> bool:
    """Whether ``model``, spelling text right with probability ``accuracy``, spells it right in
    its image of ``prompt`` at ``seed``: a fixed draw per (model, prompt, seed).

    >>> spells_right(1.0, "m", "p", 1), spells_right(0.0, "m", "p", 1)
    (True, False)
    """
    digest = hashlib.sha256(f"text\x00{model}\x00{prompt}\x00{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < accuracy


_SWAP_CJK = "错误乱码"


def misspelled(text: str) -> str:
    """``text`` with one character of its longest word changed to one that reads differently
    (a letter rotated by 13, a digit by 5, a Han character swapped).

    >>> misspelled("OPEN LATE"), misspelled("欢迎")
    ('OPEN LAGE', '欢错')
    """
    words = [(len(w), i) for i, w in enumerate(text.split(" ")) if any(c.isalnum() for c in w)]
    if not words:
        return text + "X"
    parts = text.split(" ")
    _, wi = max(words)
    word = parts[wi]
    k = [j for j, c in enumerate(word) if c.isalnum()]
    j = k[len(k) // 2]
    c = word[j]
    if "a" <= c.lower() <= "z":
        base = ord("A") if c.isupper() else ord("a")
        new = chr(base + (ord(c) - base + 13) % 26)
    elif c.isdigit():
        new = str((int(c) + 5) % 10)
    else:
        new = next(x for x in _SWAP_CJK if x != c)
    parts[wi] = word[:j] + new + word[j + 1:]
    return " ".join(parts)


def render_image(prompt: str, seed: int, width: int, height: int, fmt: str = "png", *,
                 misspell: bool = False) -> bytes:
    """Encode a deterministic placeholder image of ``width`` x ``height`` in ``fmt``.

    The content depends only on the arguments and on whether a font for the quoted text's
    script is installed; results are cached (per both), so repeated calls are cheap. The
    prompt's quoted text is drawn legibly (``misspell``: with one character wrong).
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    fmt = normalize_format(fmt)
    key = (prompt, int(seed), int(width), int(height), fmt, bool(misspell),
           _needs_cjk(prompt) and _cjk_font(12) is not None)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    data = _encode(_draw(prompt, int(seed), int(width), int(height), bool(misspell)), fmt)
    _cache.put(key, data)
    return data


def _draw(prompt: str, seed: int, width: int, height: int, misspell: bool = False) -> Any:
    from PIL import Image, ImageDraw

    from ..checks import quoted_text

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
    text = quoted_text(prompt)
    if text and can_draw(text):
        _draw_text(draw, misspelled(text) if misspell else text, width, height)
    return img


def _draw_text(draw: Any, text: str, width: int, height: int) -> None:
    """``text`` in the upper part of the image, as large as fits (wrapped onto up to three
    lines), white on a dark outline."""
    font_of = _cjk_font if _needs_cjk(text) else _font
    room_w, room_h = int(width * 0.9), int(height * 0.36)
    words = text.split(" ")
    for size in range(max(10, min(width // 11, height // 5)), 9, -2):
        font = font_of(size)
        lines = _wrap(words, font, room_w, draw)
        if len(lines) <= 3 and len(lines) * size * 1.25 <= room_h and all(
                draw.textlength(ln, font=font) <= room_w for ln in lines):
            break
    top = int(height * 0.06)
    # a dark band behind the text, as a sign or a label has: the OCR then reads a model that
    # spelled it right as right at every seed (on the bare colour grid it misread 17 of 960
    # renders of the text suite at 1024 px, e.g. "EXIT" as "EIXIT")
    widest = max(draw.textlength(ln, font=font) for ln in lines)
    pad = max(4, size // 3)
    draw.rectangle((int((width - widest) / 2) - pad, top - pad, int((width + widest) / 2) + pad,
                    top + int((len(lines) - 1) * size * 1.25) + size + pad), fill=(24, 24, 24))
    for i, line in enumerate(lines):
        draw.text((width // 2, top + int(i * size * 1.25)), line, fill=(255, 255, 255),
                  font=font, anchor="mt", stroke_width=max(1, size // 16),
                  stroke_fill=(0, 0, 0))


def _wrap(words: list[str], font: Any, room: int, draw: Any) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


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
