"""``modelglass local list``: diffusers pipelines on this machine and the memory each needs."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")  # the tiny pipeline folders are built with torch

from _local_fixtures import tiny_folder
from typer.testing import CliRunner

from modelglass.cli import app
from modelglass.providers.local import inspect_folder

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, ["local", "list", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_lists_a_given_folder_with_the_memory_its_weights_need(tmp_path):
    rows = json.loads(_invoke("--json", "--no-cache", "--path", str(tiny_folder("sdxl"))))
    assert len(rows) == 1
    row = rows[0]
    info = inspect_folder(tiny_folder("sdxl"))
    assert row["pipeline"] == "StableDiffusionXLPipeline" and row["source"] == "folder"
    assert row["params"] == info.params > 0
    assert row["weights_gib_fp32"] == round(info.params * 4 / 2**30, 2)
    assert set(row["components"]) == {"unet", "vae", "text_encoder", "text_encoder_2"}


def test_a_folder_of_pipelines_and_the_hugging_face_cache_are_scanned(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_folder("sd"), models / "my-sd")
    (models / "notes").mkdir()  # not a diffusers folder: skipped
    cache = tmp_path / "hub"
    repo = cache / "models--stable-diffusion-v1-5--stable-diffusion-v1-5"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    shutil.copytree(tiny_folder("sd"), repo / "snapshots" / "abc123")
    (cache / "models--someone--a-text-model" / "snapshots" / "x").mkdir(parents=True)

    rows = json.loads(_invoke("--json", "--path", str(models), "--cache-dir", str(cache)))
    assert [(r["source"], r["repo"]) for r in rows] == [
        ("folder", None), ("hf-cache", "stable-diffusion-v1-5/stable-diffusion-v1-5")]
    assert rows[1]["offers"] == ["sd-1.5@local"]  # the shipped catalog's offer for that repo

    table = _invoke("--path", str(models), "--cache-dir", str(cache))
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in table and "sd-1.5@local" in table
    assert "StableDiffusionPipeline" in table


def test_nothing_found_says_how_to_fetch(tmp_path):
    text = _invoke("--cache-dir", str(tmp_path))
    assert "No diffusers pipelines found" in text and "huggingface-cli download" in text
