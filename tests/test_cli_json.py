"""The CLI as a tool for scripts and people: --version, errors as JSON with the same exit codes
everywhere, --simulate suggested when no key is set, and provider or user text printed literally
(never as Rich markup)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.cli import app
from modelglass.testing import simulate

runner = CliRunner()
HOSTED = "fal,replicate,openai"
NO_KEYS = {"OPENAI_API_KEY": None, "FAL_KEY": None, "REPLICATE_API_TOKEN": None,
           "FAL_KEY_ID": None, "FAL_KEY_SECRET": None, "COLUMNS": "100"}


def invoke(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args), env=env or {"COLUMNS": "100"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.output


def test_version() -> None:
    code, stdout, _ = invoke("--version")
    assert code == 0 and stdout.strip() == f"modelglass {mg.__version__}"


@pytest.mark.parametrize(("args", "kind", "code"), [
    (("plan", "a fox", "--size", "big", "--assume-available", HOSTED), "InvalidRequest", 2),
    (("route", "a fox", "--assume-available", ""), "NoEligibleModel", 2),
    (("plan", "a fox", "--assume-available", ""), "NoEligibleModel", 2),
    (("catalog", "show", "flux-devv"), "CatalogError", 2),
    (("catalog", "list", "--where", "text_rendering>>8"), "InvalidRequest", 2),
    (("plan", "a fox", "--model", "gpt-image-2", "--provider", "openai", "--seed", "3",
      "--strict", "--assume-available", HOSTED), "StrictRefused", 2),
])
def test_errors_with_json_are_json_on_stdout_with_the_documented_exit_code(
        args: tuple[str, ...], kind: str, code: int) -> None:
    got, stdout, _ = invoke(*args, "--json")
    assert got == code
    err = json.loads(stdout)["error"]
    assert err["type"] == kind and err["exit_code"] == code and err["message"]


def test_the_same_error_as_text_exits_the_same_way() -> None:
    code, _, output = invoke("plan", "a fox", "--size", "big", "--assume-available", HOSTED)
    assert code == 2 and "InvalidRequest" in output and "size" in output


def test_a_provider_failure_is_exit_1_in_json_too(tmp_path: Path) -> None:
    with simulate() as sim:
        for p in ("openai", "fal", "replicate"):
            sim.fail(p, kind="content", times=10)  # type: ignore[arg-type]
        code, stdout, _ = invoke("generate", "a fox", "-q", "draft", "--provider", "fal",
                                 "--out", str(tmp_path), "--json")
    assert code == 1
    err = json.loads(stdout)["error"]
    assert err["type"] == "ContentRejected" and err["exit_code"] == 1
    assert ".. " not in err["message"]  # one full stop before the advice


def test_no_key_suggests_simulate(tmp_path: Path) -> None:
    code, stdout, _ = invoke("generate", "a fox", "-q", "draft", "--out", str(tmp_path), "--json",
                             env=NO_KEYS)
    assert code == 2
    assert "--simulate" in json.loads(stdout)["error"]["hint"]
    code, _, output = invoke("generate", "a fox", "-q", "draft", "--out", str(tmp_path),
                             env=NO_KEYS)
    assert code == 2 and "--simulate" in output


def test_user_text_that_looks_like_markup_is_printed_literally() -> None:
    code, _, output = invoke("plan", "a fox", "--size", "[/x]", "--assume-available", HOSTED)
    assert code == 2
    assert "[/x]" in output and "MarkupError" not in output


def test_a_provider_error_body_with_a_link_prints_literally(tmp_path: Path) -> None:
    body = {"detail": "bad [link=http://evil.example]click[/link] [/x]"}
    with simulate() as sim:
        for p in ("openai", "fal", "replicate"):
            sim.fail(p, status=400, times=20, body=body)
        code, _, output = invoke("generate", "a fox", "-q", "draft", "--provider", "fal",
                                 "--out", str(tmp_path), env={"COLUMNS": "300"})
    assert code == 1
    assert "[link=http://evil.example]click[/link]" in output


def test_flags_read_as_flags_and_install_hints_keep_their_brackets() -> None:
    _, stdout, _ = invoke("generate", "--help")
    strict = next(line for line in stdout.splitlines() if "--strict" in line)
    assert "<bool>" not in strict and "BOOLEAN" not in strict
    _, stdout, _ = invoke("catalog", "plot", "--help")
    assert "modelglass[plot]" in stdout


def test_generate_timeout_is_the_per_call_deadline(tmp_path: Path) -> None:
    with simulate() as sim:
        sim.fail("fal", kind="hang", times=5, delay=5)  # type: ignore[arg-type]
        code, stdout, _ = invoke("generate", "a fox", "-q", "draft", "--provider", "fal",
                                 "--timeout", "1", "--out", str(tmp_path), "--json")
    assert code == 1
    assert json.loads(stdout)["error"]["type"] in ("GenerationTimeout", "OutcomeUnknown")
