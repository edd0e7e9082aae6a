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

import pytest

from modelglass.catalog._wire_schema import schemas_dir

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
