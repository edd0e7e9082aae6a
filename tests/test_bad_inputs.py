"""Bad inputs a new user might try (issue 8, item 13): each is a typed error naming the field,
at construction or plan time — never an untyped exception, never silently accepted, never
blamed on a provider."""

from __future__ import annotations

import math
from typing import Any

import pytest
from typer.testing import CliRunner

import modelglass as mg
from modelglass.errors import InvalidRequest


def _client(**kw: Any) -> mg.Client:
    return mg.Client(observed=False, **kw)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"providers": {"fal": "garbage"}}, "providers.fal"),
    ({"providers": ["fal"]}, "providers"),
    ({"timeout_s": -1}, "timeout_s"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": math.nan}, "timeout_s"),
    ({"deadline_s": math.nan}, "deadline_s"),
    ({"deadline_s": math.inf}, "deadline_s"),
    ({"retry_backoff_s": math.nan}, "retry_backoff_s"),
    ({"retry_after_cap_s": -2}, "retry_after_cap_s"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": True}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"max_download_bytes": 0}, "max_download_bytes"),
    ({"available": ["fal", "bogus"]}, "available"),
    ({"available": ["FAL"]}, "available"),
    ({"available": "fal"}, "available"),
    ({"api_keys": {"fal": 123}}, "api_keys.fal"),
    ({"budget": 5.0}, "budget"),
    ({"allow_double_payment": "yes"}, "allow_double_payment"),
])
def test_bad_client_arguments_are_typed_errors_naming_the_argument(kwargs: dict[str, Any],
                                                                   field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _client(**kwargs)
    assert info.value.field == field
    assert field.split(".")[0] in str(info.value)


def test_unknown_available_names_list_the_valid_ones() -> None:
    with pytest.raises(InvalidRequest, match="bogus") as info:
        _client(available=["fal", "bogus"])
    assert all(p in str(info.value) for p in ("openai", "fal", "replicate", "local"))
    with pytest.raises(InvalidRequest, match="lower case"):
        _client(available=["FAL"])


@pytest.mark.parametrize(("bad", "field"), [(-1, "limit_usd"), (math.nan, "limit_usd")])
def test_bad_budgets_are_typed(bad: float, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        mg.Budget(bad)
    assert info.value.field == field


@pytest.mark.parametrize(("fields", "field"), [
    ({"steps": True}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"seed": False}, "seed"),
    ({"n": True}, "n"),
    ({"cfg": math.nan}, "cfg"),
    ({"cfg": True}, "cfg"),
    ({"max_cost_usd": math.inf}, "max_cost_usd"),
    ({"max_cost_usd": math.nan}, "max_cost_usd"),
    ({"size": "4000x100"}, "size"),
    ({"size": "100x4000"}, "size"),
    ({"aspect_ratio": "100:1"}, "aspect_ratio"),
    ({"prompt": "a lone surrogate \ud800 here"}, "prompt"),
    ({"negative_prompt": "bad \udfff"}, "negative_prompt"),
    ({"provider_options": {"fal": {"x": object()}}}, "provider_options"),
    ({"provider_options": {"fal": {"x": math.nan}}}, "provider_options"),
    ({"provider_options": {"fal": {"x": "\ud800"}}}, "provider_options"),
    ({"provider_options": {"fall": {"seed": 1}}}, "provider_options"),
])
def test_bad_request_fields_are_refused_at_construction(fields: dict[str, Any], field: str) -> None:
    fields.setdefault("prompt", "a red bicycle")
    with pytest.raises(InvalidRequest) as info:
        mg.ImageRequest(**fields)
    assert info.value.field is not None and info.value.field.startswith(field)


def test_good_neighbours_still_pass() -> None:
    r = mg.ImageRequest(prompt="a red bicycle ünïcode ✓", steps=30, size="2048x256", cfg=4,
                        provider_options={"fal": {"safety_tolerance": "2", "x": [1, {"y": None}]}})
    assert r.steps == 30 and r.size == "2048x256"


@pytest.mark.parametrize(("kwargs", "field"), [({"width": 0}, "width"), ({"height": -5}, "height"),
                                               ({"n": -3}, "n"), ({"n": 0}, "n"),
                                               ({"steps": 0}, "steps"), ({"width": 1.5}, "width")])
def test_estimate_cost_refuses_impossible_inputs(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        mg.Catalog.default().estimate_cost("flux-dev", provider="fal", **kwargs)
    assert info.value.field == field


def test_a_prompt_with_a_lone_surrogate_is_the_callers_error_not_the_providers() -> None:
    from modelglass.testing import simulate

    with simulate() as sim, _client() as client, pytest.raises(InvalidRequest, match="prompt"):
        client.generate("a cat \ud83d", model="flux-dev", provider="fal")
    assert sim.requests() == []


@pytest.mark.parametrize("value", ["fal,bogus", "FAL"])
def test_cli_assume_available_names_the_valid_providers(value: str) -> None:
    from modelglass.cli import app

    result = CliRunner().invoke(app, ["generate", "a red bicycle", "--dry-run",
                                      "--assume-available", value])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "replicate" in result.output and "available" in result.output
