"""Every policy knob changes routing the way it says (property tests where the knob is a number)."""

from __future__ import annotations

from typing import Any

import pytest
from _routing_models import TODAY, catalog, good, model, offer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelglass.request import ImageRequest
from modelglass.routing import Policy, RoutingDecision, route

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def req(**kw: Any) -> ImageRequest:
    return ImageRequest(**{"prompt": "a red bicycle", "quality": "hero", **kw})


def decide(cat: Any, policy: Policy | dict[str, Any] | None = None, *, observed: Any = None,
           **kw: Any) -> RoutingDecision:
    if isinstance(policy, dict):
        policy = Policy(policy)
    return route(req(**kw), cat, policy=policy, today=TODAY, observed=observed)


def constraint_of(d: RoutingDecision, key: str) -> str | None:
    return next((r.constraint for r in d.rejected if r.offer_key == key), None)


TWO_PROVIDERS = catalog(
    flux=model(good(), [offer("fal", 0.01), offer("replicate", 0.012), offer("openai", 0.02)]))


# -- providers and models ---------------------------------------------------------------------------
def test_provider_allow_keeps_only_the_listed_providers() -> None:
    d = decide(TWO_PROVIDERS, {"providers": {"allow": ["openai", "replicate"]}})
    assert [c.key for c in d.ranked] == ["flux@replicate", "flux@openai"]
    assert constraint_of(d, "flux@fal") == "policy"
    assert "not in the policy's allow list (openai, replicate)" in d.rejected[0].reason


def test_provider_deny_removes_a_provider() -> None:
    d = decide(TWO_PROVIDERS, {"providers": {"deny": ["fal"]}})
    assert d.choice is not None and d.choice.key == "flux@replicate"
    assert "the policy denies provider 'fal'" in d.rejected[0].reason


@SETTINGS
@given(bonus=st.floats(min_value=-0.5, max_value=0.5, allow_nan=False))
def test_provider_prefer_adds_exactly_its_bonus(bonus: float) -> None:
    plain = {c.key: c.total for c in decide(TWO_PROVIDERS).ranked}
    pref = {c.key: c.total for c in decide(TWO_PROVIDERS, {"providers": {"prefer": {"openai": bonus}}}).ranked}
    assert pref["flux@openai"] == pytest.approx(plain["flux@openai"] + bonus)
    assert pref["flux@fal"] == pytest.approx(plain["flux@fal"])


def test_provider_prefer_can_flip_the_choice_and_says_so() -> None:
    assert decide(TWO_PROVIDERS).choice.key == "flux@fal"  # type: ignore[union-attr]
    d = decide(TWO_PROVIDERS, {"providers": {"prefer": {"openai": 0.05}}})
    assert d.choice is not None and d.choice.key == "flux@openai"
    assert "policy prefers provider openai (+0.05)" in d.choice.reasons


def test_model_allow_deny_and_prefer() -> None:
    cat = catalog(a=model(good(), [offer("fal", 0.01)]), b=model(good(), [offer("fal", 0.01)]),
                  c=model(good(), [offer("fal", 0.01)]))
    assert [c.model for c in decide(cat, {"models": {"allow": ["b", "c"]}}).ranked] == ["b", "c"]
    assert [c.model for c in decide(cat, {"models": {"deny": ["a"]}}).ranked] == ["b", "c"]
    assert decide(cat, {"models": {"prefer": {"c": 0.01}}}).choice.model == "c"  # type: ignore[union-attr]


# -- licence requirements ---------------------------------------------------------------------------
def test_require_commercial_use_rejects_no_and_unverified() -> None:
    cat = catalog(yes=model(good(), commercial=True), no=model(good(), commercial=False),
                  maybe=model(good(), commercial=None))
    assert [c.model for c in decide(cat).ranked] == ["maybe", "no", "yes"]
    d = decide(cat, {"require": {"commercial_use": True}})
    assert [c.model for c in d.ranked] == ["yes"]
    assert "the policy requires commercial_use: true" in next(
        r.reason for r in d.rejected if r.offer_key == "no@fal")
    assert "unverified" in next(r.reason for r in d.rejected if r.offer_key == "maybe@fal")


def test_require_open_weights() -> None:
    cat = catalog(open=model(good(), open_weights=True), closed=model(good(), open_weights=False))
    d = decide(cat, {"require": {"open_weights": True}})
    assert [c.model for c in d.ranked] == ["open"] and constraint_of(d, "closed@fal") == "licence"


# -- latency limits ---------------------------------------------------------------------------------
class Store:
    def __init__(self, **p90: float) -> None:
        self.p90 = {k.replace("_", "-").replace("-at-", "@"): v for k, v in p90.items()}

    def latency_p90(self, offer_key: str) -> float | None:
        return self.p90.get(offer_key)


LATENCY = catalog(
    fast=model(good(), [offer("fal", 0.02, latency={"p50_s": 4.0})]),
    slow=model(good(), [offer("fal", 0.01, latency={"p50_s": 10.0, "p95_s": 45.0})]),
    unknown=model(good(), [offer("fal", 0.005)]),
)


def test_latency_limit_judges_the_catalog_when_nothing_was_observed() -> None:
    d = decide(LATENCY, {"limits": {"max_latency_p90_s": 30}})
    assert [c.model for c in d.ranked] == ["fast"]
    slow = next(r for r in d.rejected if r.offer_key == "slow@fal")
    assert slow.constraint == "latency" and slow.reason.startswith("catalog p95 45 s")
    unknown = next(r for r in d.rejected if r.offer_key == "unknown@fal")
    assert "latency unknown" in unknown.reason and "unknown_latency: allow" in unknown.reason
    relaxed = decide(LATENCY, {"limits": {"max_latency_p90_s": 30, "unknown_latency": "allow"}})
    assert [c.model for c in relaxed.ranked] == ["unknown", "fast"]


def test_observed_latency_overrides_the_catalog() -> None:
    store = Store(slow_at_fal=12.0, fast_at_fal=40.0)
    d = decide(LATENCY, {"limits": {"max_latency_p90_s": 30}}, observed=store)
    assert [c.model for c in d.ranked] == ["slow"]
    assert next(r.reason for r in d.rejected if r.offer_key == "fast@fal") == \
        "observed p90 40.0 s > limit 30 s"


@SETTINGS
@given(limit=st.floats(min_value=1, max_value=60), req_limit=st.none() | st.floats(1, 60))
def test_every_ranked_offer_is_within_the_tighter_latency_limit(limit: float,
                                                                 req_limit: float | None) -> None:
    d = decide(LATENCY, {"limits": {"max_latency_p90_s": limit}}, max_latency_s=req_limit)
    bound = min(limit, req_limit) if req_limit is not None else limit
    known = {"fast": 4.0, "slow": 45.0}
    assert all(known[c.model] <= bound for c in d.ranked)
    assert {c.model for c in d.ranked} == {m for m, v in known.items() if v <= bound}


def test_request_max_latency_s_works_without_a_policy_limit() -> None:
    d = decide(LATENCY, max_latency_s=5)
    assert [c.model for c in d.ranked] == ["fast"]


# -- cost -------------------------------------------------------------------------------------------
PRICES = catalog(cheap=model(good(prompt_adherence=7), [offer("fal", 0.004)]),
                 mid=model(good(prompt_adherence=8), [offer("fal", 0.03)]),
                 dear=model(good(prompt_adherence=9.5), [offer("fal", 0.12)]))


@SETTINGS
@given(ceiling=st.floats(min_value=0.001, max_value=0.2))
def test_policy_cost_ceiling_bounds_every_ranked_offer(ceiling: float) -> None:
    d = decide(PRICES, {"limits": {"max_cost_usd": ceiling}})
    assert all(c.cost_per_image_usd is not None and c.cost_per_image_usd <= ceiling + 1e-12
               for c in d.ranked)
    assert all(r.constraint == "budget" for r in d.rejected)


def test_axis_ceiling_and_cost_weight_move_the_choice() -> None:
    assert decide(PRICES).choice.model == "dear"  # type: ignore[union-attr]
    capped = decide(PRICES, {"axes": {"hero": {"max_cost_usd": 0.05}}})
    assert capped.choice.model == "mid"  # type: ignore[union-attr]
    assert "exceeds the hero axis ceiling $0.05/image" in next(
        r.reason for r in capped.rejected if r.offer_key == "dear@fal")
    thrifty = decide(PRICES, {"axes": {"hero": {"cost_weight": 0.9}}})
    assert thrifty.choice.model == "cheap"  # type: ignore[union-attr]


@SETTINGS
@given(cw=st.floats(min_value=0, max_value=1))
def test_raising_cost_weight_never_picks_a_dearer_offer(cw: float) -> None:
    low = decide(PRICES, {"axes": {"hero": {"cost_weight": cw}}}).choice
    high = decide(PRICES, {"axes": {"hero": {"cost_weight": min(1.0, cw + 0.2)}}}).choice
    assert low is not None and high is not None
    assert high.cost_per_image_usd <= low.cost_per_image_usd  # type: ignore[operator]


def test_axis_minimum_rejects_below_it() -> None:
    d = decide(PRICES, {"axes": {"hero": {"min": {"prompt_adherence": 8}}}})
    assert {c.model for c in d.ranked} == {"mid", "dear"}
    assert next(r.reason for r in d.rejected if r.offer_key == "cheap@fal") == \
        "prompt_adherence 7.0 < minimum 8"


@SETTINGS
@given(minimum=st.floats(min_value=0, max_value=10))
def test_every_ranked_model_meets_the_policys_minimum(minimum: float) -> None:
    d = decide(PRICES, {"axes": {"hero": {"min": {"prompt_adherence": minimum}}}})
    pa = {"cheap": 7, "mid": 8, "dear": 9.5}
    assert {c.model for c in d.ranked} == {m for m, v in pa.items() if v >= minimum}


def test_axis_weights_shift_the_choice() -> None:
    cat = catalog(sharp=model(good(prompt_adherence=9, text_rendering=2)),
                  lettered=model(good(prompt_adherence=7, text_rendering=9.5)))
    assert decide(cat).choice.model == "sharp"  # type: ignore[union-attr]
    d = decide(cat, {"axes": {"hero": {"weights": {"text_rendering": 3}}}})
    assert d.choice.model == "lettered"  # type: ignore[union-attr]
    assert d.weights["text_rendering"] == 3


# -- tie-breaking -----------------------------------------------------------------------------------
TIES = catalog(
    a=model(good(), [offer("fal", 0.01, latency={"p50_s": 9.0})]),
    b=model(good(), [offer("replicate", 0.01, latency={"p50_s": 3.0})]),
)


def test_ties_break_by_cost_then_offer_key_by_default_and_by_the_policys_keys() -> None:
    assert [c.key for c in decide(TIES).ranked] == ["a@fal", "b@replicate"]
    by_latency = decide(TIES, {"tie_break": ["latency", "offer"]})
    assert [c.key for c in by_latency.ranked] == ["b@replicate", "a@fal"]


def test_tie_tolerance_makes_near_totals_ties() -> None:
    cat = catalog(better=model(good(prompt_adherence=8.1), [offer("fal", 0.011)]),
                  cheaper=model(good(prompt_adherence=8.0), [offer("fal", 0.010)]))
    assert decide(cat).choice.model == "better"  # type: ignore[union-attr]
    tol = decide(cat, {"tie_tolerance": 0.02, "tie_break": ["cost"]})
    assert tol.choice.model == "cheaper"  # type: ignore[union-attr]
    by_quality = decide(cat, {"tie_tolerance": 0.02, "tie_break": ["quality"]})
    assert by_quality.choice.model == "better"  # type: ignore[union-attr]


# -- scoring numbers --------------------------------------------------------------------------------
@SETTINGS
@given(bonus=st.floats(min_value=0, max_value=0.3))
def test_scoring_text_bonus_is_what_the_policy_says(bonus: float) -> None:
    cat = catalog(lettered=model(good(text_rendering=9)))
    quoted = "a sign that says 'OPEN'"
    base = route(req(prompt=quoted), cat, today=TODAY).choice
    d = route(req(prompt=quoted), cat, today=TODAY,
              policy=Policy({"scoring": {"text_bonus": bonus}})).choice
    assert base is not None and d is not None
    assert d.total - base.total == pytest.approx(bonus - 0.03)


def test_explain_names_the_policy_file(tmp_path: Any) -> None:
    path = tmp_path / "team.yaml"
    path.write_text("providers: {deny: [openai]}\n")
    d = route(req(), TWO_PROVIDERS, today=TODAY, policy=Policy.load(path, catalog=TWO_PROVIDERS))
    text = d.explain()
    assert f"policy: team ({path})" in text or "policy: team (" in text
    assert "the policy denies provider 'openai'" in text


def test_clients_judge_latency_on_the_observed_store(tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import modelglass as mg
    from modelglass.catalog._observed import ObservedStore

    db = tmp_path / "observed.db"
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(db))
    monkeypatch.delenv("MODELGLASS_OBSERVE", raising=False)
    store = ObservedStore(db)
    for s in (41.0, 44.0, 47.0):  # fast@fal is 4 s by the catalog, 40+ s in practice
        store.record_result("fast@fal", latency_s=s)
    client = mg.Client(catalog=LATENCY, available=["fal"],
                       policy=Policy({"limits": {"max_latency_p90_s": 30,
                                                 "unknown_latency": "allow"}}))
    d = client.route("a red bicycle", quality="hero")
    fast = next(r for r in d.rejected if r.offer_key == "fast@fal")
    assert fast.constraint == "latency" and fast.reason.startswith("observed p90 4")
    assert [c.model for c in d.ranked] == ["unknown"]
    # plan() takes a policy too: one that rejects unknown latency leaves nothing to plan.
    assert client.plan("a red bicycle", quality="hero").offer.key == "unknown@fal"
    with pytest.raises(mg.NoEligibleModel):
        client.plan("a red bicycle", quality="hero",
                    policy=Policy({"limits": {"max_latency_p90_s": 30}}))


def test_a_clients_own_observed_store_is_the_one_routing_reads(tmp_path: Any) -> None:
    import modelglass as mg
    from modelglass.catalog._observed import ObservedStore

    own = ObservedStore(tmp_path / "own.db")
    for s in (41.0, 44.0, 47.0):  # fast@fal is 4 s by the catalog, 40+ s in this store
        own.record_result("fast@fal", latency_s=s)
    policy = Policy({"limits": {"max_latency_p90_s": 30, "unknown_latency": "allow"}})
    with mg.Client(catalog=LATENCY, available=["fal"], policy=policy, observed=own) as client:
        d = client.route("a red bicycle", quality="hero")
    fast = next(r for r in d.rejected if r.offer_key == "fast@fal")
    assert fast.constraint == "latency" and fast.reason.startswith("observed p90 4")
    # Observing off for a client: routing judges on the catalog's figures only.
    with mg.Client(catalog=LATENCY, available=["fal"], policy=policy, observed=False) as client:
        d = client.route("a red bicycle", quality="hero")
    assert "fast" in [c.model for c in d.ranked]
