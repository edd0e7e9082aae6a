"""``catalog sync``: a provider's unit price mapped onto the catalog's price, kind kept."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..catalog._schema import Price, PriceKind
from ._sync_guard import unit_price_problem

__all__ = ["price_from_unit"]


# ------------------------------------------------------------------------------------------------
# Mapping a provider's unit price onto a catalog price
# ------------------------------------------------------------------------------------------------
def _unit(name: str) -> str | None:
    u = name.strip().lower().replace(" ", "_")
    if u in ("image", "images", "per_image", "output_image"):
        return "image"
    if u in ("megapixel", "megapixels", "mp", "per_megapixel"):
        return "megapixel"
    return None


def price_from_unit(current: Price, unit_price: Any, unit: str,
                    currency: str = "USD") -> tuple[Price | None, str]:
    """The catalog price updated to a provider's ``unit_price`` per ``unit``, and a note.

    The catalog keeps its kind and structure (rounding, extra-megapixel rate, resolution
    multipliers); only the base price is replaced, and the other rates scaled by the same ratio:
    an account discount applies to the whole formula. A price per image for an offer priced per
    megapixel (or per resolution) is taken as the price of its base size (1 MP, the 1K bucket),
    never as a flat price for every size. None when the value, unit or currency cannot be mapped
    onto the catalog's kind.

    >>> from modelglass.catalog import Price
    >>> new, _ = price_from_unit(Price(kind="first_megapixel", usd=0.03,
    ...                                usd_per_extra_megapixel=0.015), 0.024, "megapixels")
    >>> round(new.usd, 6), round(new.usd_per_extra_megapixel, 6)
    (0.024, 0.012)
    >>> new, _ = price_from_unit(Price(kind="per_megapixel", usd_per_megapixel=0.025,
    ...                                round_up_megapixels=True), 0.025, "image")
    >>> new.kind.value, new.usd_per_megapixel
    ('per_megapixel', 0.025)
    """
    if currency.upper() != "USD":
        return None, f"priced in {currency}; the catalog prices in USD"
    problem = unit_price_problem(unit_price)
    if problem:
        return None, problem
    value = float(unit_price)
    u = _unit(unit)
    if u is None:
        return None, f"billing unit {unit!r} does not map onto a catalog price kind"
    kind = current.kind
    data = current.model_dump(exclude_none=True)
    base_note = "" if u == ("image" if kind in (PriceKind.per_image, PriceKind.per_image_resolution)
                            else "megapixel") else \
        f"a price per {u} taken as the base price; the catalog's {kind.value} scaling kept"

    def scaled(base: float | None, fields: Iterable[str]) -> dict[str, Any]:
        ratio = value / base if base else 1.0
        out = dict(data)
        for f in fields:
            if out.get(f) is not None:
                out[f] = out[f] * ratio
        return out

    if kind is PriceKind.per_image and u == "image":
        return Price.model_validate({**data, "usd": value}), ""
    if kind is PriceKind.per_megapixel:
        return Price.model_validate({**data, "usd_per_megapixel": value}), base_note
    if kind is PriceKind.first_megapixel:
        new = scaled(current.usd, ["usd_per_extra_megapixel"])
        return Price.model_validate({**new, "usd": value}), \
            "; ".join(x for x in (base_note, "extra-megapixel rate scaled by the same ratio") if x)
    if kind is PriceKind.per_image_resolution:
        return Price.model_validate({**data, "usd": value}), base_note
    if kind in (PriceKind.unknown, PriceKind.per_image):
        note = "billing unit changed" if kind is not PriceKind.unknown else "was unknown"
        if u == "image":
            return Price(kind=PriceKind.per_image, usd=value), note
        return Price(kind=PriceKind.per_megapixel, usd_per_megapixel=value,
                     round_up_megapixels=True), note + "; megapixels rounded up (fal bills whole MP)"
    return None, (f"a price per {u} does not map onto the catalog's {kind.value} price; "
                  "kept the catalog's")


def _same(a: Price, b: Price) -> bool:
    da, db = a.model_dump(exclude_none=True), b.model_dump(exclude_none=True)
    if set(da) != set(db):
        return False
    for k, va in da.items():
        vb = db[k]
        if isinstance(va, float) and isinstance(vb, (int, float)):
            if not math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif va != vb:
            return False
    return True
