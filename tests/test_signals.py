"""Prompt signals: quoted text, counts and placement words, negative prompts."""

from __future__ import annotations

import pytest

from modelglass.routing import Signals, prompt_signals


@pytest.mark.parametrize("prompt, quoted", [
    ('a poster that says "SUMMER SALE"', ("SUMMER SALE",)),
    ("a storefront sign that says 'GRAND OPENING'", ("GRAND OPENING",)),
    ("a neon sign reading “Open 24h” over the door", ("Open 24h",)),
    ("a mug with ‘World’s Best Dad’ printed on it", ("World’s Best Dad",)),
    ('"HELLO" and "WORLD" on two banners', ("HELLO", "WORLD")),
    ("a label: 'Café'.", ("Café",)),
])
def test_quoted_text_in_any_quote_style_is_found(prompt: str, quoted: tuple[str, ...]) -> None:
    s = prompt_signals(prompt)
    assert s.quoted_text == quoted
    assert s.text_matters


@pytest.mark.parametrize("prompt", [
    "don't forget the cat's toy",
    "the children's book illustrators' favourite style",
    "rock 'n' roll",
    "a cat",
])
def test_apostrophes_are_not_quoted_text(prompt: str) -> None:
    assert not prompt_signals(prompt).text_matters


@pytest.mark.parametrize("prompt, count", [
    ("three cats on a sofa", "three cats"),
    ("2 dogs playing", "2 dogs"),
    ("a photo of 12 red balloons", "12 red balloons"),
    ("a pair of shoes", "a pair of shoes"),
    ("five people at a table", "five people"),
])
def test_counts_of_things_make_composition_matter(prompt: str, count: str) -> None:
    s = prompt_signals(prompt)
    assert count in s.counts
    assert s.composition_matters


@pytest.mark.parametrize("prompt", [
    "a 35mm photo of a lighthouse",
    "4k render of a forest",
    "fashion of the 1990s",
    "a 50 mm portrait",
    "one cat",
])
def test_units_and_single_things_are_not_counts(prompt: str) -> None:
    s = prompt_signals(prompt)
    assert s.counts == ()
    assert not s.composition_matters


@pytest.mark.parametrize("phrase", ["left of", "right of", "above", "below", "behind",
                                    "in front of", "between", "next to", "on top of"])
def test_spatial_words_make_composition_matter(phrase: str) -> None:
    s = prompt_signals(f"a red cube {phrase} a blue sphere")
    assert phrase in s.spatial
    assert s.composition_matters


def test_spatial_words_need_word_boundaries() -> None:
    assert prompt_signals("a nextdoor neighbour, abovementioned").spatial == ()


def test_negative_prompt_signal_ignores_blank_text() -> None:
    assert prompt_signals("a fox", "blurry").negative_prompt
    assert not prompt_signals("a fox", "   ").negative_prompt
    assert not prompt_signals("a fox").negative_prompt


def test_signal_key_depends_on_effect_not_words() -> None:
    a = prompt_signals('a sign saying "A"', "blur")
    b = prompt_signals('a sign saying "completely different words"', "noise")
    assert a.key == b.key == (True, False, True)
    assert a != b


def test_describe_names_the_words_that_fired() -> None:
    lines = prompt_signals('a sign saying "OPEN", two cats behind it', "blurry").describe()
    text = "\n".join(lines)
    assert "“OPEN”" in text and "text_rendering" in text
    assert "'two cats'" in text and "'behind'" in text and "composition" in text
    assert "negative prompt" in text
    assert Signals().describe() == []


def test_to_dict_is_plain_data() -> None:
    d = prompt_signals("3 apples above a bowl").to_dict()
    assert d["counts"] == ["3 apples"] and d["spatial"] == ["above"]
    assert d["composition_matters"] is True and d["text_matters"] is False


from hypothesis import given, settings
from hypothesis import strategies as st

from modelglass.routing import _signals

_WORDS = ["two", "Three", "cats", "4", "35mm", "left of", "'OPEN'", '"SALE"', "“Hi”", "don't",
          "a", "dozen", "eggs", "pair of", "shoes", "above", "the", "sign", "«x»", "both", "dogs"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=12))
def test_the_cheap_prechecks_never_change_the_signals(words: list[str]) -> None:
    prompt = " ".join(words)
    quoted = tuple(t.strip() for m in _signals._QUOTED.finditer(prompt)
                   for t in m.groups() if t is not None and t.strip())
    counts = tuple(m.group(0) for m in _signals._COUNT.finditer(prompt)
                   if not (m.group(1) is not None and m.group(3).lower() in _signals._UNITS))
    s = _signals.prompt_signals(prompt)
    assert (s.quoted_text, s.counts) == (quoted, counts)
