"""Which scripts the simulators can draw: the fonts, and :func:`can_draw`.

Both the simulators (:mod:`modelglass.testing`, which draw quoted prompt text into their images)
and the text check (:mod:`modelglass.checks`, which says ``unknown`` rather than ``fail`` for text
a simulator could not draw) need this; it lives at the package root so the library's checks never
import the simulators package.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["CJK_FONTS", "can_draw", "cjk_font", "latin_font", "needs_cjk"]

#: Fonts with Han and kana glyphs, tried in order (Debian: fonts-wqy-microhei, fonts-noto-cjk,
#: fonts-droid-fallback); ``MODELGLASS_SIM_CJK_FONT`` names another.
CJK_FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")


@lru_cache(maxsize=64)
def latin_font(size: int) -> Any:
    """Pillow's bundled font at ``size`` (FreeType; a fixed-size bitmap font without it)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=64)
def cjk_font(size: int) -> Any:
    """A font with Han and kana at ``size``, or None when none is installed."""
    import os

    from PIL import ImageFont

    for path in (os.environ.get("MODELGLASS_SIM_CJK_FONT"), *CJK_FONTS):
        if path and os.path.isfile(path):
            return ImageFont.truetype(path, size)
    return None


def needs_cjk(text: str) -> bool:
    """Whether ``text`` holds characters past Latin and its neighbours (Han, kana, ...)."""
    return any(ord(c) > 0x2E7F for c in text)


def can_draw(text: str) -> bool:
    """Whether the simulators have a font for every script in ``text`` (Latin always; Han and
    kana with a CJK font installed). Text they cannot draw is left out of the image, and the
    text check says ``unknown`` for it rather than ``fail``."""
    return not needs_cjk(text) or cjk_font(12) is not None
