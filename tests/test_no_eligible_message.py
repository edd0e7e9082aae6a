"""NoEligibleModel leads with what the user can do, in a few lines; every rejection on demand.
A strict refusal of a pinned offer is an InvalidRequest."""

from __future__ import annotations

import pytest

import modelglass as mg
from modelglass.errors import NoEligibleModel, StrictRefused

HOSTED = ["openai", "fal", "replicate"]


def _refusal(**kw: object) -> NoEligibleModel:
    client = mg.Client(available=kw.pop("available", HOSTED))  # type: ignore[arg-type]
    with pytest.raises(NoEligibleModel) as info:
        client.route("a fox in the snow", **kw).require()
    return info.value


def test_a_model_pinned_to_a_provider_that_does_not_serve_it_says_where_it_is_offered() -> None:
    exc = _refusal(model="gpt-image-2", provider="replicate")
    first = str(exc).splitlines()[0]
    assert first.startswith("gpt-image-2 is offered on ")
    assert "openai" in first and "fal" in first and "not on replicate" in first
    assert len(str(exc).splitlines()) <= 6


def test_the_default_message_is_a_few_lines_and_the_full_one_lists_every_offer() -> None:
    exc = _refusal(available=[])
    short, full = str(exc).splitlines(), exc.full_message().splitlines()
    assert len(short) <= 10
    assert len(full) >= len(exc.rejected) + 1
    assert all(f"  - {key}: " in exc.full_message() for key in exc.rejected)
    assert "full_message()" in str(exc) and "--verbose" in str(exc)


def test_strict_refusal_of_a_pinned_model_is_an_invalid_request_with_the_one_reason_first() -> None:
    exc = _refusal(model="gpt-image-2", provider="openai", seed=3, strict=True)
    assert isinstance(exc, StrictRefused) and isinstance(exc, mg.InvalidRequest)
    assert exc.field == "seed"
    first = str(exc).splitlines()[0]
    assert first.startswith("strict=True refused gpt-image-2@openai") and "seed" in first


def test_strict_without_a_pin_stays_a_routing_error() -> None:
    exc = _refusal(quality="draft", available=["openai"], seed=3, strict=True)
    assert not isinstance(exc, mg.InvalidRequest)
