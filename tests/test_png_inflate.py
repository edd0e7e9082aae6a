"""The PNG check's inflate (``modelglass._inflate``: zlib-ng, else zlib; issue 16 item 8): as
strict as a full decode on damaged pixel data, whichever inflater runs, and bounded by the size
the header declares however far the stream would inflate."""

from __future__ import annotations

import random
import struct
import zlib
from typing import Any

import pytest

from modelglass import _inflate
from modelglass._verify_image import _check_png, verify_bytes
from modelglass.errors import EmptyResult

WIDTH, HEIGHT = 120, 80  # RGB, 8 bits: 361 bytes per scanline with its filter byte
STRIDE = 1 + WIDTH * 3


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _png(stream: bytes, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """An 8-bit RGB PNG whose one IDAT holds ``stream``, every CRC right."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream)
            + _chunk(b"IEND", b""))


def _raw(rows: int = HEIGHT) -> bytearray:
    rng = random.Random(rows)
    out = bytearray()
    for _ in range(rows):
        out.append(rng.randrange(5))
        out += rng.randbytes(WIDTH * 3)
    return out


@pytest.fixture(params=["zlib-ng", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    from zlib_ng import zlib_ng

    monkeypatch.setattr(_inflate, "backend", zlib_ng if request.param == "zlib-ng" else zlib)
    return str(request.param)


def _refused(data: bytes, words: str) -> None:
    problem = _check_png(data)
    assert problem is not None and words in problem, problem
    with pytest.raises(EmptyResult, match="corrupt PNG"):
        verify_bytes(data)


def test_the_dependency_is_the_fast_inflater() -> None:
    assert _inflate.name == "zlib-ng"


def test_a_whole_image_passes(inflater: str) -> None:
    assert _check_png(_png(zlib.compress(bytes(_raw())))) is None


def test_a_truncated_idat_is_refused(inflater: str) -> None:
    """Cut anywhere before the stream's last data byte (CRCs right): refused. A stream whose
    pixels are all there but whose 4-byte Adler-32 trailer is missing passes, as in Pillow's
    full decode (the pixels are whole; a wrong trailer, below, is refused)."""
    stream = zlib.compress(bytes(_raw()))
    for cut in (1, 100, len(stream) // 2, len(stream) - 5):
        _refused(_png(stream[:cut]), "")


def test_a_bad_crc_is_refused(inflater: str) -> None:
    data = bytearray(_png(zlib.compress(bytes(_raw()))))
    data[60] ^= 0x10  # inside IDAT's body; its CRC no longer matches
    _refused(bytes(data), "CRC")


def test_a_bad_adler32_is_refused(inflater: str) -> None:
    """Damage only the stream's own checksum (the chunk CRC recomputed to match)."""
    stream = bytearray(zlib.compress(bytes(_raw())))
    stream[-1] ^= 1
    _refused(_png(bytes(stream)), "does not inflate")


def test_a_stream_shorter_than_the_header_declares_is_refused(inflater: str) -> None:
    stream = zlib.compress(bytes(_raw()))  # HEIGHT rows, a complete and valid stream
    _refused(_png(stream, height=HEIGHT + 1), "ends early")
    _refused(_png(zlib.compress(bytes(_raw())[:-1])), "ends early")  # one byte short


@pytest.mark.parametrize("row", [0, 1, HEIGHT // 2, HEIGHT - 1])
def test_a_bad_filter_byte_is_refused(inflater: str, row: int) -> None:
    raw = _raw()
    raw[row * STRIDE] = 5 + row % 250
    _refused(_png(zlib.compress(bytes(raw))), "filter")


def test_a_tiny_idat_that_inflates_hugely_is_inflated_only_as_far_as_declared(
        inflater: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16 x 16 image whose ~64 KB stream would inflate to 64 MiB: no more than the 16
    scanlines the header declares (plus zlib's one piece) is ever asked for or produced."""
    comp = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    stream = b"".join(comp.compress(zeros) for _ in range(64)) + comp.flush()
    assert len(stream) < 100_000
    asked: list[int] = []
    produced: list[int] = []
    real = _inflate.backend

    class Counting:
        def __init__(self) -> None:
            self.inner = real.decompressobj()

        def decompress(self, data: Any, max_length: int = 0) -> bytes:
            asked.append(max_length)
            out: bytes = self.inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    class Backend:
        decompressobj = Counting

    monkeypatch.setattr(_inflate, "backend", Backend)
    expected = 16 * (1 + 16 * 3)
    assert _check_png(_png(stream, 16, 16)) is None  # Pillow too decodes the declared rows only
    assert all(0 < n <= expected for n in asked)
    assert sum(produced) == expected


def test_zlib_ng_and_zlib_agree_on_every_damaged_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit flips, cuts and inserted bytes in the deflate stream (CRCs fixed up, so only the
    inflater can tell): zlib-ng accepts exactly the PNGs the standard library's zlib accepts."""
    from zlib_ng import zlib_ng

    rng = random.Random(16)
    raw = bytes(_raw())
    streams = [zlib.compress(raw, level) for level in (1, 6, 9)]
    verdicts: dict[str, list[bool]] = {}
    cases = []
    for _ in range(400):
        stream = bytearray(rng.choice(streams))
        for _ in range(rng.randint(0, 2)):  # none: whole; a cut in the trailer: pixels whole
            at = rng.randrange(len(stream) - 4, len(stream)) if rng.random() < 0.2 else \
                rng.randrange(len(stream))
            how = rng.random()
            if how < 0.6:
                stream[at] ^= 1 << rng.randrange(8)
            elif how < 0.8:
                del stream[at:]
            else:
                stream[at:at] = rng.randbytes(rng.randint(1, 4))
            if not stream:
                stream = bytearray(b"x")
        cases.append(_png(bytes(stream)))
    for name, backend in (("zlib-ng", zlib_ng), ("zlib", zlib)):
        monkeypatch.setattr(_inflate, "backend", backend)
        verdicts[name] = [_check_png(data) is None for data in cases]
    assert verdicts["zlib-ng"] == verdicts["zlib"]
    assert 0 < sum(verdicts["zlib"]) < len(cases)  # both kinds of case were made
