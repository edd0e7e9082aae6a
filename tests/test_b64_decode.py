"""The strict base64 decoder of inline images (``providers/_payload.decode_b64``): pybase64 when
installed, binascii's strict mode without it. Neither may take garbage for an image."""

from __future__ import annotations

import base64
import binascii
import builtins
import random
from typing import Any

import pytest

from modelglass.providers import _payload


def _binascii(s: str) -> bytes | None:
    try:
        return binascii.a2b_base64(s, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _ours(s: str) -> bytes | None:
    try:
        return _payload.decode_b64(s)
    except ValueError as exc:
        assert "invalid base64 image data" in str(exc)
        return None


def _fuzzed(rng: random.Random) -> str:
    s = base64.b64encode(rng.randbytes(rng.randrange(0, 14))).decode()
    for _ in range(rng.randrange(0, 3)):
        i, c = rng.randrange(len(s) + 1), rng.choice("AZaz09+/=\n -_\x00é")
        op = rng.randrange(3)
        s = s[:i] + c + s[i:] if op == 0 else s[:i] + s[i + 1:] if op == 1 else s[:i] + c + s[i + 1:]
    return s


def test_decode_b64_never_accepts_what_binascii_strict_mode_rejects() -> None:
    rng = random.Random(16)
    accepted = 0
    for _ in range(20_000):
        s = _fuzzed(rng)
        want, got = _binascii(s), _ours(s)
        if want is None:
            assert got is None, s  # garbage is never an image
        elif got is not None:
            assert got == want, s
            accepted += 1
        else:
            # the one difference allowed: padding after a complete group, e.g. "AAAA===="
            assert "=" in s and s.rstrip("=") and base64.b64encode(want).decode() != s, s
    assert accepted > 5_000  # the fuzz reaches valid strings too


@pytest.mark.parametrize("s", ["@@not base64@@", "QUJD\n", "QUJ", "QU=D", "QUJDé", " QUJD", "=QUJD"])
def test_decode_b64_rejects_garbage(s: str) -> None:
    with pytest.raises(ValueError, match="invalid base64 image data"):
        _payload.decode_b64(s)


def test_decode_b64_round_trips_a_large_image_body() -> None:
    data = random.Random(1).randbytes(300_000)
    assert _payload.decode_b64(base64.b64encode(data).decode()) == data


def test_without_pybase64_binascii_strict_mode_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pybase64(name: str, *args: Any, **kw: Any) -> Any:
        if name == "pybase64":
            raise ImportError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pybase64)
    fallback = _payload._strict_b64()
    assert fallback("QUJD") == b"ABC"
    with pytest.raises(binascii.Error):
        fallback("QU=D")
    assert fallback("AAAA====") == b"\x00\x00\x00"  # binascii's own (looser) padding rule
