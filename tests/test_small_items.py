"""Issue 10's small items: ImageResult.to_dict(), a short repr of an offer, no float noise in
costs, OpenAIProvider(aiohttp=True) failing at construction without its transport, and a refusal
message with one full stop."""

from __future__ import annotations

import json

import pytest

import modelglass as mg
from modelglass.providers import _errors
from modelglass.testing import simulate


def test_image_result_to_dict_is_json_with_numbers() -> None:
    with simulate(), mg.Client(available=["fal"]) as client:
        r = client.generate("a fox", quality="draft", seed=4, n=2)
    d = r.to_dict()
    text = json.dumps(d)
    assert "data" not in d["images"][0] and len(text) < 60_000
    assert d["model"] == r.model and d["provider"] == r.provider
    assert d["cost_usd"] == round(r.cost_usd, 6)
    assert [i["seed"] for i in d["images"]] == [4, 5]
    assert d["fates"] and d["attempts"] and d["plan"]["offer"] == d["offer"]


def test_an_offer_repr_is_one_short_line() -> None:
    view = mg.Catalog.default().offer("flux-dev@fal")
    assert repr(view) == "OfferView('flux-dev@fal', 'fal-ai/flux/dev', active)"
    decision = mg.Client(available=["fal"]).route("a fox", quality="draft")
    assert len(repr(decision.choice)) < 600


def test_refusal_message_has_one_full_stop_before_the_advice() -> None:
    for message in ("flagged by the safety checker.", "flagged by the safety checker"):
        text = str(_errors.content_rejected("fal", message, None))
        assert "checker. Rephrase" in text and ".." not in text


def test_aiohttp_transport_missing_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    from modelglass.providers.openai import OpenAIProvider

    def missing(*a: object, **k: object) -> None:
        raise RuntimeError("To use the aiohttp client you must have installed the package")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", missing)
    with pytest.raises(mg.ProviderUnavailable, match=r"modelglass\[openai-aiohttp\]"):
        OpenAIProvider(aiohttp=True)
    OpenAIProvider()  # the default transport needs nothing more
