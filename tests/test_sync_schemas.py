"""``catalog sync`` refreshes the stored input schemas from fal's Platform API and Replicate's
model / version endpoints (served by the simulators), writing changed ones next to the overlay."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import _sim_fixtures
import pytest

import modelglass as mg
from modelglass import _clock
from modelglass.catalog._wire_schema import input_schema
from modelglass.catalog_tools._sync import sync
from modelglass.catalog_tools._sync_schemas import input_from_openapi, schema_changes
from modelglass.plan import plan_call
from modelglass.testing import Simulator

sim = _sim_fixtures.sim


def test_an_unchanged_provider_schema_is_confirmed_and_nothing_is_written(
        sim: Simulator, tmp_path: Path) -> None:
    report = sync(overlay=tmp_path / "o.yaml", providers=["fal", "replicate"])
    same = {f.offer for f in report.of("schema-same")}
    assert "flux-dev@fal" in same and "ideogram-3@replicate-turbo" in same
    assert "sdxl-lightning@replicate" in same  # fetched by its pinned version
    assert not report.of("schema") and not report.of("schema-unavailable")
    assert not (tmp_path / "schemas").exists()
    fal_calls = [r for r in sim.requests("fal") if r.path == "/v1/models"
                 and r.query.get("expand") == "openapi-3.0"]
    assert fal_calls and fal_calls[0].query["endpoint_id"]
    version = input_schema("replicate", "bytedance/sdxl-lightning-4step").version  # type: ignore[union-attr]
    assert any(r.path.endswith(f"/versions/{version}") for r in sim.requests("replicate"))


def test_a_changed_schema_is_written_next_to_the_overlay_and_planning_reads_it(
        sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = input_schema("fal", "fal-ai/flux/dev")
    assert stored is not None
    changed = copy.deepcopy(stored.input)
    changed["properties"]["num_inference_steps"]["maximum"] = 40
    changed["properties"]["negative_prompt"] = {"type": "string"}
    sim.serve("fal", "fal-ai/flux/dev", changed)
    try:
        overlay = tmp_path / "o.yaml"
        report = sync(overlay=overlay, providers=["fal"])
        (found,) = [f for f in report.of("schema") if f.offer == "flux-dev@fal"]
        assert "+negative_prompt" in found.detail and "~num_inference_steps" in found.detail
        written = json.loads((tmp_path / "schemas/fal/fal-ai/flux/dev.json").read_text())
        assert written["as_of"] == _clock.today().isoformat() and "fal Platform API" in written["source"]
        assert written["input"]["properties"]["num_inference_steps"]["maximum"] == 40
        monkeypatch.setenv("MODELGLASS_CATALOG_OVERLAY", str(overlay))
        assert input_schema("fal", "fal-ai/flux/dev").range("num_inference_steps") == (1, 40)  # type: ignore[union-attr]
        call = plan_call(mg.ImageRequest(prompt="a fox", steps=50),
                         mg.Catalog.default().offer("flux-dev@fal"))
        assert call.payload["num_inference_steps"] == 40
        monkeypatch.setenv("MODELGLASS_CATALOG_OVERLAY", "")
        assert input_schema("fal", "fal-ai/flux/dev").range("num_inference_steps") == (1, 50)  # type: ignore[union-attr]
        dry = sync(overlay=tmp_path / "dry" / "o.yaml", providers=["fal"], write=False)
        assert dry.of("schema") and not (tmp_path / "dry").exists()
    finally:
        sim.serve("fal", "fal-ai/flux/dev", stored.input)


def test_a_replicate_version_schema_change_is_found(sim: Simulator, tmp_path: Path) -> None:
    stored = input_schema("replicate", "ideogram-ai/ideogram-v3-turbo")
    assert stored is not None
    changed = copy.deepcopy(stored.input)
    changed["properties"]["aspect_ratio"]["enum"].append("21:9")
    sim.serve("replicate", "ideogram-ai/ideogram-v3-turbo", changed)
    try:
        report = sync(overlay=tmp_path / "o.yaml", providers=["replicate"])
        (found,) = [f for f in report.of("schema") if f.offer == "ideogram-3@replicate-turbo"]
        assert found.detail == "fields ~aspect_ratio"
        path = tmp_path / "schemas/replicate/ideogram-ai/ideogram-v3-turbo.json"
        assert "21:9" in json.loads(path.read_text())["input"]["properties"]["aspect_ratio"]["enum"]
    finally:
        sim.serve("replicate", "ideogram-ai/ideogram-v3-turbo", stored.input)


def test_openapi_refs_are_resolved_and_changes_listed() -> None:
    doc = {"paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/In"}}}}}}},
        "components": {"schemas": {"In": {"title": "In", "type": "object", "properties": {
            "size": {"$ref": "#/components/schemas/Size"}}},
            "Size": {"type": "string", "enum": ["a", "b"]}}}}
    got = input_from_openapi(doc)
    assert got == {"type": "object", "additionalProperties": False,
                   "properties": {"size": {"type": "string", "enum": ["a", "b"]}}}
    assert schema_changes(got, got) == []
    assert schema_changes(got, {"properties": {}}) == ["-size"]
