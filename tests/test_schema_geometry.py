"""The catalog's geometry never promises a size the endpoint's published schema refuses.

For every hosted offer whose stored input schema bounds the output's sides (``width``/``height``
fields, or the ``{width, height}`` branch of fal's ``image_size``), the offer's effective
geometry (the model's, merged with the offer's) stays inside those bounds: routing's resolution
ceiling must not route a print to an endpoint that cannot make it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import modelglass as mg
from modelglass._wire_fit import schema_of
from modelglass.catalog._schema import Geometry
from modelglass.catalog._wire_schema import InputSchema
from modelglass.plan import plan_call

HOSTED = ("openai", "fal", "replicate")


def _side_bounds(schema: InputSchema) -> tuple[float, float] | None:
    """``(min, max)`` of a side in the schema, None where it states no numeric bound."""
    if "width" in schema.properties:
        specs = [schema.spec("width"), schema.spec("height")]
    else:
        obj = schema.object_branch("image_size")
        if obj is None:
            return None
        specs = [obj["properties"].get(k, {}) for k in ("width", "height")]
    los = [s["minimum"] for s in specs if "minimum" in s]
    his = [s["maximum"] for s in specs if "maximum" in s]
    if not los and not his:
        return None
    return (max(los) if los else 1, min(his) if his else math.inf)


def _sides(size: str) -> list[int]:
    return [int(p) for p in size.split("x")]


def _promise(geo: Geometry) -> tuple[float, float | None]:
    """The smallest side the geometry lets the planner ask for and the largest it promises
    (None: no ceiling stated; the fit step then scales an oversized request into the schema)."""
    listed = [*(geo.sizes or []), *(geo.aspect_ratios or {}).values()]
    sides = [s for size in listed for s in _sides(size)]
    free = any(getattr(geo, k) is not None for k in ("multiple_of", "min_side", "max_side",
                                                      "min_megapixels", "max_megapixels"))
    if free or not listed:
        sides.append(geo.min_side or geo.multiple_of or 1)
        if geo.max_side:
            sides.append(geo.max_side)
    high = max(sides) if (listed or geo.max_side) else None
    return min(sides), high


def _bounded_offers() -> list[tuple[str, Any, tuple[float, float]]]:
    out = []
    for view in mg.Catalog.default().offers():
        schema = schema_of(view) if view.provider in HOSTED else None
        bounds = _side_bounds(schema) if schema is not None else None
        if bounds is not None:
            out.append((view.key, view, bounds))
    return out


OFFERS = _bounded_offers()


def test_the_check_covers_the_offers_of_the_follow_up() -> None:
    keys = {k for k, _, _ in OFFERS}
    assert {"flux-2-dev@fal", "flux-2-flash@fal", "gpt-image-2@fal", "seedream-4.5@fal"} <= keys


@pytest.mark.parametrize("key,view,bounds", OFFERS, ids=[k for k, _, _ in OFFERS])
def test_geometry_stays_inside_the_schema_side_bounds(key: str, view: Any,
                                                      bounds: tuple[float, float]) -> None:
    low, high = _promise(view.geometry)
    assert high is None or high <= bounds[1], (f"{key}: geometry reaches a {high:.0f} px side; "
                                               f"{view.endpoint} takes at most {bounds[1]:g}")
    assert low >= bounds[0], (f"{key}: geometry allows a {low:.0f} px side; "
                              f"{view.endpoint} takes at least {bounds[0]:g}")
    mp = view.geometry.max_mp()
    assert mp is None or mp * 1e6 <= bounds[1] ** 2, f"{key}: {mp} MP ceiling"


def test_flux_2_on_fal_does_not_promise_a_300dpi_8x10_print() -> None:
    """8x10 in at 300 dpi is 2400x3000: above fal's 2048 px side for FLUX.2 [dev] / [flash]."""
    cat = mg.Catalog.default()
    for key in ("flux-2-dev@fal", "flux-2-flash@fal"):
        planned = plan_call(mg.ImageRequest(prompt="a poster", print_size="8x10in", dpi=300),
                            cat.offer(key)).planned
        assert max(planned.width, planned.height) <= 2048, key
        small = plan_call(mg.ImageRequest(prompt="an icon", size="256x256"), cat.offer(key))
        assert min(small.planned.width, small.planned.height) >= 512, key
