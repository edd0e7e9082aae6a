"""Pixel sizes the simulated providers produce (wire-format notes §2.7 and §3.6)."""

from __future__ import annotations

from ..catalog._wire_schema import FAL_PRESETS

__all__ = ["FAL_PRESETS", "ONE_MP_SIZES", "ULTRA_SIZES", "size_for_aspect"]

# FLUX 1.1 [pro] ultra: about 4 MP per aspect ratio (fal and Replicate alike).
ULTRA_SIZES: dict[str, tuple[int, int]] = {
    "21:9": (3136, 1344), "16:9": (2752, 1536), "3:2": (2496, 1664), "4:3": (2368, 1792),
    "5:4": (2304, 1856), "1:1": (2048, 2048), "4:5": (1856, 2304), "3:4": (1792, 2368),
    "2:3": (1664, 2496), "9:16": (1536, 2752), "9:21": (1344, 3136),
}

# cog-flux aspect ratios at 1 MP (Replicate flux-schnell / flux-dev / flux-1.1-pro).
ONE_MP_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640), "3:2": (1216, 832),
    "2:3": (832, 1216), "4:5": (896, 1088), "5:4": (1088, 896), "3:4": (896, 1152),
    "4:3": (1152, 896), "9:16": (768, 1344), "9:21": (640, 1536),
}


def size_for_aspect(ratio: str, megapixels: float = 1.0) -> tuple[int, int] | None:
    """Width and height for ``ratio`` (``"W:H"``) at about ``megapixels``, multiples of 16.

    Known 1 MP ratios use the cog-flux table; others are computed. None if ``ratio`` is not W:H.
    """
    if megapixels == 1.0 and ratio in ONE_MP_SIZES:
        return ONE_MP_SIZES[ratio]
    try:
        a, b = (float(x) for x in ratio.split(":"))
    except ValueError:
        return None
    if a <= 0 or b <= 0:
        return None
    area = megapixels * 1024 * 1024
    width = (area * a / b) ** 0.5
    height = width * b / a
    return max(16, round(width / 16) * 16), max(16, round(height / 16) * 16)
