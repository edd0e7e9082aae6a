"""ImageRequest parsing and validation: bad input says which field and what is allowed."""

from __future__ import annotations

import pytest

import modelglass as mg
from modelglass.request import parse_aspect_ratio, parse_print_size, parse_size


def test_size_parses_and_normalises() -> None:
    assert parse_size("1536x1024") == (1536, 1024)
    assert parse_size(" 512 X 768 ") == (512, 768)
    assert mg.ImageRequest(prompt="p", size="512 x 768").size == "512x768"


@pytest.mark.parametrize("bad", ["1024", "1024x", "axb", "10x10", "99999x1024", "-5x10"])
def test_bad_size_names_the_field_and_the_format(bad: str) -> None:
    with pytest.raises(mg.InvalidRequest) as e:
        mg.ImageRequest(prompt="p", size=bad)
    assert e.value.field == "size"
    assert "size" in str(e.value)


def test_aspect_ratio_bounds() -> None:
    assert parse_aspect_ratio("16:9") == (16.0, 9.0)
    with pytest.raises(mg.InvalidRequest, match="aspect_ratio"):
        mg.ImageRequest(prompt="p", aspect_ratio="20:1")
    with pytest.raises(mg.InvalidRequest, match="W:H"):
        mg.ImageRequest(prompt="p", aspect_ratio="wide")


def test_print_sizes_in_inches_cm_mm_and_paper_names() -> None:
    assert parse_print_size("8x10in") == (8.0, 10.0)
    w, h = parse_print_size("20x30cm")
    assert abs(w - 20 / 2.54) < 1e-9 and abs(h - 30 / 2.54) < 1e-9
    w, h = parse_print_size("A4")
    assert abs(w - 210 / 25.4) < 1e-9
    req = mg.ImageRequest(prompt="p", print_size="8x10in", dpi=300, quality="print")
    assert req.pixel_size() == (2400, 3000)
    assert mg.ImageRequest(prompt="p", print_size="4x6in").pixel_size() == (1200, 1800)  # 300 dpi default


def test_only_one_geometry_field() -> None:
    with pytest.raises(mg.InvalidRequest, match="only one of"):
        mg.ImageRequest(prompt="p", size="1024x1024", aspect_ratio="1:1")


def test_dpi_without_print_size_is_refused() -> None:
    with pytest.raises(mg.InvalidRequest, match="dpi only applies"):
        mg.ImageRequest(prompt="p", dpi=300)


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_prompt_is_refused(prompt: str) -> None:
    with pytest.raises(mg.InvalidRequest, match="prompt"):
        mg.ImageRequest(prompt=prompt)


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("seed", -1, "greater than or equal to 0"),
    ("seed", 2**32, "less than or equal to 4294967295"),
    ("steps", 0, "greater than or equal to 1"),
    ("cfg", -0.5, "greater than or equal to 0"),
    ("n", 0, "greater than or equal to 1"),
    ("sampler", "k_lms", "euler"),
    ("quality", "Ultra HD!", "draft"),  # a policy may name its own axes; not this
])
def test_out_of_range_fields_say_what_is_allowed(field: str, value: object, allowed: str) -> None:
    with pytest.raises(mg.InvalidRequest) as e:
        mg.ImageRequest(prompt="p", **{field: value})
    assert field in str(e.value) and allowed in str(e.value)
    assert e.value.field == field


def test_unknown_field_points_to_provider_options() -> None:
    with pytest.raises(mg.InvalidRequest, match="provider_options"):
        mg.ImageRequest(prompt="p", guidance_scale=3)  # type: ignore[call-arg]


def test_requested_controls_lists_only_what_was_set() -> None:
    assert mg.ImageRequest(prompt="p").requested_controls() == ["prompt"]
    req = mg.ImageRequest(prompt="p", negative_prompt="blurry", cfg=5, seed=1, aspect_ratio="3:2", n=2)
    assert req.requested_controls() == ["prompt", "negative_prompt", "cfg", "seed", "size", "n"]


def test_blank_negative_prompt_counts_as_unset() -> None:
    assert mg.ImageRequest(prompt="p", negative_prompt="  ").negative_prompt is None


def test_invalid_request_is_a_modelglass_error_and_a_value_error() -> None:
    with pytest.raises(mg.ModelglassError):
        mg.ImageRequest(prompt="")
    with pytest.raises(ValueError):
        mg.ImageRequest(prompt="")
