"""gpt-image-2's size rules (655,360..8,294,400 pixels, aspect ≤ 3:1, sides multiples of 16 up to
3840), which JSON Schema cannot state: kept as ``size_rules`` in its schema files (OpenAI and
fal), applied by planning even where the catalog's geometry does not say them, and enforced by
the simulators in each provider's own error shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import _sim_fixtures
import fal_client
import openai
import pytest

import modelglass as mg
from modelglass._wire_fit import check_payload
from modelglass.catalog._schema import Geometry
from modelglass.catalog._wire_schema import input_schema
from modelglass.errors import InvalidRequest
from modelglass.plan import plan_call
from modelglass.result import FateKind
from modelglass.testing import Simulator

PROMPT = "a lighthouse at dusk"
RULES = {"multiple_of": 16, "max_side": 3840, "max_aspect": 3, "min_pixels": 655_360,
         "max_pixels": 8_294_400}
KEYS = ("gpt-image-2@openai", "gpt-image-2@fal")


@pytest.fixture(scope="module")
def cat() -> mg.Catalog:
    return mg.Catalog.default()


def _loose(view: Any) -> Any:
    """The offer with a geometry that knows none of the rules (as a careless overlay would)."""
    return dataclasses.replace(view, geometry=Geometry(multiple_of=16, default_size="1024x1024"))


def test_both_gpt_image_2_schemas_state_the_same_rules() -> None:
    for provider, endpoint in (("openai", "gpt-image-2"), ("fal", "openai/gpt-image-2")):
        schema = input_schema(provider, endpoint)
        assert schema is not None and schema.size_rules == RULES, provider


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("size", ["512x512", "1024x576", "1024x256", "3840x3840"])
def test_a_size_outside_the_rules_is_mapped_to_the_nearest_allowed(cat: mg.Catalog, key: str,
                                                                   size: str) -> None:
    view = _loose(cat.offer(key))
    schema = input_schema(view.provider, view.endpoint)
    assert schema is not None
    call = plan_call(mg.ImageRequest(prompt=PROMPT, size=size), view)
    w, h = call.planned.width, call.planned.height
    assert schema.size_rule_problems(w, h) == []
    sent = call.payload.get("size") or call.payload["image_size"]
    assert sent in (f"{w}x{h}", {"width": w, "height": h})
    fate = next(f for f in call.fates if f.control == "size")
    assert fate.kind is FateKind.approximated and "655,360..8,294,400 pixels" in fate.reason
    check_payload(call.payload, schema, view)  # nothing left for the provider to refuse
    want_w, want_h = (int(p) for p in size.split("x"))
    assert abs((w / h) / (want_w / want_h) - 1) < 0.02 or max(want_w, want_h) > 3 * min(
        want_w, want_h)


def test_512_square_becomes_816_square(cat: mg.Catalog) -> None:
    for key in KEYS:
        call = plan_call(mg.ImageRequest(prompt=PROMPT, size="512x512"), _loose(cat.offer(key)))
        assert (call.planned.width, call.planned.height) == (816, 816), key


@pytest.mark.parametrize("key", KEYS)
def test_strict_refuses_a_size_outside_the_rules(cat: mg.Catalog, key: str) -> None:
    with pytest.raises(InvalidRequest) as ei:
        plan_call(mg.ImageRequest(prompt=PROMPT, size="512x512", strict=True),
                  _loose(cat.offer(key)))
    assert ei.value.field == "size"


def test_a_fal_preset_below_the_pixel_floor_is_a_violation() -> None:
    schema = input_schema("fal", "openai/gpt-image-2")
    assert schema is not None
    bad = schema.violations({"prompt": PROMPT, "image_size": "landscape_16_9"})  # 1024x576
    assert [v.field for v in bad] == ["image_size"] and "589,824" in bad[0].message
    assert schema.violations({"prompt": PROMPT, "image_size": "landscape_4_3"}) == []


# -- the simulators refuse in the providers' own shapes ----------------------------------------------

sim = _sim_fixtures.sim_fixture(poll_interval=0.01)


@pytest.mark.parametrize("size,problem", [({"width": 512, "height": 512}, "total pixels"),
                                          ({"width": 3072, "height": 960}, "aspect"),
                                          ({"width": 3840, "height": 3840}, "total pixels")])
def test_fal_simulator_refuses_gpt_image_2_sizes_outside_the_rules(
        sim: Simulator, size: dict[str, int], problem: str) -> None:
    sim.reset()
    handle = fal_client.SyncClient().submit("openai/gpt-image-2",
                                            {"prompt": PROMPT, "image_size": size})
    with pytest.raises(fal_client.client.FalClientHTTPError) as ei:
        handle.get()
    assert ei.value.status_code == 422
    item = ei.value.message[0]
    assert item["loc"] == ["body", "image_size"] and item["type"] == "value_error"
    assert problem in item["msg"] and item["input"] == size
    assert sim.billed("fal") == 0
    ok = fal_client.SyncClient().run("openai/gpt-image-2",
                                     {"prompt": PROMPT, "image_size": {"width": 816,
                                                                       "height": 816}})
    assert ok["images"]


def test_openai_simulator_refuses_gpt_image_2_below_the_pixel_floor(sim: Simulator) -> None:
    sim.reset()
    with pytest.raises(openai.BadRequestError) as ei:
        openai.OpenAI().images.generate(model="gpt-image-2", prompt=PROMPT, size="512x512")
    assert ei.value.param == "size" and "655,360" in str(ei.value)
    assert sim.billed("openai") == 0
