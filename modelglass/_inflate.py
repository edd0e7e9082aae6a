"""The inflater the PNG check uses: zlib-ng when installed, else the standard library's zlib.

Checking a PNG's pixels means inflating its whole ``IDAT`` stream; that inflate is most of the
CPU a generated image costs us (1024 x 1024 RGB, 3 MB of scanlines from ~45 KB: 1.4 ms with
zlib, 0.26 ms with zlib-ng 2.3, measured on the 2-core build machine). zlib-ng is the same
inflate (same format, same checks: a bad Adler-32 or a broken stream is an error, as with zlib),
only faster; ``tests/test_verify_png.py`` and ``tests/test_png_inflate.py`` run every
corruption case through both and compare their verdicts on 400 damaged streams.
"""

from __future__ import annotations

import zlib
from typing import Any


def _pick() -> tuple[Any, tuple[type[BaseException], ...], str]:
    try:
        from zlib_ng import zlib_ng
    except ImportError:  # a platform without its wheel: the stdlib's zlib checks the same things
        return zlib, (zlib.error,), "zlib"
    ng_error: Any = zlib_ng.error  # a class (its stub calls it an instance)
    return zlib_ng, (ng_error, zlib.error), "zlib-ng"


#: The module whose ``decompressobj()`` inflates, the errors it raises, and its name.
backend, errors, name = _pick()


def decompressobj() -> Any:
    """A fresh inflater (``zlib.decompressobj`` interface: ``decompress(data, max_length)``,
    ``unconsumed_tail``, ``eof``); its failures are instances of :data:`errors`."""
    return backend.decompressobj()
