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


# -- issue 10: queries, readable tables, sources, numbers ----------------------------------------
def _invoke_at(columns: int, *args: str) -> tuple[int, str]:
    r = runner.invoke(app, list(args), env={"COLUMNS": str(columns)})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.output


@pytest.mark.parametrize("columns", [80, 160])
def test_catalog_list_fits_the_terminal_with_whole_headers(columns: int) -> None:
    code, out = _invoke_at(columns, "catalog", "list")
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= columns
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert "…" not in header and "adh" in header and "text" in header
    assert "gpt-image-2" in out and "adh=prompt_adherence" in out


def test_catalog_list_query_answers_cheapest_hero_offer_with_legible_text() -> None:
    code, out = invoke("catalog", "list", "--sort", "cost", "--where", "text_rendering>=8",
                       "--axis", "hero", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert rows and all(r["scores"]["text_rendering"]["value"] >= 8 for r in rows)
    known = [r["cost_per_image_usd"] for r in rows if r["cost_per_image_usd"] is not None]
    assert known == sorted(known) and all(isinstance(c, float) for c in known)
    assert all(r["eligible"] and isinstance(r["quality"], float) for r in rows)


def test_catalog_list_supports_is_offer_level() -> None:
    code, out = invoke("catalog", "list", "--supports", "negative_prompt", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert rows and all(r["supports"]["negative_prompt"] is True for r in rows)
    code, out = _invoke_at(80, "catalog", "list", "--supports", "negative_prompt",
                           "--provider", "fal")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80


def test_catalog_sources_explains_tags_and_show_lists_the_ones_it_uses() -> None:
    code, out = invoke("catalog", "sources", "S40", "--json")
    assert code == 0 and json.loads(out)["S40"]
    code, out = invoke("catalog", "show", "flux-dev")
    assert code == 0
    assert "sources:" in out and "seed None" not in out and "seed yes" in out


def test_catalog_compare_json_has_numbers() -> None:
    code, out = invoke("catalog", "compare", "flux-schnell", "gpt-image-2", "--axis", "hero",
                       "--json")
    assert code == 0, out
    rows = {r["model"]: r for r in json.loads(out)["models"]}
    gpt = rows["gpt-image-2"]
    assert isinstance(gpt["scores"]["prompt_adherence"]["value"], float)
    assert isinstance(gpt["axis_quality"], float)
    assert isinstance(gpt["cheapest_1024"]["usd"], float) and gpt["cheapest_1024"]["provider"]
