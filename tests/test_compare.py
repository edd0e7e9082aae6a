"""`compare`: one prompt and seed across models, concurrently, under a budget; a contact sheet PNG
with a tile per model and the same facts as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

import modelglass as mg
from modelglass._compare import compare_models, parse_models, render_sheet
from modelglass.cli import app
from modelglass.testing import simulate

runner = CliRunner()
MODELS = "flux-schnell,flux-dev,sdxl,gpt-image-2"


def test_parse_models_reads_provider_pins() -> None:
    assert parse_models("flux-dev, gpt-image-2@fal,") == [("flux-dev", None), ("gpt-image-2", "fal")]


def test_compare_runs_every_model_and_reports_fates_other_than_honored() -> None:
    with simulate(), mg.Client(available=["openai", "fal", "replicate"]) as client:
        sheet = compare_models(client, "a cozy reading nook", MODELS, seed=11,
                               negative_prompt="blurry")
    assert [t.model for t in sheet.tiles] == MODELS.split(",")
    assert all(t.ok and t.provider and t.latency_s is not None for t in sheet.tiles)
    assert all(t.cost_usd is not None and t.cost_usd > 0 for t in sheet.tiles)
    gpt = next(t for t in sheet.tiles if t.model == "gpt-image-2")
    assert {f["control"] for f in gpt.fates} >= {"seed", "negative_prompt"}
    assert all(f["kind"] != "honored" for t in sheet.tiles for f in t.fates)
    data = sheet.to_dict()
    json.dumps(data)
    assert data["cost_usd"] == round(sum(t.cost_usd or 0 for t in sheet.tiles), 6)


def test_a_budget_skips_what_no_longer_fits_and_never_overspends() -> None:
    with simulate(), mg.Client(available=["openai", "fal", "replicate"]) as client:
        sheet = compare_models(client, "a fox", MODELS, seed=3, budget=0.03)
    skipped = [t for t in sheet.tiles if not t.ok]
    assert skipped and all(t.error_type == "BudgetExceeded" for t in skipped)
    assert sheet.cost_usd <= 0.03 + 1e-9
    assert client.budget is None  # the comparison's budget was only lent to the client


def test_the_sheet_has_one_tile_per_model_with_the_image_in_it() -> None:
    with simulate(), mg.Client(available=["openai", "fal", "replicate"]) as client:
        sheet = compare_models(client, "a fox", "flux-schnell,sdxl,gpt-image-2", seed=5)
    im = render_sheet(sheet)
    # 3 tiles in one row: the canvas is wider than 3 tiles and taller than a tile.
    assert im.width >= 3 * 360 and im.height >= 360 + 150
    # The middle of each tile's image area is not the blank tile background.
    for i in range(3):
        x = 16 + i * (360 + 16) + 180
        assert im.getpixel((x, 74 + 180)) != (255, 255, 255)


def test_cli_compare_writes_the_sheet_and_json_and_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    args = ["compare", "a cozy reading nook, morning light", "--models", MODELS, "--seed", "11",
            "--out", str(out), "--simulate", "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["simulated"] is True and len(data["tiles"]) == 4
    assert Path(data["sheet"]) == out and out.exists()
    assert json.loads(Path(data["json"]).read_text())["tiles"][0]["model"] == "flux-schnell"
    with Image.open(out) as im:
        assert im.format == "PNG"
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0
    assert Path(json.loads(r2.stdout)["sheet"]).name == "sheet-2.png"


def test_cli_compare_unknown_model_fails_before_sending(tmp_path: Path) -> None:
    r = runner.invoke(app, ["compare", "a fox", "--models", "flux-schnel", "--simulate",
                            "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 2 and "CatalogError" in r.output
    assert not any(tmp_path.iterdir())


def test_on_tile_hears_every_model_as_it_finishes() -> None:
    seen: list[str] = []
    with simulate(), mg.Client(available=["openai", "fal", "replicate"]) as client:
        sheet = compare_models(client, "a fox", "flux-schnell,sdxl", seed=1,
                               on_tile=lambda t: seen.append(t.model))
    assert sorted(seen) == ["flux-schnell", "sdxl"] and len(sheet.tiles) == 2
