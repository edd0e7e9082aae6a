"""`modelglass generate` and `modelglass providers`, end to end against the simulators."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from modelglass._provenance import read_metadata
from modelglass.cli import app
from modelglass.testing import is_simulated, simulate

runner = CliRunner()
PROMPT = "a red bicycle against a brick wall"
KEY_VARS = ("OPENAI_API_KEY", "FAL_KEY", "REPLICATE_API_TOKEN", "OPENAI_BASE_URL",
            "REPLICATE_BASE_URL", "FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST", "SSL_CERT_FILE")


def _run(*args: str) -> tuple[int, str]:
    """Exit code and everything printed (stdout, then stderr when it is kept apart)."""
    r = runner.invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    if "--json" in args and r.exit_code == 0:
        return r.exit_code, r.stdout  # warnings from libraries go to stderr; JSON is stdout
    return r.exit_code, r.output


def test_readme_command_simulates_the_whole_path(tmp_path: Path) -> None:
    before = {k: os.environ.get(k) for k in KEY_VARS}
    code, output = _run("generate", PROMPT, "--quality", "draft", "--simulate", "--seed", "7",
                        "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert "SIMULATED — no provider was called" in output
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 1 and files[0].name in output.replace("\n", "")
    meta = read_metadata(files[0])
    assert meta["simulated"] is True and meta["seed"] == 7
    assert meta["request"]["prompt"] == PROMPT and meta["request"]["quality"] == "draft"
    with Image.open(files[0]) as im:
        params = im.info["parameters"]
        assert im.format == "PNG"
    assert params.startswith(PROMPT + "\n")
    assert "Seed: 7" in params and "Simulated: true" in params
    assert f"Model: {meta['model']}" in params and f"Provider: {meta['provider']}" in params
    assert is_simulated(files[0].read_bytes())
    # The simulators are gone and the environment is as it was.
    assert {k: os.environ.get(k) for k in KEY_VARS} == before


def test_generate_json_is_machine_readable(tmp_path: Path) -> None:
    code, output = _run("generate", PROMPT, "--quality", "draft", "--simulate", "-n", "2",
                        "--seed", "11", "--out", str(tmp_path), "--json")
    assert code == 0, output
    data = json.loads(output)
    assert data["simulated"] is True and data["note"]
    assert len(data["files"]) == 2 and all(Path(f).exists() for f in data["files"])
    assert [img["seed"] for img in data["images"]] == [11, 12]
    assert data["images"][0]["sha256"] != data["images"][1]["sha256"]
    assert data["attempts"] and data["attempts"][0]["error"] is None
    assert {f["control"] for f in data["fates"]} >= {"seed", "n"}
    assert data["offer"] == f"{data['model']}@{data['provider']}"
    assert data["cost_usd"] is not None


def test_generate_never_overwrites_earlier_images(tmp_path: Path) -> None:
    for _ in range(2):
        code, output = _run("generate", PROMPT, "-q", "draft", "--simulate", "--seed", "3",
                            "--out", str(tmp_path), "--json")
        assert code == 0, output
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_dry_run_sends_nothing(tmp_path: Path) -> None:
    with simulate() as sim:
        code, output = _run("generate", PROMPT, "--quality", "draft", "--dry-run",
                            "--out", str(tmp_path), "--json")
        assert code == 0, output
        data = json.loads(output)
        assert data["dry_run"] is True and data["plan"]["payload"]
        assert sim.requests() == []
    assert not any(tmp_path.iterdir())


def test_dry_run_with_simulate_prints_the_plan(tmp_path: Path) -> None:
    code, output = _run("generate", PROMPT, "--dry-run", "--simulate", "--seed", "5")
    assert code == 0, output
    assert "nothing was sent" in output and "payload" in output


@pytest.mark.parametrize(("flag", "value", "field"), [("--cfg", "100", "cfg"),
                                                       ("--size", "banana", "size"),
                                                       ("--steps", "0", "steps")])
def test_a_bad_flag_exits_2_naming_the_field(tmp_path: Path, flag: str, value: str,
                                             field: str) -> None:
    code, output = _run("generate", PROMPT, "--simulate", flag, value, "--out", str(tmp_path))
    assert code == 2
    assert "InvalidRequest" in output and field in output
    assert not any(tmp_path.iterdir())


def test_a_provider_failure_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with simulate() as sim:
        for provider in ("openai", "fal", "replicate"):
            sim.fail(provider, kind="content", times=10)  # type: ignore[arg-type]
        code, output = _run("generate", PROMPT, "-q", "draft", "--provider", "fal",
                            "--out", str(tmp_path))
    assert code == 1, output
    assert "ContentRejected" in output


def test_no_keys_and_no_simulate_is_a_user_error(tmp_path: Path) -> None:
    code, output = _run("generate", PROMPT, "-q", "draft", "--provider", "fal",
                        "--out", str(tmp_path))
    assert code == 2, output


def test_providers_json_says_why_each_is_unavailable() -> None:
    code, output = _run("providers", "--json")
    assert code == 0, output
    rows = {r["provider"]: r for r in json.loads(output)}
    assert set(rows) == {"openai", "fal", "replicate", "local"}
    assert rows["openai"]["available"] is False and "OPENAI_API_KEY" in rows["openai"]["reason"]
    assert rows["fal"]["keys"][0] == "FAL_KEY"
    assert rows["replicate"]["install"] == "pip install 'modelglass[replicate]'"
    assert all(r["reason"] for r in rows.values())


def test_providers_see_keys_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000")
    _, output = _run("providers", "--json")
    rows = {r["provider"]: r for r in json.loads(output)}
    assert rows["openai"]["available"] is True
    assert "sk-test-not-a-real-key" not in output


def test_providers_table() -> None:
    code, output = _run("providers")
    assert code == 0 and "openai" in output and "local" in output


def test_provider_local_runs_a_local_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from _local_fixtures import tiny_folder

    import modelglass as mg
    from modelglass.providers.local import LocalBackend

    folder = tiny_folder("flux-schnell")
    made: list[LocalBackend] = []

    def backend() -> LocalBackend:  # what `mg.LocalBackend()` gives on a machine with the weights
        made.append(LocalBackend(device="cpu", paths={"flux-schnell": str(folder)}))
        return made[-1]

    monkeypatch.setattr(mg, "LocalBackend", backend)
    code, output = _run("generate", "a fox", "-q", "draft", "--provider", "local", "--model",
                        "flux-schnell", "--seed", "3", "--size", "256x256", "--steps", "1", "--out",
                        str(tmp_path), "--json")
    assert code == 0, output
    data = json.loads(output)
    assert made and data["offer"] == "flux-schnell@local" and data["simulated"] is False
    meta = read_metadata(data["files"][0])
    assert meta["simulated"] is False and meta["provider"] == "local" and meta["seed"] == 3


def test_no_key_reaches_the_screen_or_the_files(tmp_path: Path) -> None:
    from modelglass.testing._simulate import FAL_KEY, OPENAI_KEY, REPLICATE_TOKEN

    for quality in ("draft", "hero"):
        code, output = _run("generate", PROMPT, "-q", quality, "--simulate", "--out",
                            str(tmp_path), "--json")
        assert code == 0, output
        _, table = _run("generate", PROMPT, "-q", quality, "--simulate", "--out", str(tmp_path))
        for key in (FAL_KEY, OPENAI_KEY, REPLICATE_TOKEN):
            assert key not in output and key not in table
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        for key in (FAL_KEY, OPENAI_KEY, REPLICATE_TOKEN):
            assert key.encode() not in data, path.name
