"""Every pixel's data of a PNG checked without building the image (:func:`check_png`).

Only the standard library and :mod:`._inflate` here (``_verify_image.py`` runs it, in this process
or in a large async batch's check process, ``_check_process.py``).
"""

from __future__ import annotations

import zlib

from . import _inflate  # zlib-ng when installed: the same checks, ~5x faster inflate

__all__ = ["check_png"]

#: :func:`check_png`'s answer for a PNG it does not handle itself: let Pillow decode it.
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


def check_png(data: bytes) -> str | None:
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
