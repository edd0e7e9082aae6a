"""Planning the output size: snap what the request asks for (``size``, ``print_size``,
``aspect_ratio``, else the quality axis's target) to what the offer's geometry makes, and say how
(the ``size`` fate). Part of the planner (``plan.py``); no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .request import parse_aspect_ratio, parse_size
from .result import Fate, FateKind

if TYPE_CHECKING:
    from .catalog import Geometry, OfferView
    from .request import ImageRequest

__all__ = ["SizeChoice", "geometry_fits", "plan_geometry", "snap_size"]

_ASPECT_TOLERANCE = 0.01  # a 1 % aspect difference still counts as "the aspect you asked for"


@dataclass(frozen=True)
class SizeChoice:
    """A size the offer can produce; ``ratio`` is the table key when the offer takes a ratio."""

    width: int
    height: int
    ratio: str | None = None


def _log_ratio(a: float, b: float) -> float:
    return abs(math.log(a / b))


def _parse(s: str) -> tuple[int, int]:
    w, h = (int(p) for p in s.lower().split("x"))
    return w, h


#: Parsed size tables by their text (a catalog has few distinct ones).
_TABLES: dict[tuple[tuple[str | None, str], ...], tuple[SizeChoice, ...]] = {}


def _table(listed: tuple[tuple[str | None, str], ...]) -> tuple[SizeChoice, ...]:
    """The sizes a geometry lists (``(ratio or None, "WxH")`` each), parsed once."""
    hit = _TABLES.get(listed)
    if hit is None:
        if len(_TABLES) > 4096:
            _TABLES.clear()
        hit = _TABLES[listed] = tuple(SizeChoice(*_parse(s), ratio=r) for r, s in listed)
    return hit


#: Snapped sizes by (geometry identity, width, height, aspect_only). Geometries are frozen
#: catalog objects; the entry holds its geometry, so the id cannot be reused while it is cached.
_SNAPS: dict[tuple[int, float, float, bool], tuple[Geometry, SizeChoice]] = {}


def snap_size(geo: Geometry, width: float, height: float, *, aspect_only: bool = False) -> SizeChoice:
    """The size this geometry allows that is nearest to ``width``×``height``.

    Nearest in aspect first, then in area. A free range keeps the aspect and scales into the
    megapixel and side limits, rounding to ``multiple_of`` without leaving the limits.
    """
    key = (id(geo), width, height, aspect_only)
    hit = _SNAPS.get(key)
    if hit is not None and hit[0] is geo:
        return hit[1]
    choice = _snap(geo, width, height, aspect_only)
    if len(_SNAPS) > 4096:
        _SNAPS.clear()
    _SNAPS[key] = (geo, choice)
    return choice


def _snap(geo: Geometry, width: float, height: float, aspect_only: bool) -> SizeChoice:
    want_aspect = width / height
    want_area = width * height
    table: tuple[SizeChoice, ...] = ()
    if geo.sizes:
        table = _table(tuple((None, s) for s in geo.sizes))
    elif geo.aspect_ratios:
        table = _table(tuple(geo.aspect_ratios.items()))
    if table:
        def key(c: SizeChoice) -> tuple[float, float, int, int]:
            # Aspect within 0.5 % counts as equal so area decides between sizes of one ratio.
            a = round(_log_ratio(c.width / c.height, want_aspect), 3)
            area = 0.0 if aspect_only else _log_ratio(c.width * c.height, want_area)
            return (a, area, c.width, c.height)
        return min(table, key=key)
    return _snap_free(geo, width, height)


def _snap_free(geo: Geometry, width: float, height: float) -> SizeChoice:
    m = geo.multiple_of or 1
    aspect = width / height
    if geo.max_aspect:
        aspect = min(max(aspect, 1 / geo.max_aspect), geo.max_aspect)
    area = width * height
    if geo.max_megapixels:
        area = min(area, geo.max_megapixels * 1e6)
    if geo.min_megapixels:
        area = max(area, geo.min_megapixels * 1e6)
    w = math.sqrt(area * aspect)
    h = w / aspect
    lo = geo.min_side or m
    hi = geo.max_side or 1 << 20
    # Scale into the side limits, keeping the aspect where both sides can fit.
    for _ in range(2):
        if max(w, h) > hi:
            s = hi / max(w, h)
            w, h = w * s, h * s
        if min(w, h) < lo:
            s = lo / min(w, h)
            w, h = w * s, h * s
    w, h = min(max(w, lo), hi), min(max(h, lo), hi)

    def fit(v: float) -> int:
        r = max(m, round(v / m) * m)
        while r > hi and r - m >= m:
            r -= m
        while r < lo:
            r += m
        return r

    wi, hi_ = fit(w), fit(h)
    max_px = geo.max_megapixels * 1e6 if geo.max_megapixels else None
    min_px = geo.min_megapixels * 1e6 if geo.min_megapixels else None
    # Rounding can push the area just outside the megapixel range: step the longer side back in.
    guard = 0
    while max_px and wi * hi_ > max_px and guard < 10_000:
        if wi >= hi_ and wi - m >= lo:
            wi -= m
        elif hi_ - m >= lo:
            hi_ -= m
        else:
            break
        guard += 1
    while min_px and wi * hi_ < min_px and guard < 20_000:
        if wi <= hi_ and wi + m <= hi:
            wi += m
        elif hi_ + m <= hi:
            hi_ += m
        else:
            break
        guard += 1
    if geo.max_aspect:
        # Rounding to the multiple can tip a clamped aspect just past the limit: pull it back.
        while max(wi / hi_, hi_ / wi) > geo.max_aspect + 1e-9 and guard < 30_000:
            longer_is_w = wi > hi_
            if longer_is_w and wi - m >= lo:
                wi -= m
            elif not longer_is_w and hi_ - m >= lo:
                hi_ -= m
            elif longer_is_w and hi_ + m <= hi:
                hi_ += m
            elif not longer_is_w and wi + m <= hi:
                wi += m
            else:
                break
            guard += 1
    return SizeChoice(wi, hi_)


def geometry_fits(geo: Geometry, width: int, height: int) -> bool:
    """True when ``width``×``height`` is a size this geometry can produce exactly."""
    if geo.sizes:
        return f"{width}x{height}" in geo.sizes
    if geo.aspect_ratios:
        return f"{width}x{height}" in geo.aspect_ratios.values()
    m = geo.multiple_of or 1
    if width % m or height % m:
        return False
    if geo.min_side and min(width, height) < geo.min_side:
        return False
    if geo.max_side and max(width, height) > geo.max_side:
        return False
    mp = width * height / 1e6
    if geo.max_megapixels and mp > geo.max_megapixels + 1e-9:
        return False
    if geo.min_megapixels and mp < geo.min_megapixels - 1e-9:
        return False
    return not (geo.max_aspect and max(width / height, height / width) > geo.max_aspect + 1e-9)


def _describe_delta(want: tuple[float, float], got: tuple[int, int]) -> str:
    a_want, a_got = want[0] / want[1], got[0] / got[1]
    parts = []
    a_err = abs(a_got / a_want - 1) * 100
    if a_err >= 0.05:
        parts.append(f"aspect off by {a_err:.1f} %")
    area_change = (got[0] * got[1]) / (want[0] * want[1]) - 1
    if abs(area_change) >= 0.0005:
        parts.append(f"area {area_change * 100:+.1f} %")
    return ", ".join(parts) or "rounded"


#: Catalog sizes (axis targets, default sizes) parsed once; a text that does not parse raises.
_PARSED: dict[str, tuple[int, int]] = {}


def _parsed(text: str) -> tuple[int, int]:
    hit = _PARSED.get(text)
    if hit is None:
        if len(_PARSED) > 4096:
            _PARSED.clear()
        hit = _PARSED[text] = parse_size(text)
    return hit


def plan_geometry(request: ImageRequest, offer: OfferView, fates: dict[str, Fate],
                  quality: str) -> tuple[int, int, str | None, dict[str, Any] | None]:
    """The pixel size to ask ``offer`` for: ``(width, height, named ratio or None, upscale step
    or None)``, with the ``size`` fate in ``fates`` saying how it meets the request's ``size``,
    ``print_size`` or ``aspect_ratio`` (else the quality axis's target size)."""
    geo = offer.geometry
    axis = offer.quality_axes.get(quality)
    upscale = None
    # print_size without dpi: the quality axis's dpi (print 300, hero 150, draft 72).
    dpi = request.dpi or (axis.dpi if axis is not None else 300)
    px = request.pixel_size(default_dpi=dpi)
    if request.size or request.print_size:
        assert px is not None
        want = (float(px[0]), float(px[1]))
        choice = snap_size(geo, *want)
        got = (choice.width, choice.height)
        label = request.size or f"{request.print_size} at {dpi} dpi"
        if request.print_size and (got[0] < px[0] or got[1] < px[1]):
            factor = max(px[0] / got[0], px[1] / got[1])
            upscale = {"from": f"{got[0]}x{got[1]}", "to": f"{px[0]}x{px[1]}",
                       "factor": round(factor, 3)}
            fates["size"] = Fate("size", FateKind.approximated, label, f"{got[0]}x{got[1]}",
                                 f"{offer.key} makes at most {got[0]}x{got[1]} at this aspect; "
                                 f"an upscale step of ×{factor:.2f} is needed to reach "
                                 f"{px[0]}x{px[1]} px", _describe_delta(want, got))
        elif got == px:
            fates["size"] = Fate("size", FateKind.mapped if choice.ratio else FateKind.honored,
                                 label, f"{got[0]}x{got[1]}",
                                 f"sent as aspect ratio {choice.ratio}" if choice.ratio else "")
        elif request.print_size:
            # More pixels than the print needs: the print is sharper, not smaller.
            fates["size"] = Fate("size", FateKind.approximated, label, f"{got[0]}x{got[1]}",
                                 "nearest size the offer makes; the printer scales it",
                                 _describe_delta(want, got))
        else:
            allowed = _allowed_text(geo)
            fates["size"] = Fate("size", FateKind.approximated, request.size, f"{got[0]}x{got[1]}",
                                 f"nearest size {offer.key} makes ({allowed})",
                                 _describe_delta(want, got))
        return choice.width, choice.height, choice.ratio, upscale

    target = _parsed(axis.target_size) if axis else (
        _parsed(geo.default_size) if geo.default_size else (1024, 1024))
    if request.aspect_ratio:
        aw, ah = parse_aspect_ratio(request.aspect_ratio)
        area = target[0] * target[1]
        want = (math.sqrt(area * aw / ah), math.sqrt(area * ah / aw))
        choice = snap_size(geo, *want, aspect_only=True)
        got_aspect = choice.width / choice.height
        err = abs(got_aspect / (aw / ah) - 1)
        if choice.ratio and _same_ratio(choice.ratio, request.aspect_ratio):
            # The provider takes this ratio by name; its own pixel size for it is what you get.
            fates["size"] = Fate("size", FateKind.mapped, request.aspect_ratio,
                                 f"{choice.width}x{choice.height}",
                                 f"sent as aspect ratio {choice.ratio}; the provider renders it "
                                 f"at {choice.width}x{choice.height}",
                                 f"aspect off by {err * 100:.1f} %" if err >= 0.0005 else None)
        elif err <= _ASPECT_TOLERANCE:
            kind = FateKind.mapped if choice.ratio else FateKind.honored
            fates["size"] = Fate("size", kind, request.aspect_ratio, f"{choice.width}x{choice.height}",
                                 f"sent as aspect ratio {choice.ratio}" if choice.ratio else
                                 f"{choice.width}x{choice.height} has aspect {request.aspect_ratio}"
                                 + (f" (within {err * 100:.1f} %)" if err else ""))
        else:
            fates["size"] = Fate("size", FateKind.approximated, request.aspect_ratio,
                                 f"{choice.width}x{choice.height}",
                                 f"nearest aspect {offer.key} makes ({_allowed_text(geo)})",
                                 f"aspect off by {err * 100:.1f} %")
        return choice.width, choice.height, choice.ratio, None

    choice = snap_size(geo, *target)
    return choice.width, choice.height, choice.ratio, None


def _same_ratio(a: str, b: str) -> bool:
    aw, ah = parse_aspect_ratio(a)
    bw, bh = parse_aspect_ratio(b)
    return abs(aw * bh - bw * ah) < 1e-9


def _allowed_text(geo: Geometry) -> str:
    if geo.sizes:
        return "sizes " + ", ".join(geo.sizes)
    if geo.aspect_ratios:
        return "aspect ratios " + ", ".join(geo.aspect_ratios)
    parts = []
    if geo.multiple_of:
        parts.append(f"multiples of {geo.multiple_of}")
    if geo.min_side or geo.max_side:
        parts.append(f"sides {geo.min_side or 1}..{geo.max_side or '∞'}")
    if geo.max_megapixels:
        parts.append(f"≤ {geo.max_megapixels:g} MP")
    if geo.min_megapixels:
        parts.append(f"≥ {geo.min_megapixels:g} MP")
    if geo.max_aspect:
        parts.append(f"aspect ≤ {geo.max_aspect:g}:1")
    return ", ".join(parts) or "any size"
