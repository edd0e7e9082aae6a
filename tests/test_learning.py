"""Routing that learns: observed outcome checks move the ranking past a minimum sample, not before."""

from __future__ import annotations

from typing import Any

import pytest
from _routing_models import TODAY, catalog, good, model, offer

from modelglass.checks import prompt_class
from modelglass.request import ImageRequest
from modelglass.routing import Policy, RoutingDecision, route
from modelglass.routing._learning import PassRate, prior_pass_probability

# A cheap model that spells badly and a dearer one that spells well, on the cost-heavy draft axis:
# the static router picks the cheap one for quoted text.
SPELLING = catalog(cheap=model(good(text_rendering=5.0), [offer("fal", 0.003)]),
                   speller=model(good(text_rendering=9.0), [offer("fal", 0.006)]))
SIGN = 'a shop sign that says "OPEN"'


class Rates:
    """An observed store of check outcomes: (passed, total) per offer, check and prompt class."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str, str | None], tuple[int, int]] = {}
        self.asked: list[tuple[str, str, str | None]] = []

    def add(self, key: str, passed: int, total: int, cls: str = "latin") -> Rates:
        self.data[(key, "text", cls)] = (passed, total)
        return self

    def check_rate(self, offer_key: str, check: str = "text",
                   prompt_class: str | None = None) -> tuple[int, int]:
        self.asked.append((offer_key, check, prompt_class))
        return self.data.get((offer_key, check, prompt_class), (0, 0))

    def latency_p90(self, offer_key: str) -> float | None:
        return None


def decide(observed: Any, prompt: str = SIGN, policy: Policy | None = None,
           **kw: Any) -> RoutingDecision:
    request = ImageRequest(prompt=prompt, quality=kw.pop("quality", "draft"), **kw)
    return route(request, SPELLING, policy=policy, today=TODAY, observed=observed)


def test_static_router_picks_the_cheap_speller_without_observations() -> None:
    d = decide(Rates())
    assert d.choice is not None and d.choice.key == "cheap@fal"
    assert d.ranking is None
    assert "pass rate" not in d.explain()


@pytest.mark.parametrize("failures", [1, 10, 19])
def test_routing_does_not_move_below_the_minimum_sample(failures: int) -> None:
    d = decide(Rates().add("cheap@fal", 0, failures))
    assert d.choice is not None and d.choice.key == "cheap@fal"
    assert d.ranking is None


def test_routing_moves_after_enough_observed_failures() -> None:
    d = decide(Rates().add("cheap@fal", 0, 20))
    assert d.choice is not None and d.choice.key == "speller@fal"
    assert [c.key for c in d.ranked] == ["speller@fal", "cheap@fal"]
    assert d.ranking is not None and "expected cost per accepted image" in d.ranking


def test_explain_states_the_pass_rate_it_used() -> None:
    d = decide(Rates().add("cheap@fal", 2, 41).add("speller@fal", 30, 33))
    text = d.explain()
    # speller: prior 0.9 × 10 + 30 passed over 10 + 33 → 0.91
    assert "text pass rate 0.91, 33 observed + prior" in text
    assert "ranking: ranked by expected cost per accepted image" in text
    cheap = next(c for c in d.ranked if c.key == "cheap@fal")
    assert any("text pass rate 0.14, 41 observed + prior" in r for r in cheap.reasons)
    assert any("$0.0066 per accepted image ($0.0060 ÷ 0.91)" in r
               for r in d.ranked[0].reasons)
    assert d.to_dict()["ranking"] == d.ranking


def test_a_cheap_offer_that_spells_well_keeps_winning_once_learned() -> None:
    d = decide(Rates().add("cheap@fal", 38, 40))
    assert d.ranking is not None
    assert d.choice is not None and d.choice.key == "cheap@fal"
    assert any("text pass rate 0.86, 40 observed + prior" in r for r in d.choice.reasons)


def test_offers_below_the_sample_use_prior_plus_what_was_seen() -> None:
    # speller has only 5 (failed) checks, cheap 25 good ones: both are ranked on their posterior
    d = decide(Rates().add("cheap@fal", 20, 25).add("speller@fal", 0, 5))
    speller = next(c for c in d.ranked if c.key == "speller@fal")
    assert any("text pass rate 0.60, 5 observed + prior" in r for r in speller.reasons)
    assert d.choice is not None and d.choice.key == "cheap@fal"


def test_policy_sets_the_minimum_sample_and_the_prior_strength() -> None:
    few = Rates().add("cheap@fal", 0, 5)
    assert decide(few).choice.key == "cheap@fal"  # type: ignore[union-attr]
    eager = Policy({"learning": {"min_samples": 5}})
    assert decide(few, policy=eager).choice.key == "speller@fal"  # type: ignore[union-attr]
    # a prior worth 1000 observations drowns 20 failures: cheap stays at 0.5 → still the cheapest
    # per accepted image (0.003 / 0.49 < 0.006 / 0.9)
    stubborn = Policy({"learning": {"prior_strength": 1000}})
    assert decide(Rates().add("cheap@fal", 0, 20),
                  policy=stubborn).choice.key == "cheap@fal"  # type: ignore[union-attr]


def test_learning_off_in_the_policy_never_moves_routing() -> None:
    off = Policy({"learning": {"enabled": False}})
    d = decide(Rates().add("cheap@fal", 0, 200), policy=off)
    assert d.choice is not None and d.choice.key == "cheap@fal" and d.ranking is None


def test_a_prompt_without_quoted_text_is_not_ranked_by_a_check() -> None:
    rates = Rates().add("cheap@fal", 0, 200)
    d = decide(rates, prompt="a red bicycle")
    assert d.choice is not None and d.choice.key == "cheap@fal" and d.ranking is None
    assert rates.asked == []  # the store is not even asked


def test_each_prompt_class_learns_on_its_own() -> None:
    # cheap fails every non-Latin sign but spells Latin text fine
    rates = Rates().add("cheap@fal", 0, 50, cls="other").add("cheap@fal", 45, 50, cls="latin")
    assert decide(rates).choice.key == "cheap@fal"  # type: ignore[union-attr]
    d = decide(rates, prompt="a shop sign that says “東京ラーメン”")
    assert d.choice is not None and d.choice.key == "speller@fal"
    assert "other text" in d.ranking  # type: ignore[operator]


def test_without_an_observed_store_routing_is_static() -> None:
    d = decide(None)
    assert d.choice is not None and d.choice.key == "cheap@fal" and d.ranking is None


def test_a_broken_store_does_not_break_routing() -> None:
    class Broken:
        def check_rate(self, *a: Any, **k: Any) -> tuple[int, int]:
            raise OSError("disk gone")

    d = decide(Broken())
    assert d.choice is not None and d.choice.key == "cheap@fal"


def test_the_learning_section_of_a_policy_file_is_validated() -> None:
    from modelglass.errors import CatalogError

    assert Policy().learning.min_samples == 20 and Policy().learning.prior_strength == 10
    assert Policy.default().learning.min_samples == 20
    with pytest.raises(Exception, match="min_samples"):
        Policy({"learning": {"min_samples": 0}})
    with pytest.raises((CatalogError, ValueError), match="prior_strengh"):
        Policy({"learning": {"prior_strengh": 3}})


def test_prior_from_score_and_prompt_classes() -> None:
    assert prior_pass_probability(6.2) == 0.62
    assert prior_pass_probability(0.0) == 0.02 and prior_pass_probability(None) == 0.5
    def cls(prompt: str, **kw: Any) -> str:
        return prompt_class(ImageRequest(prompt=prompt, **kw))

    assert cls('a sign "SALE 50%"') == "latin" and cls("a menu «Crème brûlée»") == "latin"
    assert cls("a red fox") == "none" and cls("a sign", expect_text="Привет") == "other"
    rate = PassRate("text", "latin", 0.5, 10, 0, 0)
    assert rate.mean == 0.5 and rate.describe() == "text pass rate 0.50, prior only, none observed"


def test_a_client_learns_from_its_observed_store(tmp_path: Any) -> None:
    import modelglass as mg
    from modelglass.catalog._observed import ObservedStore

    store = ObservedStore(tmp_path / "observed.sqlite")
    client = mg.Client(catalog=SPELLING, available=["fal"], observed=store, today=TODAY)
    assert client.route(SIGN, quality="draft").choice.key == "cheap@fal"
    for _ in range(19):
        store.record_check("cheap@fal", "text", "fail", prompt_class="latin")
    assert client.route(SIGN, quality="draft").choice.key == "cheap@fal"
    store.record_check("cheap@fal", "text", "fail", prompt_class="latin")
    d = client.route(SIGN, quality="draft")
    assert d.choice.key == "speller@fal"
    assert "text pass rate 0.90, prior only, none observed" in d.explain()
    assert any("text pass rate 0.17, 20 observed + prior" in r for r in d.ranked[1].reasons)
    # the runner-up's line states the rate it was ranked on, not a total
    assert "2. cheap@fal — text pass rate 0.17, 20 observed + prior" in d.explain()


def test_a_client_without_its_own_store_learns_from_the_default_one(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelglass as mg
    from modelglass.catalog._observed import ObservedStore

    path = tmp_path / "default.sqlite"
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(path))
    monkeypatch.setenv("MODELGLASS_OBSERVE", "1")
    writer = ObservedStore(path)
    for _ in range(20):
        writer.record_check("cheap@fal", "text", "fail", prompt_class="latin")
    client = mg.Client(catalog=SPELLING, available=["fal"], today=TODAY)
    assert client.route(SIGN, quality="draft").choice.key == "speller@fal"
    monkeypatch.setenv("MODELGLASS_OBSERVE", "0")  # observing off: the catalog alone decides
    assert client.route(SIGN, quality="draft").choice.key == "cheap@fal"


def _v3_catalog(**models: Any) -> Any:
    """A formula-v3 catalog (scores carry a standard error) of hand-built models."""
    from _routing_models import AXES

    from modelglass.catalog import Catalog
    from modelglass.catalog._schema import Settings

    settings = Settings(providers={"openai": "", "fal": "", "replicate": "", "local": ""},
                        sources={"T": "test"}, formula_version=3)
    return Catalog(settings, AXES, models)


def _text_model(usd: float, longtext_en: float | None) -> Any:
    """A model with no stated text prior: one LongText-EN row, or no text evidence at all."""
    from modelglass.catalog._schema import Model

    base = model({k: v for k, v in good().items() if k != "text_rendering"},
                 [offer("fal", usd)]).model_dump(exclude_none=True)
    if longtext_en is not None:
        base["evidence"] = [{"metric": "longtext_en", "value": longtext_en, "source": "T",
                             "confidence": "P"}]
    return Model.model_validate(base)


def test_an_uncertain_score_is_a_weaker_prior() -> None:
    from modelglass.routing._learning import prior_pseudo_count

    assert prior_pseudo_count(10, 0.9, None) == 10 and prior_pseudo_count(10, 0.9, 0.0) == 10
    # variance p0(1 − p0)/k plus (SE/10)², back to a pseudo-count: the unknown prior 5.0 ± 3.0
    assert round(prior_pseudo_count(10, 0.5, 3.0), 2) == 2.17
    strengths = [prior_pseudo_count(10, 0.9, se) for se in (0.1, 0.5, 1.0, 2.0)]
    assert strengths == sorted(strengths, reverse=True) and 9.8 < strengths[0] < 10
    assert round(prior_pseudo_count(1000, 0.5, 3.0), 2) == 2.77  # a huge k is capped by the SE


def test_observed_passes_move_an_uncertain_model_more_than_a_certain_one() -> None:
    # "known": LongText-EN 0.9 → 8.9 ± 0.5, a prior worth 8.0 checks; "unknown": no text
    # evidence → prior 5.0 ± 3.0, worth 2.2 checks. 20 of 20 observed passes lift unknown to
    # 0.95: $0.0047 / 0.95 beats known's $0.0045 / 0.89. Counted as 10 checks the unknown prior
    # would hold it at 0.83 ($0.0056 per accepted image) and known would win.
    cat = _v3_catalog(known=_text_model(0.0045, 0.9), unknown=_text_model(0.0047, None))
    assert cat.scores("unknown")["text_rendering"].stderr == 3.0
    request = ImageRequest(prompt=SIGN, quality="draft")
    d = route(request, cat, today=TODAY, observed=Rates().add("unknown@fal", 20, 20))
    assert d.choice is not None and d.choice.key == "unknown@fal"
    assert any("text pass rate 0.95, 20 observed + prior; prior worth 2.2 of 10 checks (score ± 3.0)"
               in r for r in d.choice.reasons)
    known = next(c for c in d.ranked if c.key == "known@fal")
    assert any("text pass rate 0.89, prior only, none observed; prior worth 8.0 of 10 checks "
               "(score ± 0.5)" in r for r in known.reasons)
    assert "less where the score is uncertain" in d.ranking  # type: ignore[operator]
