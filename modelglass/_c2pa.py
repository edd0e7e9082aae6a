"""What an image's bytes carry beside the picture: the chunks of a PNG, and whether a C2PA manifest
(content credentials) is there, in a PNG ``caBX`` chunk, a JPEG APP11 segment or a WebP ``C2PA``
chunk. Pure byte reading, no imports: the provenance writer (``_provenance.py``) and the
downloader (``_download.py``) both use it.
"""

from __future__ import annotations

__all__ = ["has_c2pa", "png_chunks"]


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
