"""Every stored input schema says where its facts come from (issue 15).

Each file under ``catalog/schemas`` names at least one URL in ``source`` and the date of that
source in ``as_of``; a field whose limits no source confirmed is listed in ``unconfirmed``, and
that list names fields the schema really has (a typo would hide the field it means).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

import modelglass as mg
from modelglass.catalog._wire_schema import schemas_dir
from modelglass.errors import InvalidRequest
from modelglass.plan import ProviderCall, plan_call

URL = re.compile(r"https?://[^\s)]+")
FILES = sorted(schemas_dir().rglob("*.json"))


def _doc(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _name(path: Path) -> str:
    return str(path.relative_to(schemas_dir()))


def test_the_shipped_schemas_are_all_found() -> None:
    assert len(FILES) >= 50
    assert {p.relative_to(schemas_dir()).parts[0] for p in FILES} == {"fal", "openai", "replicate"}


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_each_schema_names_a_url_source_and_a_date(path: Path) -> None:
    doc = _doc(path)
    assert URL.search(doc.get("source", "")), f"{_name(path)}: source names no URL"
    as_of = dt.date.fromisoformat(doc["as_of"])
    assert dt.date(2023, 1, 1) <= as_of <= dt.date(2026, 12, 6), f"{_name(path)}: as_of {as_of}"


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_unconfirmed_fields_are_fields_of_that_schema(path: Path) -> None:
    doc = _doc(path)
    unconfirmed = doc.get("unconfirmed", [])
    assert isinstance(unconfirmed, list) and all(isinstance(f, str) for f in unconfirmed)
    assert len(set(unconfirmed)) == len(unconfirmed), f"{_name(path)}: a field listed twice"
    unknown = set(unconfirmed) - set(doc["input"]["properties"])
    assert not unknown, f"{_name(path)}: unconfirmed names no field of the schema: {sorted(unknown)}"
    if unconfirmed:
        assert doc.get("notes"), f"{_name(path)}: unconfirmed fields without a note saying why"


def test_hand_written_schemas_are_no_longer_sourced_from_memory() -> None:
    # the schemas written "from documented parameters" now cite the page each fact was read on
    for path in FILES:
        source = _doc(path)["source"]
        assert "no machine-readable source at hand" not in source, _name(path)
        assert "written by hand" not in source, _name(path)


# -- the corrections the source check made are what planning now uses ---------------------------------

PROMPT = "a lighthouse at dusk"


def _plan(key: str, **req: Any) -> ProviderCall:
    return plan_call(mg.ImageRequest(prompt=PROMPT, **req), mg.Catalog.default().offer(key))


def test_hidream_full_on_fal_gets_at_most_fifty_steps() -> None:
    # fal's page: num_inference_steps 1..50 (the stored schema said 100; 80 steps was a 422)
    call = _plan("hidream-i1@fal", steps=80)
    assert call.payload["num_inference_steps"] == 50
    steps = call.fate("steps")
    assert steps is not None and "1..50" in steps.reason


@pytest.mark.parametrize("key", ["flux-2-dev@fal", "flux-2-flash@fal"])
def test_flux2_on_fal_never_gets_a_side_above_2048(key: str) -> None:
    # fal's page: "The width and height must be between 512 and 2048 pixels"
    call = _plan(key, print_size="8x10in", dpi=300)
    size = call.payload["image_size"]
    assert max(size["width"], size["height"]) == 2048 and min(size["width"], size["height"]) >= 512


def test_recraft_v3_on_replicate_takes_only_its_own_styles() -> None:
    ok = _plan("recraft-v3@replicate", provider_options={"replicate": {"style": "digital_illustration"}})
    assert ok.payload["style"] == "digital_illustration"
    with pytest.raises(InvalidRequest, match="style"):  # a fal-only style: Replicate answers 422
        _plan("recraft-v3@replicate", provider_options={"replicate": {"style": "vector_illustration"}})


def test_ideogram_on_replicate_style_presets_are_listed() -> None:
    ok = _plan("ideogram-3@replicate-turbo", provider_options={"replicate": {"style_preset": "Art Deco"}})
    assert ok.payload["style_preset"] == "Art Deco"
    with pytest.raises(InvalidRequest, match="style_preset"):
        _plan("ideogram-3@replicate-turbo", provider_options={"replicate": {"style_preset": "ART_DECO"}})
