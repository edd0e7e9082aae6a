"""Wire truth (issue 15): every planned payload is valid against the provider's published input
schema (``catalog/schemas``), and the simulators refuse what the real APIs refuse, in their own
error shapes, through the unmodified official clients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import _sim_fixtures
import fal_client
import httpx
import openai
import pytest
import replicate
from replicate.exceptions import ReplicateError

import modelglass as mg
from modelglass._wire_fit import check_payload
from modelglass.catalog import Status
from modelglass.catalog._schema import Geometry
from modelglass.catalog._wire_schema import input_schema, schemas_dir
from modelglass.errors import InvalidRequest, PayloadInvalid
from modelglass.plan import plan_call
from modelglass.result import FateKind
from modelglass.testing import Simulator

HOSTED = ("openai", "fal", "replicate")
PROMPT = "a red fox in fresh snow"
#: The request shapes of issue 15's "done means".
SHAPES: dict[str, dict[str, Any]] = {
    "plain": {},
    "negative+cfg+steps+seed+1536x1024": {"negative_prompt": "blurry", "cfg": 5.0, "steps": 30,
                                               "seed": 42, "size": "1536x1024"},
    "1024² seed 2³²−1": {"size": "1024x1024", "seed": 2**32 - 1},
    "print 8x10 in at 300 dpi": {"print_size": "8x10in", "dpi": 300},
    "n=4": {"n": 4},
    "16:9": {"aspect_ratio": "16:9"},
    "768x1344": {"size": "768x1344"},
}


@pytest.fixture(scope="module")
def cat() -> mg.Catalog:
    return mg.Catalog.default()


def _hosted(cat: mg.Catalog) -> list[Any]:
    return [v for v in cat.offers() if v.provider in HOSTED]


def _plannable(view: Any) -> Any:
    """A retired offer is refused before planning; plan it as if active to check its payload."""
    if view.status is not Status.retired:
        return view
    life = view.model.lifecycle.model_copy(update={"status": Status.active})
    return dataclasses.replace(view, model=view.model.model_copy(update={"lifecycle": life}))


# -- schemas as catalog data ------------------------------------------------------------------------

def test_every_hosted_offer_has_a_stored_schema_with_source_and_date(cat: mg.Catalog) -> None:
    offers = _hosted(cat)
    assert len(offers) >= 50
    for v in offers:
        s = input_schema(v.provider, v.endpoint)
        assert s is not None, f"{v.key}: no schema at catalog/schemas/{v.provider}/{v.endpoint}"
        assert s.source and dt.date.fromisoformat(s.as_of) <= dt.date(2026, 12, 6), v.key
        assert s.closed and "prompt" in s.properties, v.key
        if ":" in v.endpoint:  # a pinned Replicate version is the schema's version
            assert s.version == v.endpoint.split(":", 1)[1], v.key
    files = list(schemas_dir().rglob("*.json"))
    for f in files:
        doc = json.loads(f.read_text())
        assert {"provider", "endpoint", "source", "as_of", "input"} <= set(doc), f


def test_every_hosted_offer_times_seven_shapes_plans_a_payload_its_schema_accepts(
        cat: mg.Catalog) -> None:
    planned = invalid = 0
    problems = []
    for view in map(_plannable, _hosted(cat)):
        schema = input_schema(view.provider, view.endpoint)
        assert schema is not None
        for name, shape in SHAPES.items():
            call = plan_call(mg.ImageRequest(prompt=PROMPT, **shape), view, rng=random.Random(7))
            planned += 1
            bad = schema.violations(call.payload)
            if bad:
                invalid += 1
                problems.append(f"{view.key} [{name}]: {bad}")
            for k in call.payload:
                assert schema.has(k), f"{view.key} [{name}] sends unknown field {k!r}"
    assert planned >= 7 * 50
    assert invalid == 0, "\n".join(problems)


# -- planning reads the schema -----------------------------------------------------------------------

def test_images_per_call_never_pass_the_schema_and_none_are_lost(cat: mg.Catalog) -> None:
    for view in map(_plannable, _hosted(cat)):
        schema = input_schema(view.provider, view.endpoint)
        assert schema is not None
        call = plan_call(mg.ImageRequest(prompt=PROMPT, n=10), view, rng=random.Random(3))
        assert sum(call.chunks) == 10 and not schema.violations(call.payload), view.key
    gpt = plan_call(mg.ImageRequest(prompt=PROMPT, n=10), _plannable(cat.offer("gpt-image-1.5@fal")))
    assert gpt.chunks == [4, 4, 2] and gpt.payload["num_images"] == 4


def test_ideogram_on_replicate_gets_seeds_it_takes_and_listed_ratios(cat: mg.Catalog) -> None:
    view = cat.offer("ideogram-3@replicate-turbo")
    call = plan_call(mg.ImageRequest(prompt=PROMPT, size="1024x1024", seed=2**32 - 1), view)
    assert call.payload["seed"] == (2**32 - 1) % 2**31 <= 2_147_483_647
    seed = call.fate("seed")
    assert seed is not None and seed.kind is FateKind.mapped and "2147483647" in seed.reason
    for _ in range(50):  # a drawn seed is always in range
        drawn = plan_call(mg.ImageRequest(prompt=PROMPT), view)
        assert 0 <= drawn.payload["seed"] <= 2_147_483_647
    wide = plan_call(mg.ImageRequest(prompt=PROMPT, aspect_ratio="16:9"), view)
    assert wide.payload["aspect_ratio"] == "16:9"
    tall = plan_call(mg.ImageRequest(prompt=PROMPT, size="768x1344"), view)
    size = tall.fate("size")
    assert tall.payload["aspect_ratio"] == "9:16"
    assert size is not None and size.kind is FateKind.approximated and "aspect off" in size.delta


def test_a_size_below_the_schema_minimum_is_scaled_up_and_says_so(cat: mg.Catalog) -> None:
    """flux-2/flash on fal takes sides of 512..2048: a 384 px thumbnail goes out at 512, with
    its aspect kept and the size approximated (it used to be refused as our payload bug)."""
    shipped = cat.offer("flux-2-flash@fal")  # its catalog geometry now says 512..2048 itself
    snapped = plan_call(mg.ImageRequest(prompt=PROMPT, size="384x384"), shipped)
    assert (snapped.planned.width, snapped.planned.height) == (512, 512)
    assert snapped.fate("size").kind is FateKind.approximated  # type: ignore[union-attr]
    # the fit step holds even where a geometry (an overlay, say) lets 384 px through
    view = dataclasses.replace(shipped, geometry=shipped.geometry.merged(Geometry(min_side=256)))
    call = plan_call(mg.ImageRequest(prompt=PROMPT, size="384x384"), view)
    assert call.payload["image_size"] == {"width": 512, "height": 512}
    size = call.fate("size")
    assert size is not None and size.kind is FateKind.approximated
    assert "512 to 2048" in size.reason
    wide = plan_call(mg.ImageRequest(prompt=PROMPT, size="768x384"), view)
    w, h = wide.payload["image_size"]["width"], wide.payload["image_size"]["height"]
    assert h == 512 and 1008 <= w <= 1024  # 2:1 kept, on the schema's grid


def test_recraft_on_replicate_snaps_to_its_ratio_enum(cat: mg.Catalog) -> None:
    view = cat.offer("recraft-v3@replicate")
    call = plan_call(mg.ImageRequest(prompt=PROMPT, size="768x1344"), view)
    assert call.payload["aspect_ratio"] == "9:16"
    assert (call.planned.width, call.planned.height) == (1024, 1820)
    assert call.fate("size").kind is FateKind.approximated


def test_sdxl_lightning_is_pinned_to_a_version_and_kept_under_1280(cat: mg.Catalog) -> None:
    view = cat.offer("sdxl-lightning@replicate")
    assert view.endpoint.startswith("bytedance/sdxl-lightning-4step:")
    call = plan_call(mg.ImageRequest(prompt=PROMPT, size="1536x1024"), view)
    assert max(call.payload["width"], call.payload["height"]) <= 1280
    assert call.fate("size").kind is FateKind.approximated


def test_fal_gpt_image_sends_a_listed_size_and_recraft_no_count(cat: mg.Catalog) -> None:
    for key in ("gpt-image-1.5@fal", "gpt-image-1-mini@fal"):
        view = _plannable(cat.offer(key))
        for size in ("1024x1024", "1536x1024", "768x1344"):
            call = plan_call(mg.ImageRequest(prompt=PROMPT, size=size), view)
            assert call.payload["image_size"] in ("1024x1024", "1536x1024", "1024x1536")
    recraft = plan_call(mg.ImageRequest(prompt=PROMPT, n=3), cat.offer("recraft-v3@fal"))
    assert "num_images" not in recraft.payload and recraft.chunks == [1, 1, 1]
    assert "flux-pro@fal" not in {v.key for v in cat.offers()}


def test_an_unknown_provider_option_is_refused_naming_the_key(cat: mg.Catalog) -> None:
    req = mg.ImageRequest(prompt=PROMPT, provider_options={"fal": {"num_frames": 3}})
    with pytest.raises(InvalidRequest) as ei:
        plan_call(req, cat.offer("flux-dev@fal"))
    assert ei.value.field == "provider_options.fal.num_frames"
    assert "guidance_scale" in str(ei.value)  # it lists what the endpoint takes
    ok = mg.ImageRequest(prompt=PROMPT, provider_options={"fal": {"acceleration": "high"}})
    assert plan_call(ok, cat.offer("flux-dev@fal")).payload["acceleration"] == "high"
    bad = mg.ImageRequest(prompt=PROMPT, provider_options={"fal": {"acceleration": "max"}})
    with pytest.raises(InvalidRequest, match="acceleration"):
        plan_call(bad, cat.offer("flux-dev@fal"))


def test_a_payload_breaking_its_schema_is_our_bug_and_names_the_field(cat: mg.Catalog) -> None:
    view = cat.offer("flux-dev@fal")
    schema = input_schema("fal", view.endpoint)
    assert schema is not None
    with pytest.raises(PayloadInvalid) as ei:
        check_payload({"prompt": PROMPT, "num_inference_steps": 500}, schema, view)
    assert ei.value.field == "num_inference_steps" and ei.value.offer == "flux-dev@fal"
    assert "modelglass bug" in str(ei.value) and "nothing was sent" in str(ei.value)


# -- simulators that refuse what the real APIs refuse -----------------------------------------------

sim = _sim_fixtures.sim_fixture(poll_interval=0.01)
_fresh = _sim_fixtures.fresh_when_used


def _fal_result_error(endpoint: str, args: dict[str, Any]) -> Any:
    """Submit through the queue (accepted), then fetch the result: the 422 comes there."""
    client = fal_client.SyncClient()
    handle = client.submit(endpoint, args)
    with pytest.raises(fal_client.client.FalClientHTTPError) as ei:
        handle.get()
    assert ei.value.status_code == 422
    return ei.value.message


def test_fal_refuses_at_the_result_with_fastapi_detail(sim: Simulator) -> None:
    seed = _fal_result_error("fal-ai/ideogram/v3", {"prompt": PROMPT, "seed": 2**32 - 1})
    assert seed[0]["loc"] == ["body", "seed"] and seed[0]["type"] == "less_than_equal"
    ratio = _fal_result_error("fal-ai/nano-banana-2", {"prompt": PROMPT, "aspect_ratio": "7:3"})
    assert ratio[0]["loc"] == ["body", "aspect_ratio"] and ratio[0]["type"] == "literal_error"
    side = _fal_result_error("fal-ai/flux/dev", {"prompt": PROMPT,
                                                  "image_size": {"width": 20000, "height": 512}})
    assert side[0]["loc"] == ["body", "image_size", "width"]
    assert side[0]["ctx"] == {"le": 14142}
    extra = _fal_result_error("fal-ai/recraft/v3/text-to-image",
                              {"prompt": PROMPT, "num_images": 2})
    assert extra[0]["loc"] == ["body", "num_images"] and extra[0]["type"] == "extra_forbidden"
    assert sim.billed("fal") == 0  # a refused request costs nothing
    with pytest.raises(fal_client.client.FalClientHTTPError) as nf:
        fal_client.SyncClient().submit("nobody/nothing", {"prompt": PROMPT})
    assert nf.value.status_code == 404
    # a sync run answers 422 at once
    with pytest.raises(fal_client.client.FalClientHTTPError) as run:
        fal_client.SyncClient().run("fal-ai/flux/dev", {"prompt": PROMPT, "foo": 1})
    assert run.value.status_code == 422 and run.value.message[0]["type"] == "extra_forbidden"


def _replicate_422(sim: Simulator, model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The official client raises ReplicateError(422); the raw body has ``invalid_fields``."""
    with pytest.raises(ReplicateError) as ei:
        replicate.Client().models.predictions.create(model=model, input=inputs)
    assert ei.value.status == 422
    raw = httpx.post(f"{sim.url('replicate')}/v1/models/{model}/predictions",
                     json={"input": inputs}, headers={"Authorization": "Bearer t"})
    assert raw.status_code == 422
    assert raw.headers["content-type"].startswith("application/problem+json")
    body = raw.json()
    assert body["title"] == "Input validation failed" and body["detail"] == ei.value.detail
    return body["invalid_fields"][0]


def test_replicate_refuses_with_problem_json_and_invalid_fields(sim: Simulator) -> None:
    ideo = "ideogram-ai/ideogram-v3-turbo"
    seed = _replicate_422(sim, ideo, {"prompt": PROMPT, "seed": 2**32 - 1})
    assert seed == {"type": "number_lte", "field": "input.seed",
                    "description": "Must be less than or equal to 2147483647"}
    ratio = _replicate_422(sim, ideo, {"prompt": PROMPT, "aspect_ratio": "4:7"})
    assert ratio["type"] == "enum" and ratio["field"] == "input.aspect_ratio"
    extra = _replicate_422(sim, ideo, {"prompt": PROMPT, "num_outputs": 2})
    assert extra["type"] == "additional_property_not_allowed"
    version = input_schema("replicate", "bytedance/sdxl-lightning-4step").version  # type: ignore[union-attr]
    with pytest.raises(ReplicateError) as side:
        replicate.Client().predictions.create(version=version, input={"prompt": PROMPT,
                                                                        "width": 1536})
    assert side.value.status == 422 and "input.width" in (side.value.detail or "")
    with pytest.raises(ReplicateError) as nf:
        replicate.Client().models.predictions.create(model="nobody/nothing",
                                                     input={"prompt": PROMPT})
    assert nf.value.status == 404
    with pytest.raises(ReplicateError) as by_name:  # a community model needs its version
        replicate.Client().models.predictions.create(model="bytedance/sdxl-lightning-4step",
                                                     input={"prompt": PROMPT})
    assert by_name.value.status == 404
    assert sim.billed("replicate") == 0


def test_openai_refuses_unknown_parameters_and_invalid_values(sim: Simulator) -> None:
    client = openai.OpenAI()
    with pytest.raises(openai.BadRequestError) as seed:
        client.images.generate(model="gpt-image-1.5", prompt=PROMPT, extra_body={"seed": 7})
    assert (seed.value.code, seed.value.param) == ("unknown_parameter", "seed")
    with pytest.raises(openai.BadRequestError) as ratio:
        client.images.generate(model="gpt-image-1.5", prompt=PROMPT, size="1792x1024")
    assert (ratio.value.code, ratio.value.param) == ("invalid_value", "size")
    with pytest.raises(openai.BadRequestError) as side:
        client.images.generate(model="gpt-image-2", prompt=PROMPT, size="4096x4096")
    assert side.value.param == "size"
    with pytest.raises(openai.BadRequestError) as many:
        client.images.generate(model="gpt-image-2", prompt=PROMPT, n=11)
    assert (many.value.code, many.value.param) == ("integer_above_max_value", "n")
    with pytest.raises(openai.NotFoundError) as nf:
        client.images.generate(model="nobody-nothing", prompt=PROMPT)
    assert nf.value.code == "model_not_found"
    assert sim.billed("openai") == 0


def test_a_served_endpoint_is_accepted_and_validated_by_its_schema(sim: Simulator) -> None:
    sim.serve("fal", "my-team/toy-app", {"type": "object", "additionalProperties": False,
                                         "required": ["prompt"],
                                         "properties": {"prompt": {"type": "string"}}})
    out = fal_client.SyncClient().run("my-team/toy-app", {"prompt": PROMPT})
    assert out["images"]
    with pytest.raises(fal_client.client.FalClientHTTPError) as ei:
        fal_client.SyncClient().run("my-team/toy-app", {"prompt": PROMPT, "seed": 1})
    assert ei.value.status_code == 422


def test_every_planned_payload_of_a_client_is_accepted_by_the_simulators(
        sim: Simulator, cat: mg.Catalog) -> None:
    from modelglass.providers import create_provider

    for key in ("ideogram-3@replicate-turbo", "recraft-v3@replicate", "sdxl-lightning@replicate",
                "recraft-v3@fal", "flux-dev@fal", "gpt-image-2@openai"):
        view = cat.offer(key)
        provider = create_provider(view.provider)
        try:
            for shape in SHAPES.values():
                call = plan_call(mg.ImageRequest(prompt=PROMPT, **shape), view, provider=provider)
                out = provider.generate(call, timeout_s=30)
                assert out.images, key
        finally:
            provider.close()
    assert not [r for r in sim.requests() if r.fault == "invalid"]


# -- simulators across processes ---------------------------------------------------------------------

def test_a_child_process_with_sim_env_runs_a_batch_end_to_end(sim: Simulator,
                                                              tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i}", "prompt": f"a paper boat {i}",
                                        "model": "flux-schnell", "provider": "fal",
                                        "seed": i}) + "\n" for i in range(2)))
    env = {**os.environ, **sim.env,
           "PYTHONPATH": os.pathsep.join([str(Path(mg.__file__).parent.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", "from modelglass.cli import app; app()",
                           "batch", str(jobs), "--out", str(out), "--json"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"] == {"done": 2}
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert all(Path(f).is_file() for m in manifest for f in m["files"])
    assert len(sim.requests("fal", stage="submit")) == 2  # the child really used the simulator


def test_sim_origins_are_honoured_only_for_exact_loopback_origins(monkeypatch) -> None:
    from modelglass import _destination as d

    monkeypatch.setenv(d.SIM_ORIGINS_ENV, "https://127.0.0.1:4443 https://example.com:443 "
                       "http://10.0.0.5:80 https://localhost")
    assert d._is_trusted("127.0.0.1", 4443)
    assert not d._is_trusted("127.0.0.1", 4444)
    assert not d._is_trusted("example.com", 443)
    assert not d._is_trusted("10.0.0.5", 80)
    assert not d._is_trusted("localhost", 443)  # no explicit port: not an exact origin
    monkeypatch.delenv(d.SIM_ORIGINS_ENV)
    assert not d._is_trusted("127.0.0.1", 4443)
