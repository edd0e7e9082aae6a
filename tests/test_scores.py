"""Capability scores: formula v1 with fixed anchors reproduces the worked derivations (§3.2);
formula v2 adds arena Elo as a documented fallback for prompt adherence and keeps speed hosted-only."""

from __future__ import annotations

from typing import Any

import pytest

from modelglass.catalog import AXES, Catalog, Model
from modelglass.catalog._scores import FORMULAS, KNOWN_METRICS, compute_scores
from modelglass.errors import CatalogError


def toy(evidence: list[dict[str, Any]] | None = None, **kw: Any) -> Model:
    data: dict[str, Any] = {
        "name": "Toy", "family": "toy", "licence": {"id": "mit"}, "controls": {},
        "geometry": {}, "evidence": evidence or [],
    }
    data.update(kw)
    return Model.model_validate(data)


def ev(metric: str, value: float) -> dict[str, Any]:
    return {"metric": metric, "value": value, "source": "T"}


# --- the shipped catalog reproduces catalog-data.md §3.2 ------------------------------------------

WORKED = [
    # model, axis, score from the §3.2 table, computed with formula v2 on the shipped evidence.
    # Issue 14 dropped the rows whose sources do not resolve (S44–S47, S68): those entries are
    # gone (sdxl and dall-e-3 GenEval now cite the HiDream report's Table 2, S40: same values).
    ("sd-1.5", "resolution", 0.1),
    ("dall-e-2", "resolution", 3.4),
    ("sdxl", "prompt_adherence", 3.9), ("sdxl", "composition", 2.2), ("sdxl", "photorealism", 1.5),
    ("sdxl", "style_range", 4.9), ("sdxl", "resolution", 3.4),
    ("sdxl-turbo", "resolution", 0.1),
    ("pixart-sigma", "prompt_adherence", 4.8), ("pixart-sigma", "resolution", 6.8),
    ("playground-v2.5", "prompt_adherence", 4.2), ("playground-v2.5", "resolution", 3.4),
    ("flux-dev", "prompt_adherence", 6.6), ("flux-dev", "composition", 3.9),
    ("flux-dev", "photorealism", 5.1),
    ("flux-dev", "style_range", 6.3), ("flux-dev", "resolution", 5.0),
    ("flux-schnell", "prompt_adherence", 7.2), ("flux-schnell", "speed", 8.2),
    ("dall-e-3", "prompt_adherence", 6.6), ("dall-e-3", "composition", 5.2),
    ("dall-e-3", "photorealism", 5.1), ("dall-e-3", "style_range", 5.1), ("dall-e-3", "speed", 3.7),
    ("dall-e-3", "resolution", 4.8),
    ("sd-3.5-large", "resolution", 3.4),
    ("hidream-i1", "prompt_adherence", 8.6), ("hidream-i1", "composition", 7.8),
    ("hidream-i1", "photorealism", 6.6),
    ("hidream-i1", "style_range", 7.7), ("hidream-i1", "resolution", 3.4),
    ("gpt-image-1", "prompt_adherence", 8.6), ("gpt-image-1", "resolution", 4.4),
    ("qwen-image", "prompt_adherence", 9.4), ("qwen-image", "composition", 9.0),
    ("qwen-image", "text_rendering", 8.9), ("qwen-image", "speed", 3.4),
    ("qwen-image", "resolution", 4.7),
    ("flux-2-klein", "prompt_adherence", 9.0), ("flux-2-klein", "text_rendering", 8.6),
    ("flux-2-klein", "speed", 8.6),
    ("gpt-image-1.5", "speed", 2.9), ("gpt-image-1.5", "resolution", 4.4),
    ("gpt-image-2", "speed", 2.3), ("gpt-image-2", "resolution", 8.4),
    ("flux-1.1-pro", "resolution", 5.1),
    ("flux-1.1-pro-ultra", "speed", 3.7), ("flux-1.1-pro-ultra", "resolution", 6.8),
    ("recraft-v3", "speed", 4.5),
]


@pytest.mark.parametrize(("model_id", "axis", "expected"), WORKED)
def test_shipped_scores_reproduce_the_worked_derivations(model_id: str, axis: str,
                                                         expected: float) -> None:
    score = compute_scores(Catalog.default().models[model_id], 2)[axis]
    assert score.value == pytest.approx(expected)
    assert not score.estimated
    assert score.evidence, "a computed score carries the evidence it used"


def test_imagen_4_ultra_resolution_uses_its_largest_published_size() -> None:
    # §3.2 says 4.33 MP → 6.9, but the published 2K set includes 1792x2560 = 4.59 MP → 7.0.
    score = Catalog.default().score("imagen-4-ultra", "resolution")
    assert score.value == 7.0
    assert score.evidence[0].source == "geometry"
    assert score.evidence[0].value == pytest.approx(1792 * 2560 / 1e6)


def test_scores_without_evidence_are_unknown_not_zero() -> None:
    cat = Catalog.default()
    assert cat.score("sd-1.5", "photorealism").value is None
    assert str(cat.score("sd-1.5", "photorealism")) == "unknown"
    assert cat.score("flux-2-klein", "resolution").value is None   # geometry has no limit
    assert cat.score("hidream-i1", "speed").value is None


def test_the_shipped_catalog_states_no_priors_so_no_score_is_hand_placed() -> None:
    cat = Catalog.default()
    assert cat.settings.formula_version == 3
    assert {mid: list(m.priors) for mid, m in cat.models.items() if m.priors} == {}
    for mid in cat.models:
        for axis, score in cat.scores(mid).items():
            assert not score.estimated, (mid, axis)
            assert score.value is None or score.evidence, (mid, axis)


@pytest.mark.parametrize(("model_id", "expected"), [
    # Δ = Elo − FLUX.2 [max] in the same snapshot; median over snapshots; 10/(1+10^(−Δ/400)).
    # (gpt-image-2 and gemini-3.1-flash-image have GenEval/DPG rows since issue 14 (S91), and
    # gemini-3-pro-image DPG since GLM-Image's January 2026 "Nano Banana 2.0" row was read as
    # Nano Banana Pro (S92, S97), so v2 no longer falls back to their arena ratings.)
    ("gpt-image-1.5", 5.9),      # AA: 1266−1200 = 66 (Mar), 1272−1201 = 71 (May), 1260−1194 = 66 (Jul)
    ("flux-2-pro", 4.8),         # AA: 1181−1200 = −19 (Mar), 1185−1194 = −9 (Jul): median −14
    ("flux-2-max", 5.0),         # the anchor itself
])
def test_arena_only_models_get_prompt_adherence_from_formula_v2(model_id: str,
                                                               expected: float) -> None:
    score = compute_scores(Catalog.default().models[model_id], 2)["prompt_adherence"]
    assert score.value == pytest.approx(expected)
    assert not score.estimated and score.formula_version == 2
    assert {e.metric for e in score.evidence} == {"arena_elo_vs_anchor"}
    assert "anchor" in score.formula


@pytest.mark.parametrize("model_id", ["gpt-image-1-mini", "hidream-i1-fast", "recraft-v4"])
def test_models_with_no_formula_input_have_unknown_prompt_adherence(model_id: str) -> None:
    score = Catalog.default().score(model_id, "prompt_adherence")
    assert score.value is None and str(score) == "unknown"


@pytest.mark.parametrize("model_id", ["sdxl", "pixart-sigma", "playground-v2.5", "flux-dev"])
def test_speed_is_hosted_latency_only_local_gpu_time_is_kept_apart(model_id: str) -> None:
    cat = Catalog.default()
    assert cat.score(model_id, "speed").value is None
    local = [e for e in cat.models[model_id].evidence if e.metric == "latency_local_a100_s"]
    assert local and all("A100" in (e.note or "") for e in local)
    assert not [e for e in cat.models[model_id].evidence if e.metric == "latency_s"]


# --- formula v2 on synthetic evidence -------------------------------------------------------------

@pytest.mark.parametrize(("delta", "expected"), [(0, 5.0), (200, 7.6), (400, 9.1), (-200, 2.4),
                                                 (1600, 10.0), (-1600, 0.0)])
def test_v2_maps_an_elo_difference_to_ten_times_the_win_probability(delta: float,
                                                                     expected: float) -> None:
    score = compute_scores(toy([ev("arena_elo_vs_anchor", delta)]), 2)["prompt_adherence"]
    assert score.value == expected


def test_v2_arena_is_a_fallback_benchmarks_win() -> None:
    both = toy([ev("geneval", 0.65), ev("arena_elo_vs_anchor", 400)])
    assert compute_scores(both, 2)["prompt_adherence"].value == 5.0
    assert [e.metric for e in compute_scores(both, 2)["prompt_adherence"].evidence] == ["geneval"]


def test_v1_ignores_arena_evidence() -> None:
    model = toy([ev("arena_elo_vs_anchor", 400)])
    assert compute_scores(model, 1)["prompt_adherence"].value is None


def test_v2_keeps_every_v1_axis_formula_but_prompt_adherence_and_speed_text() -> None:
    for axis in AXES:
        assert FORMULAS[2][axis].terms == FORMULAS[1][axis].terms, axis
    assert FORMULAS[2]["prompt_adherence"].fallback and not FORMULAS[1]["prompt_adherence"].fallback
    assert "local" in FORMULAS[2]["speed"].text


def test_evidence_wins_over_a_prior() -> None:
    model = toy([ev("geneval", 0.65)],
                priors={"prompt_adherence": {"value": 9.9, "reason": "hope"}})
    score = compute_scores(model, 1)["prompt_adherence"]
    assert (score.value, score.estimated) == (5.0, False)


# --- formula v1 on synthetic evidence --------------------------------------------------------------

@pytest.mark.parametrize(("latency", "expected"), [(0.5, 10.0), (60, 0.0), (0.1, 10.0), (600, 0.0),
                                                   (6.5, 4.6), (1.2, 8.2)])
def test_speed_is_log_scaled_between_half_a_second_and_a_minute(latency: float,
                                                                 expected: float) -> None:
    assert compute_scores(toy([ev("latency_s", latency)]), 1)["speed"].value == expected


@pytest.mark.parametrize(("mp", "expected"), [(0.25, 0.0), (1.0, 3.3), (4.0, 6.7), (16.0, 10.0),
                                              (64.0, 10.0), (0.1, 0.0)])
def test_resolution_anchors(mp: float, expected: float) -> None:
    assert compute_scores(toy([ev("max_megapixels", mp)]), 1)["resolution"].value == expected


def test_resolution_falls_back_to_geometry() -> None:
    score = compute_scores(toy(geometry={"sizes": ["2048x2048"]}), 1)["resolution"]
    assert score.value == 6.8
    assert [e.source for e in score.evidence] == ["geometry"]


def test_prompt_adherence_is_the_mean_of_available_terms() -> None:
    assert compute_scores(toy([ev("geneval", 0.90)]), 1)["prompt_adherence"].value == 10.0
    assert compute_scores(toy([ev("dpg", 75)]), 1)["prompt_adherence"].value == 5.0
    both = compute_scores(toy([ev("geneval", 0.90), ev("dpg", 75)]), 1)["prompt_adherence"]
    assert both.value == 7.5
    assert len(both.evidence) == 2


def test_composition_needs_both_geneval_subscores() -> None:
    assert compute_scores(toy([ev("geneval_position", 0.5)]), 1)["composition"].value is None
    both = toy([ev("geneval_position", 0.60), ev("geneval_color_attr", 0.72)])
    assert compute_scores(both, 1)["composition"].value == 7.8


def test_repeated_metric_uses_the_median() -> None:
    model = toy([ev("dpg", 60), ev("dpg", 75), ev("dpg", 90)])
    assert compute_scores(model, 1)["prompt_adherence"].value == 5.0


def test_rounding_is_half_up_after_clipping() -> None:
    # hps_photo 29.45 → 3.45 exactly; Python's round() would give 3.4.
    assert compute_scores(toy([ev("hps_photo", 29.45)]), 1)["photorealism"].value == 3.5
    assert compute_scores(toy([ev("hps_photo", 40)]), 1)["photorealism"].value == 10.0
    assert compute_scores(toy([ev("hps_photo", 20)]), 1)["photorealism"].value == 0.0


def test_prior_is_used_when_there_is_no_evidence() -> None:
    model = toy(priors={"text_rendering": {"value": 8.25, "reason": "arena says so"}})
    score = compute_scores(model, 1)["text_rendering"]
    assert (score.value, score.estimated) == (8.3, True)
    assert score.reason == "estimated: arena says so"
    assert str(score) == "8.3*"


def test_every_axis_has_a_score_and_a_formula_text() -> None:
    scores = compute_scores(toy(), 1)
    assert list(scores) == list(AXES)
    assert all(s.value is None and s.formula and s.formula_version == 1 for s in scores.values())


def test_unknown_formula_version_raises_catalog_error() -> None:
    with pytest.raises(CatalogError, match="unknown formula_version 4; known: 1, 2, 3"):
        compute_scores(toy(), 4)


def test_formula_table_is_versioned_data_covering_every_axis() -> None:
    assert set(FORMULAS[1]) == set(AXES) == set(FORMULAS[2])
    assert "arena_elo_vs_anchor" in KNOWN_METRICS and "latency_local_a100_s" in KNOWN_METRICS
    assert {"geneval", "dpg", "cvtg2k", "longtext_en", "hps_photo", "hps_min_style",
            "geneval_position", "geneval_color_attr", "latency_s", "max_megapixels"} <= KNOWN_METRICS
