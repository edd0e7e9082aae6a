"""Every mistake gets a typed answer (issue 18): a mistake the user can fix is a ModelglassError
naming the field or path, exit 2 with a hint in the CLI, never a traceback; a provider's failure
is exit 1; nothing is accepted silently."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.cli import app
from modelglass.errors import CatalogError, InvalidRequest

BINARY = bytes(range(256)) * 4


def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                      SystemExit), result.exception
    return result.exit_code, result.output


def _json_error(*args: str) -> dict[str, Any]:
    code, text = _cli(*args, "--json")
    data = json.loads(text[text.index("{"):])["error"]
    assert code == data["exit_code"]
    return data  # type: ignore[no-any-return]


def _client() -> mg.Client:
    return mg.Client(observed=False)


# -- the rule, over every command ------------------------------------------------------------------
def _bad_inputs(tmp: Path, *, write: bool = True) -> dict[str, list[str]]:
    binary = tmp / "binary.jsonl"
    if write:
        binary.write_bytes(BINARY)
    return {
        "catalog list": ["catalog", "list", "--axis", "ultra"],
        "catalog sources": ["catalog", "sources", "S9999"],
        "catalog show": ["catalog", "show", "flux-deev"],
        "catalog compare": ["catalog", "compare", "flux-deev", "sdxl"],
        "catalog plot": ["catalog", "plot", "--out", str(tmp)],
        "catalog html": ["catalog", "html", "--out", str(tmp)],
        "catalog verify": ["catalog", "verify", "--offer", "nope@fal"],
        "catalog sync": ["catalog", "sync", "--provider", "nope"],
        "catalog diff": ["catalog", "diff", "--overlay", str(binary)],
        "route": ["route", "a cat", "--quality", "ultra", "--assume-available", "fal"],
        "plan": ["plan", "a cat", "--assume-available", "fall"],
        "generate": ["generate", "a cat", "--out", str(tmp / "pic.gif"), "--simulate"],
        "batch": ["batch", str(binary), "--simulate", "--out", str(tmp / "o")],
        "compare": ["compare", "a cat", "--models", "flux-dev", "--quality", "ultra",
                    "--simulate", "--out", str(tmp / "s.png")],
        "eval": ["eval", "--models", "flux-deev", "--simulate", "--n", "1",
                 "--journal", str(tmp / "eval.db")],
        "policy check": ["policy", "check", str(binary)],
        "policy replay": ["policy", "replay", str(binary), "--policy", "default"],
    }


#: Commands that take no input a user could get wrong (nothing to test the rule on).
NO_INPUT = {"providers", "local list"}


def _commands() -> set[str]:
    import typer.main

    group = typer.main.get_command(app)
    names: set[str] = set()
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        names |= {f"{name} {s}" for s in sub} if sub else {name}
    return names


def test_the_rule_covers_every_command(tmp_path: Path) -> None:
    assert _commands() == set(_bad_inputs(tmp_path)) | NO_INPUT


@pytest.mark.parametrize("command", sorted(_bad_inputs(Path("/x"), write=False)))
def test_a_fixable_mistake_on_any_command_exits_2_typed_without_a_traceback(
        command: str, tmp_path: Path) -> None:
    code, text = _cli(*_bad_inputs(tmp_path)[command])
    assert code == 2, text
    typed = text.startswith("error: ") or "\nerror: " in text or "Error:" in text
    assert typed, text
    if "error: " in text:  # a modelglass error (not a flag typer refused): a typed one
        kind = text.split("error: ", 1)[1].split(":", 1)[0]
        assert issubclass(getattr(mg, kind), mg.ModelglassError), kind
        assert "\nhint: " in text, text  # and what to do next


# -- files ---------------------------------------------------------------------------------------------
def test_catalog_plot_and_html_to_a_folder_name_the_path_and_hint(tmp_path: Path) -> None:
    for cmd in ("plot", "html"):
        data = _json_error("catalog", cmd, "--out", str(tmp_path))
        assert (data["type"], data["field"], data["path"], data["exit_code"]) == \
            ("InvalidRequest", "out", str(tmp_path), 2)
        assert "folder" in data["message"] and data["hint"]


def test_catalog_html_to_an_unwritable_path_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "catalog.html"  # a file where a folder belongs
    data = _json_error("catalog", "html", "--out", str(target))
    assert (data["type"], data["path"], data["exit_code"]) == ("InvalidRequest", str(target), 2)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        data = _json_error("catalog", "plot", "--out", str(ro / "p.png"))
        assert data["exit_code"] == 2 and data["path"] == str(ro / "p.png")


def test_python_plot_and_html_refuse_a_folder_with_the_path(tmp_path: Path) -> None:
    cat = mg.Catalog.default()
    with pytest.raises(InvalidRequest) as info:
        cat.write_html(tmp_path)
    assert (info.value.field, info.value.path) == ("out", str(tmp_path))
    with pytest.raises(InvalidRequest) as info:
        cat.plot("hero", tmp_path)
    assert info.value.path == str(tmp_path) and info.value.hint


def test_a_binary_jobs_file_is_a_typed_error_with_its_line(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b'{"prompt": "a cat"}\n' + bytes(range(128, 256)))
    data = _json_error("batch", str(jobs), "--simulate", "--out", str(tmp_path / "o"))
    assert (data["type"], data["field"], data["path"], data["exit_code"]) == \
        ("InvalidRequest", "jobs", str(jobs), 2)
    assert f"{jobs}:2:" in data["message"] and "UTF-8" in data["message"]
    assert not (tmp_path / "o").exists()


def test_a_binary_workload_is_a_typed_error(tmp_path: Path) -> None:
    from modelglass.routing._replay import read_workload

    work = tmp_path / "w.jsonl"
    work.write_bytes(BINARY)
    with pytest.raises(InvalidRequest) as info:
        read_workload(work)
    assert (info.value.field, info.value.path) == ("workload", str(work))
    data = _json_error("policy", "replay", str(work), "--policy", "default")
    assert data["exit_code"] == 2 and data["path"] == str(work)


def test_a_jobs_file_with_a_utf8_bom_is_read(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b'\xef\xbb\xbf{"prompt": "a cat", "quality": "draft", "id": "cat"}\n')
    code, text = _cli("batch", str(jobs), "--simulate", "--out", str(tmp_path / "o"), "--json")
    assert code == 0, text
    assert json.loads(text)["counts"] == {"done": 1}


def test_generate_out_an_image_file_name_is_refused_before_sending(tmp_path: Path) -> None:
    target = tmp_path / "pic.gif"
    data = _json_error("generate", "a cat", "--out", str(target), "--simulate")
    assert (data["type"], data["field"], data["path"], data["exit_code"]) == \
        ("InvalidRequest", "out", str(target), 2)
    assert not target.exists()


# -- quality ---------------------------------------------------------------------------------------
def test_an_unknown_quality_is_the_callers_error_not_the_catalogs() -> None:
    with pytest.raises(InvalidRequest) as info:
        _client().route("a cat", quality="ultra", available=["fal"])
    assert not isinstance(info.value, CatalogError)
    assert info.value.field == "quality" and "draft, thumbnail, hero, print" in str(info.value)
    with pytest.raises(InvalidRequest, match="did you mean 'hero'") as info:
        mg.Catalog.default().query(axis="heroo")
    assert info.value.field == "quality"


def test_batch_checks_quality_against_the_policys_axes_before_sending(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a cat", "quality": "draft"}\n'
                    '{"prompt": "a banner", "quality": "social-card"}\n')
    data = _json_error("batch", str(jobs), "--simulate", "--out", str(tmp_path / "o"))
    assert (data["type"], data["field"], data["exit_code"]) == ("InvalidRequest", "quality", 2)
    assert f"{jobs}:2: quality: unknown quality axis 'social-card'" in data["message"]
    assert not (tmp_path / "o").exists()  # nothing ran
    policy = tmp_path / "policy.yaml"
    policy.write_text("axes:\n  social-card: {extends: thumbnail, size: 1200x630}\n")
    code, text = _cli("batch", str(jobs), "--simulate", "--out", str(tmp_path / "o"),
                      "--policy", str(policy), "--json")
    assert code == 0, text


def test_the_default_quality_is_hero_and_every_view_says_so() -> None:
    decision = _client().route("a cat", available=["fal"])
    assert (decision.quality, decision.quality_defaulted) == ("hero", True)
    assert "quality: hero (default" in decision.explain()
    assert decision.to_dict()["quality_default"] is True
    explicit = _client().route("a cat", quality="hero", available=["fal"])
    assert not explicit.quality_defaulted and "(default" not in explicit.explain()
    from modelglass.testing import simulate

    with simulate(), _client() as client:
        assert "quality: hero (default)" in repr(client.generate("a cat"))
        assert "(default)" not in repr(client.generate("a cat", quality="draft"))


def test_the_cli_help_and_generate_state_the_default_quality(tmp_path: Path) -> None:
    for cmd in ("route", "plan", "generate"):
        code, text = _cli(cmd, "--help")
        assert code == 0 and "default: hero" in " ".join(text.split()), cmd
    code, text = _cli("generate", "a cat", "--simulate", "--out", str(tmp_path), "--json")
    assert code == 0 and json.loads(text)["quality"] == "hero"
    assert json.loads(text)["quality_default"] is True


def test_a_policy_may_set_the_default_quality(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("default_quality: draft\n")
    decision = _client().route("a cat", available=["fal"], policy=str(path))
    assert (decision.quality, decision.quality_defaulted) == ("draft", True)
    assert _client().route("a cat", quality="print", available=["fal"],
                           policy=str(path)).quality == "print"
    path.write_text("default_quality: drafty\n")
    with pytest.raises(CatalogError, match=r"policy.yaml:1: default_quality: .*did you mean "
                                           r"'draft'"):
        mg.Policy.load(path)


def test_a_policy_minimum_outside_0_to_10_is_refused_at_load_with_file_and_line(
        tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("axes:\n  draft:\n    min: {prompt_adherence: 11}\n")
    with pytest.raises(CatalogError, match=r"policy.yaml:3: axes.draft.min.*0–10.*"
                                           r"prompt_adherence: 11"):
        mg.Policy.load(path)
    code, text = _cli("policy", "check", str(path))
    assert code == 2 and "policy.yaml:3" in text


# -- silent acceptance -------------------------------------------------------------------------------
def test_route_policy_of_the_wrong_type_is_typed() -> None:
    with pytest.raises(InvalidRequest) as info:
        _client().route("a cat", policy=123, available=["fal"])
    assert info.value.field == "policy"


@pytest.mark.parametrize(("available", "words"), [("fal", "single string"),
                                                  (["fall"], "did you mean 'fal'")])
def test_per_call_available_is_checked_like_the_clients(available: Any, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words) as info:
        _client().route("a cat", available=available)
    assert info.value.field == "available"


def test_cli_assume_available_typo_says_did_you_mean_not_missing_keys() -> None:
    data = _json_error("route", "a cat", "--assume-available", "fall")
    assert (data["type"], data["field"], data["exit_code"]) == ("InvalidRequest", "available", 2)
    assert "did you mean 'fal'" in data["message"] and "key" not in data["message"].lower()


def test_a_nul_byte_in_the_prompt_is_refused_and_not_sent() -> None:
    from modelglass.testing import simulate

    with pytest.raises(InvalidRequest) as info:
        mg.ImageRequest(prompt="a cat\x00 on a mat")
    assert info.value.field == "prompt" and "NUL" in str(info.value)
    with simulate() as sim, _client() as client, pytest.raises(InvalidRequest):
        client.generate("a cat\x00", quality="draft")
    assert sim.requests() == []


def test_events_that_is_not_callable_is_refused_before_sending() -> None:
    from modelglass.testing import simulate

    with simulate() as sim, _client() as client, pytest.raises(InvalidRequest) as info:
        client.generate("a cat", quality="draft", events="nope")  # type: ignore[arg-type]
    assert info.value.field == "events"
    assert sim.requests() == []


def test_a_missing_overlay_named_by_the_environment_is_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "my-prices.yaml"
    monkeypatch.setenv("MODELGLASS_CATALOG_OVERLAY", str(missing))
    with caplog.at_level(logging.WARNING, logger="modelglass"):
        mg.Catalog.default()
    assert any(str(missing) in r.getMessage() and "do not apply" in r.getMessage()
               for r in caplog.records)


def test_catalog_sources_and_verify_refuse_unknown_names() -> None:
    data = _json_error("catalog", "sources", "S9999")
    assert (data["type"], data["field"], data["exit_code"]) == ("InvalidRequest", "ids", 2)
    data = _json_error("catalog", "verify", "--offer", "flux-dev@fall")
    assert (data["type"], data["field"], data["exit_code"]) == ("InvalidRequest", "offer", 2)
    assert "did you mean 'flux-dev@fal'" in data["message"]


def test_compare_runs_a_repeated_model_once_and_says_so(tmp_path: Path) -> None:
    code, text = _cli("compare", "a cat", "--models", "flux-dev,flux-dev", "--simulate",
                      "--out", str(tmp_path / "s.png"), "--json")
    assert code == 0
    data = json.loads(text[text.index("{"):])
    assert [t["model"] for t in data["tiles"]] == ["flux-dev"]
    assert data["notices"] == ["flux-dev was listed 2 times; generated once"]


def test_compare_exits_1_when_every_model_failed_at_the_provider(tmp_path: Path) -> None:
    from modelglass.testing import simulate

    with simulate() as sim:
        sim.fail("fal", status=400, times=50)
        result = CliRunner().invoke(app, ["compare", "a cat", "--models",
                                          "flux-dev@fal,sdxl@fal", "--out",
                                          str(tmp_path / "s.png"), "--assume-available", "fal"],
                                    env=sim.env)
    assert result.exit_code == 1, result.output
    assert "no model made an image" in result.output and "Traceback" not in result.output


def test_a_newcomers_first_batch_without_keys_exits_2_naming_the_keys(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a cat", "quality": "draft"}\n')
    code, text = _cli("batch", str(jobs), "--out", str(tmp_path / "o"),
                      "--journal", str(tmp_path / "run.db"))
    flat = " ".join(text.split())
    assert code == 2 and "ProviderUnavailable" in flat and "FAL_KEY" in flat
    assert "hint: add --simulate" in flat
    assert not (tmp_path / "o").exists()


def test_a_simulated_rerun_of_failed_jobs_hints_retry_failed_and_charges_nothing(
        tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a cat", "quality": "draft", "id": "a"}\n')
    args = ["batch", str(jobs), "--out", str(tmp_path / "o"), "--journal", str(tmp_path / "j.db")]
    code, text = _cli(*args, "--assume-available", "fal")  # no key: the job cannot be sent
    assert code == 2 and "ProviderUnavailable" in text
    code, text = _cli(*args, "--simulate")
    flat = " ".join(text.split())
    assert code == 1 and "--retry-failed" in flat
    code, text = _cli(*args, "--simulate", "--retry-failed")
    flat = " ".join(text.split())
    assert code == 0 and "simulated, nothing was charged" in flat and "spent $" not in flat


def test_a_batch_job_no_provider_here_can_serve_names_the_key_and_exits_2(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a cat", "provider": "fal", "id": "cat"}\n')
    code, text = _cli("batch", str(jobs), "--out", str(tmp_path / "o"),
                      env={"OPENAI_API_KEY": "sk-test-not-used"})
    flat = " ".join(text.split())
    assert code == 2, text
    assert "failed cat: NoEligibleModel: not available here: no fal key: set FAL_KEY" in flat


@pytest.mark.parametrize("exc", [IsADirectoryError(21, "Is a directory", "/tmp/out"),
                                 FileExistsError(17, "File exists", "/tmp/out"),
                                 PermissionError(13, "Permission denied", "/tmp/out")])
def test_any_file_system_error_left_in_a_command_is_typed_exit_2(exc: OSError) -> None:
    import typer

    from modelglass.cli import friendly

    @friendly
    def command(json_out: bool = False) -> None:
        raise exc

    with pytest.raises(typer.Exit) as info:
        command(json_out=False)
    assert info.value.exit_code == 2


def test_an_oserror_about_no_file_is_not_blamed_on_the_user() -> None:
    from modelglass.cli import friendly

    @friendly
    def command(json_out: bool = False) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(ConnectionResetError):
        command()


def test_compare_out_under_a_file_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "sheet.png"
    data = _json_error("compare", "a cat", "--models", "flux-dev", "--simulate",
                       "--out", str(target))
    assert (data["type"], data["field"], data["path"], data["exit_code"]) == \
        ("InvalidRequest", "out", str(target), 2)
