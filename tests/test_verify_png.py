"""PNG verification without building the image (``_verify_image._check_png``, issue 8 item 8, issue 9
deliverable 10): it accepts what Pillow decodes in full, and refuses every PNG whose pixels are
not all there, however well-formed its chunks are."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image

from modelglass._c2pa import png_chunks
from modelglass._verify_image import _PILLOW, _check_png, verify_bytes
from modelglass.errors import EmptyResult

_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png(width: int, height: int, depth: int, colour: int, raw: bytes, *, interlace: int = 0,
         idat_size: int = 1 << 30, extra: bytes = b"") -> bytes:
    """A PNG around ``raw`` (filtered scanlines), its zlib stream split into ``idat_size`` chunks."""
    stream = zlib.compress(raw)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    idats = b"".join(_chunk(b"IDAT", stream[i:i + idat_size])
                     for i in range(0, len(stream), idat_size))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + idats + _chunk(b"IEND", b"")


def _scanlines(width: int, height: int, bits: int, interlace: int, rng: random.Random) -> bytes:
    """Random scanlines (filter types 0-4) for an image, in the order the passes store them."""
    out = bytearray()
    for x0, y0, dx, dy in (_ADAM7 if interlace else ((0, 0, 1, 1),)):
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w <= 0 or h <= 0:
            continue
        for _ in range(h):
            out.append(rng.randrange(5))
            out += rng.randbytes((w * bits + 7) // 8)
    return bytes(out)


def _pillow_decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.fixture(autouse=True, params=["zlib-ng", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case through both inflaters ``_inflate`` may use: zlib-ng (the dependency) and the
    standard library's zlib (its fallback) must refuse exactly the same damage."""
    from zlib_ng import zlib_ng

    from modelglass import _inflate

    monkeypatch.setattr(_inflate, "backend", zlib_ng if request.param == "zlib-ng" else zlib)
    return str(request.param)


# (depth, colour type, samples per pixel)
KINDS = [(1, 0, 1), (2, 0, 1), (4, 0, 1), (8, 0, 1), (16, 0, 1), (8, 2, 3), (16, 2, 3),
         (1, 3, 1), (8, 3, 1), (8, 4, 2), (8, 6, 4), (16, 6, 4)]


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize(("depth", "colour", "samples"), KINDS)
@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 2), (13, 9), (64, 33)])
def test_whole_pngs_pass_and_pillow_agrees(depth: int, colour: int, samples: int,
                                           interlace: int, width: int, height: int) -> None:
    rng = random.Random(f"{depth}{colour}{interlace}{width}{height}")
    raw = _scanlines(width, height, depth * samples, interlace, rng)
    plte = _chunk(b"PLTE", bytes(range(256)) * 3) if colour == 3 else b""
    data = _png(width, height, depth, colour, raw, interlace=interlace, idat_size=17, extra=plte)
    assert _pillow_decodes(data)
    assert _check_png(data) is None
    # one scanline byte short: refused, whatever the chunks say
    short = _png(width, height, depth, colour, raw[:-1], interlace=interlace, extra=plte)
    assert _check_png(short) is not None
    with pytest.raises(EmptyResult, match="corrupt PNG"):
        verify_bytes(short)


@pytest.mark.parametrize("interlace", [0, 1])
def test_an_unknown_filter_type_is_refused_like_pillow_does(interlace: int) -> None:
    rng = random.Random(5)
    raw = bytearray(_scanlines(40, 30, 24, interlace, rng))
    stride = 1 + 40 * 3 if not interlace else len(raw)  # the first scanline's filter byte: 0
    raw[0 if interlace else stride * 7] = 5
    data = _png(40, 30, 8, 2, bytes(raw), interlace=interlace)
    assert not _pillow_decodes(data)
    assert "filter" in (_check_png(data) or "")


def test_real_pillow_pngs_pass_in_every_mode() -> None:
    rng = random.Random(9)
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        im = Image.frombytes("RGB", (70, 45), rng.randbytes(70 * 45 * 3)).convert(
            "I" if mode == "I;16" else mode)
        if mode == "I;16":
            im = im.convert("I;16")
        buf = io.BytesIO()
        im.save(buf, "PNG")
        assert _check_png(buf.getvalue()) is None, mode
        assert verify_bytes(buf.getvalue()).width == 70


def test_mutations_are_refused_whenever_pillow_refuses_them() -> None:
    """Damage inside IDAT (CRCs fixed up, so only the pixel data is wrong): never accepted when
    Pillow's full decode fails. (Pillow accepts a zlib stream that ends cleanly but early; the
    check refuses it: stricter, never weaker.)"""
    rng = random.Random(11)
    raw = _scanlines(50, 40, 32, 0, rng)
    base = _png(50, 40, 8, 6, raw, idat_size=300)
    checked = 0
    for _ in range(300):
        out = [base[:8]]
        for ctype, start, end in png_chunks(base):
            body = bytearray(base[start + 8:end - 4])
            if ctype == b"IDAT" and rng.random() < 0.5 and body:
                if rng.random() < 0.5:
                    body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
                else:
                    del body[rng.randrange(len(body)):]
            out.append(_chunk(ctype, bytes(body)))
        data = b"".join(out)
        if not _pillow_decodes(data):
            checked += 1
            assert _check_png(data) is not None
    assert checked > 50


def test_chunk_damage_is_refused() -> None:
    data = _png(20, 10, 8, 0, _scanlines(20, 10, 8, 0, random.Random(1)))
    bad_crc = bytearray(data)
    bad_crc[-20] ^= 1
    assert "CRC" in (_check_png(bytes(bad_crc)) or "")
    assert "IEND" in (_check_png(data[:-12]) or "")
    no_idat = b"".join([data[:8], *(data[s:e] for c, s, e in png_chunks(data) if c != b"IDAT")])
    assert _check_png(no_idat) is not None


def test_animated_pngs_go_to_pillow() -> None:
    data = _png(8, 8, 8, 0, _scanlines(8, 8, 8, 0, random.Random(2)),
                extra=_chunk(b"acTL", struct.pack(">II", 1, 0)))
    assert _check_png(data) == _PILLOW


def test_inflating_keeps_memory_flat() -> None:
    """A 4096 x 4096 RGBA image (64 MiB of scanlines) is checked in pieces, never held whole."""
    import tracemalloc

    width = height = 4096
    stride = 1 + width * 4
    comp = zlib.compressobj(9)
    row = bytes(stride)
    stream = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream)
            + _chunk(b"IEND", b""))
    tracemalloc.start()
    try:
        assert _check_png(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak / 2**20:.1f} MiB"  # 64 MiB if held whole


def _rows_png(width: int, height: int, bad_row: int | None = None) -> bytes:
    stride = 1 + width * 4
    raw = bytearray(stride * height)
    if bad_row is not None:
        raw[bad_row * stride] = 7
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


@pytest.mark.parametrize("bad_row", [None, 0, 333, 1023])
def test_pieces_and_verify_threads_see_every_scanline(bad_row: int | None) -> None:
    """4 MiB of scanlines, inflated in 16 pieces, on the caller's thread and on the async
    verify threads: a bad filter type in any row is found either way."""
    from modelglass._verify_image import verify_executor

    data = _rows_png(1024, 1024, bad_row)
    here = _check_png(data)
    there = verify_executor().submit(_check_png, data).result()
    if bad_row is None:
        assert here is None and there is None
    else:
        assert "filter" in (here or "") and "filter" in (there or "")
    short = data[:-40] + data[-12:]  # IDAT cut (CRC then wrong too)
    assert _check_png(short) is not None


# -- where async code checks an image: a small PNG inline, the rest on the verify thread ----------

def _header_only_png(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                             0, 0, 0))


def test_cheap_to_check_is_a_png_of_at_most_two_megapixels_by_its_header() -> None:
    from modelglass._verify_image import INLINE_MAX_PIXELS, cheap_to_check

    assert INLINE_MAX_PIXELS == 2_000_000
    assert cheap_to_check(_header_only_png(1024, 1024))
    assert cheap_to_check(_header_only_png(1536, 1024))
    assert not cheap_to_check(_header_only_png(2048, 1024))
    assert not cheap_to_check(_header_only_png(4096, 4096))
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    assert not cheap_to_check(jpeg.getvalue())
    assert not cheap_to_check(b"")
    assert not cheap_to_check(b"\x89PNG\r\n\x1a\n")  # no header to read
    assert not cheap_to_check(b"\x89PNG\r\n\x1a\n" + _chunk(b"tEXt", b"x" * 16))  # not IHDR first


@pytest.mark.parametrize(("size", "fmt", "on_loop"), [((64, 48), "PNG", True),
                                                      ((64, 48), "JPEG", False),
                                                      ((1600, 1300), "PNG", False)])
def test_async_delivery_checks_a_small_png_on_the_loop_and_the_rest_on_the_verify_thread(
        monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], fmt: str, on_loop: bool) -> None:
    """Each verdict is the same either way; only where the check runs differs (a verify thread
    pays a GIL handoff after each of its zlib and hash calls: benchmarks/RESULTS.md)."""
    import asyncio
    import threading

    from modelglass import _download
    from modelglass.jobs._delivery import Download
    from modelglass.providers.base import RawImage

    where: list[str] = []
    real = _download.fetch

    def spying_fetch(*args: object, **kw: object) -> object:
        where.append(threading.current_thread().name)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_download, "fetch", spying_fetch)
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, fmt)
    good = buf.getvalue()
    cut = good[: len(good) - 40]  # the pixels' end and the trailer missing

    async def go(data: bytes) -> object:
        step = Download(images=(RawImage(data=data, mime=f"image/{fmt.lower()}"),),
                        provider="openai", timeout_s=10.0, max_bytes=50 << 20)
        [outcome] = await step.arun(None)
        return outcome

    ok = asyncio.run(go(good))
    assert (ok.width, ok.height) == size  # type: ignore[attr-defined]
    assert isinstance(asyncio.run(go(cut)), EmptyResult)
    assert len(where) == 2
    assert all((name == "MainThread") is on_loop for name in where), where
