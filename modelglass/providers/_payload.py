"""Payload pieces shared by the hosted providers: field names, formats, ratios, options, and
the images that come back inline (data: URIs, base64). Pure; the payload core that uses them,
``build_fields``, is in ``_fields.py``."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..catalog import OfferView

__all__ = ["decode_b64", "decode_data_uri", "format_for_offer", "image_ref", "merge_options",
           "mime_for_format", "nearest_ratio", "ratio_for", "wire_name"]

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp",
         "gif": "image/gif", "svg": "image/svg+xml"}


def mime_for_format(fmt: str | None) -> str | None:
    """``"jpg"`` → ``"image/jpeg"``; None for an unknown format."""
    return _MIME.get((fmt or "").lower())


def format_for_offer(wanted: str, allowed: list[str]) -> str:
    """The offer's spelling of ``wanted`` (``jpeg`` ↔ ``jpg``), else PNG, else the first allowed."""
    wanted = wanted.lower()
    aliases = {"jpeg": ("jpeg", "jpg"), "jpg": ("jpg", "jpeg")}.get(wanted, (wanted,))
    for a in aliases:
        if a in allowed:
            return a
    return "png" if "png" in allowed else allowed[0]


def wire_name(offer: OfferView, control: str, default: str | None) -> str | None:
    """The offer's field name for ``control`` (``wire:`` map, else the provider default);
    None when the offer has no such field (``none``)."""
    name = offer.offer.wire.get(control, default)
    if name is None or str(name).lower() in ("none", "", "-"):
        return None
    return str(name)


def ratio_for(width: int, height: int, table: Mapping[str, str] | None) -> str | None:
    """The ratio key of ``table`` whose size is exactly ``width``×``height``; else the reduced
    ``W:H`` when it is a key of the table (or there is no table); else None."""
    size = f"{width}x{height}"
    for ratio, s in (table or {}).items():
        if s == size:
            return ratio
    g = math.gcd(width, height)
    reduced = f"{width // g}:{height // g}"
    if table is None or reduced in table:
        return reduced
    return None


def nearest_ratio(width: int, height: int, ratios: list[str]) -> str:
    """The ratio in ``ratios`` closest to ``width/height`` (log distance)."""
    def dist(r: str) -> float:
        a, b = (float(x) for x in r.split(":"))
        return abs(math.log((a / b) / (width / height)))
    return min(ratios, key=dist)


def merge_options(payload: dict[str, Any], options: Mapping[str, Any], *, provider: str,
                  reserved: dict[str, str], forbidden: Mapping[str, str] | None = None) -> None:
    """Add ``provider_options`` to ``payload``.

    An option may not set a field a request control owns (``reserved``: field → control) or a
    field the provider module refuses (``forbidden``: field → why); both raise
    :class:`InvalidRequest` saying what to use instead.
    """
    for key, value in options.items():
        if forbidden and key in forbidden:
            raise InvalidRequest(f"provider_options[{provider!r}][{key!r}]: {forbidden[key]}",
                                 field=f"provider_options.{provider}.{key}")
        if key in reserved:
            raise InvalidRequest(
                f"provider_options[{provider!r}][{key!r}] sets a field that the request's "
                f"`{reserved[key]}` control owns; set {reserved[key]}=... on the request instead",
                field=f"provider_options.{provider}.{key}")
        payload[key] = value


_DATA_URI_RE = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?),(?P<data>.*)$",
                          re.DOTALL)


def decode_data_uri(uri: str) -> tuple[bytes, str | None]:
    """``data:image/png;base64,...`` → (bytes, mime). Raises ValueError on a malformed URI."""
    m = _DATA_URI_RE.match(uri)
    if not m:
        raise ValueError("not a data: URI")
    params = m.group("params") or ""
    data = m.group("data")
    if ";base64" in params:
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"bad base64 in data: URI ({exc})") from None
    else:
        from urllib.parse import unquote_to_bytes

        raw = unquote_to_bytes(data)
    return raw, m.group("mime")


def image_ref(url: str, *, provider: str, what: str, where: str
              ) -> tuple[bytes | None, str | None, str | None]:
    """An image reference in a reply: ``(data, url, mime)`` — a ``data:`` URI decoded (its
    bytes and declared mime, no URL), else ``(None, url, None)``. A malformed ``data:`` URI is
    a reply modelglass cannot use (``where`` names it: ``images[0]``)."""
    if not url.startswith("data:"):
        return None, url, None
    try:
        data, mime = decode_data_uri(url)
    except ValueError as exc:
        from ._errors import wrong_shape

        raise wrong_shape(provider, what, f"{where} is a bad data: URI ({exc})", None) from None
    return data, None, mime


def _strict_b64() -> Any:
    """The strict decoder: pybase64's SIMD one when installed (~4 µs for a 60 KB reply where
    binascii takes ~130-160 µs, measured on the 2-core build machine), else binascii's strict
    mode. Both reject every character outside the alphabet and misplaced padding; pybase64 also
    rejects padding after a complete group (``"AAAA===="``), which binascii 3.11 lets through —
    never a real image (``tests/test_b64_decode.py`` compares the two on fuzzed strings)."""
    try:
        import pybase64
    except ImportError:  # a platform without its wheel
        return lambda data: binascii.a2b_base64(data, strict_mode=True)

    return lambda data: pybase64.b64decode(data, validate=True)


_b64 = _strict_b64()


def decode_b64(data: str) -> bytes:
    """Strict base64 → bytes (ValueError on garbage, so a corrupt reply is not taken as an image)."""
    try:
        return _b64(data)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError(f"invalid base64 image data ({exc})") from None
