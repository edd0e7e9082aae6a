"""The OCR behind the text check: RapidOCR's PP-OCR models on onnxruntime, loaded lazily, once.

``pip install 'modelglass[check]'`` brings ``rapidocr`` and ``onnxruntime``. The models ship in
the ``rapidocr`` wheel; every model path is given explicitly, so RapidOCR never reaches for its
download code (it would otherwise fetch a missing model from the network). One engine per
process, behind a lock: an engine is not safe to call from two threads at once, and onnxruntime
already spreads one call over the cores.

Before OCR the image goes through our own preparation (:func:`prepare`): flattened on white,
scaled so its longest side is at most :data:`MAX_SIDE`, then padded with its own edge colour,
so text that touches the border is read whole instead of clipped by the detector.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MAX_SIDE", "Line", "engine_version", "prepare", "read_text"]

#: Longest side OCR sees (larger images are scaled down first; the detector works at ~736 px).
MAX_SIDE = 1280
#: Longest side the text detector works at.
DET_SIDE = 736
#: The border added around the image, as a fraction of its shorter side.
PAD = 0.04

_MODELS = {"Det": "PP-OCRv6_det_small.onnx", "Rec": "PP-OCRv6_rec_small.onnx",
           "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx"}
_lock = threading.Lock()
_engine: Any = None


@dataclass(frozen=True)
class Line:
    """One line of text OCR read: its text, its confidence (0–1) and its box's top-left corner."""

    text: str
    confidence: float
    x: float
    y: float


def _missing(exc: ImportError) -> ImportError:
    return ImportError(
        f"the text check needs RapidOCR on onnxruntime ({exc}); install them with "
        f"pip install 'modelglass[check]'")


def _load() -> Any:
    """The RapidOCR engine, built on first use from the models inside its wheel."""
    global _engine
    if _engine is not None:
        return _engine
    try:
        import rapidocr
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise _missing(exc) from exc
    root = Path(rapidocr.__file__).parent / "models"
    # The detector sees the image at most DET_SIDE on its longest side (RapidOCR's default
    # scales the *shortest* side up to 736, so a 1024² image ran at full size): 1.8 s → 0.7 s
    # per 1024² image on this loaded 2-core machine. Recognition still reads the crops at full
    # resolution: 22–40 px text, rotated 8° and blurred, read the same at 736, 960 and 1104.
    params: dict[str, Any] = {"Global.log_level": "error", "Det.limit_type": "max",
                              "Det.limit_side_len": DET_SIDE}
    for part, name in _MODELS.items():
        path = root / name
        if not path.is_file():  # never let RapidOCR fall back to downloading it
            raise _missing(ImportError(f"{path} is missing from the rapidocr wheel"))
        params[f"{part}.model_path"] = str(path)
    _engine = RapidOCR(params=params)
    return _engine


def engine_version() -> str:
    """``"rapidocr 3.10.0 PP-OCRv6"``: what reads the text (for ``CheckResult.checker``)."""
    try:
        from importlib.metadata import version

        return f"rapidocr {version('rapidocr')} PP-OCRv6 (onnxruntime {version('onnxruntime')})"
    except Exception:  # noqa: BLE001 - a version string must not fail a check
        return "rapidocr PP-OCRv6"


def prepare(data: bytes) -> Any:
    """The image as the OCR sees it: RGB on white, at most :data:`MAX_SIDE`, padded (a numpy
    array)."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            rgb = flat
        else:
            rgb = img.convert("RGB")
    if max(rgb.size) > MAX_SIDE:
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    pad = max(8, int(min(rgb.size) * PAD))
    edge: Any = rgb.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return np.asarray(ImageOps.expand(rgb, border=pad, fill=edge))


def read_text(data: bytes) -> list[Line]:
    """Every line of text in the image, in reading order (top to bottom, then left to right)."""
    with _lock:
        engine = _load()  # first: without the [check] extra this says what to install
    pixels = prepare(data)
    with _lock:
        out = engine(pixels)
    texts = getattr(out, "txts", None) or ()
    scores = getattr(out, "scores", None) or ()
    boxes = getattr(out, "boxes", None)
    lines = []
    for i, (text, score) in enumerate(zip(texts, scores, strict=False)):
        x = y = 0.0
        if boxes is not None and i < len(boxes):
            x, y = float(boxes[i][0][0]), float(boxes[i][0][1])
        lines.append(Line(str(text), float(score), x, y))
    # rows first: boxes whose tops lie within a few pixels count as one row
    return sorted(lines, key=lambda ln: (round(ln.y / 16), ln.x))
