"""The issue-2 commands: catalog list/show/compare, route and plan, in text and --json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelglass.cli import app

runner = CliRunner()
HOSTED = "fal,replicate,openai"


def invoke(*args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return r.exit_code, r.output


def test_catalog_list_json_has_every_model_with_status_and_cheapest_offer() -> None:
    code, out = invoke("catalog", "list", "--json")
    assert code == 0, out
    rows = json.loads(out)
    ids = {r["id"] for r in rows}
    assert len(rows) >= 25 and {"flux-schnell", "flux-dev", "sdxl", "gpt-image-2"} <= ids
    gpt1 = next(r for r in rows if r["id"] == "gpt-image-1")
    assert gpt1["status"] == "retired"


def test_catalog_show_keeps_bracketed_names_and_lists_evidence() -> None:
    code, out = invoke("catalog", "show", "flux-dev")
    assert code == 0, out
    assert "FLUX.1 [dev]" in out  # not eaten as rich markup
    assert "geneval" in out and "offers" in out


def test_catalog_show_unknown_model_is_a_clear_error() -> None:
    code, out = invoke("catalog", "show", "flux-devv")
    assert code == 2
    assert "flux-dev" in out  # suggests the near miss


def test_catalog_compare_on_an_axis() -> None:
    code, out = invoke("catalog", "compare", "flux-schnell", "gpt-image-2", "sdxl", "--axis", "hero",
                       "--json")
    assert code == 0, out
    data = json.loads(out)
    text = json.dumps(data)
    assert "flux-schnell" in text and "gpt-image-2" in text and "sdxl" in text


def test_route_needs_no_keys_when_availability_is_assumed() -> None:
    code, out = invoke("route", "a storefront sign that says 'GRAND OPENING'", "--quality", "hero",
                       "--assume-available", HOSTED, "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["choice"]["offer"].split("@")[1].split("-")[0] in HOSTED.split(",")
    assert data["signals"]["text_matters"] is True
    assert data["rejected"]  # local offers and retired models, each with its constraint
    assert all(r["constraint"] for r in data["rejected"])


def test_route_explain_names_the_choice_and_the_rejections() -> None:
    code, out = invoke("route", "a fox in the snow", "--quality", "draft", "--explain",
                       "--assume-available", "fal")
    assert code == 0, out
    assert "Choice:" in out and "@fal" in out and "Rejected" in out


def test_route_with_nothing_available_exits_nonzero_and_says_why() -> None:
    code, out = invoke("route", "a fox", "--quality", "draft", "--assume-available", "")
    assert code != 0
    assert "availability" in out


def test_plan_print_size_reports_pixels_and_fates() -> None:
    code, out = invoke("plan", "a fox", "--quality", "print", "--print-size", "8x10in", "--dpi", "300",
                       "--negative", "blurry", "--seed", "7", "--assume-available", HOSTED, "--json")
    assert code == 0, out
    data = json.loads(out)
    controls = {f["control"]: f for f in data["fates"]}
    assert {"prompt", "negative_prompt", "seed", "size"} <= set(controls)
    w, h = (int(v) for v in data["size"].split("x"))
    # 8x10in at 300 dpi is 2400x3000: the plan reaches it or says an upscale is needed
    assert (w * h >= 2400 * 3000 * 0.95) or data.get("upscale")


@pytest.mark.parametrize("args, field", [
    (("--cfg", "99"), "cfg"),
    (("--size", "big"), "size"),
    (("--quality", "poster"), "quality"),
    (("--seed", "-1"), "seed"),
])
def test_bad_flags_exit_2_naming_the_field(args: tuple[str, ...], field: str) -> None:
    code, out = invoke("plan", "a fox", "--assume-available", HOSTED, *args)
    assert code == 2, out
    assert field in out
