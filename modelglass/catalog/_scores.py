"""Capability scores 0–10 from raw evidence, by a versioned formula with fixed anchors.

Anchors are fixed (not the catalog's min and max) so a score does not move when a model is added.
Each formula version is data: per axis, a list of *terms*; a term reads one or more metrics (their
mean), maps it onto 0–10 with a scale anchored at two values, and the axis is the mean of the terms
that have evidence. Scores are clipped to [0, 10] and rounded to 0.1.

An axis may also have *fallback terms*: read only when none of its primary terms has evidence.
Formula v2 uses one for prompt adherence: a model with no GenEval / DPG but an arena rating gets
its win probability against the snapshot's anchor model, ×10 (see ``FORMULAS[2]``).

With no evidence, a model's stated ``priors[axis]`` is used and marked ``estimated``; with neither,
the score is unknown (``value=None``): never guessed silently. The shipped catalog states no
priors (formula v2): every shipped score comes from evidence through a formula, or is unknown.

Versions are data: ``FORMULAS[n]``; catalogs choose with ``formula_version`` in settings.yaml.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import CatalogError
from ._schema import AXES, Evidence, Model

if TYPE_CHECKING:
    from . import Score

__all__ = ["FORMULAS", "KNOWN_METRICS", "compute_scores"]


@dataclass(frozen=True)
class Scale:
    """Maps a raw value onto 0–10 between two anchors.

    - ``linear``: ``lo`` → 0, ``hi`` → 10.
    - ``log``: ``lo`` → 0, ``hi`` → 10 on a log scale (more is better).
    - ``log_inverse``: ``lo`` → 10, ``hi`` → 0 on a log scale (less is better, e.g. latency).
    - ``elo``: an Elo difference ``x`` to an anchor model → ``10 / (1 + 10^(−x/lo))`` (``lo`` is
      the Elo scale, 400): the win probability against the anchor, ×10; the anchor scores 5.0.
    """

    kind: Literal["linear", "log", "log_inverse", "elo"]
    lo: float
    hi: float

    def __call__(self, x: float) -> float:
        if self.kind == "linear":
            return 10 * (x - self.lo) / (self.hi - self.lo)
        if self.kind == "elo":
            return 10 / (1 + 10 ** (-x / self.lo))
        if x <= 0:
            return 10.0 if self.kind == "log_inverse" else 0.0
        if self.kind == "log":
            return 10 * math.log(x / self.lo) / math.log(self.hi / self.lo)
        return 10 * math.log(self.hi / x) / math.log(self.hi / self.lo)


@dataclass(frozen=True)
class Term:
    """One input to an axis: the mean of ``metrics`` (all required), through ``scale``."""

    metrics: tuple[str, ...]
    scale: Scale


@dataclass(frozen=True)
class AxisFormula:
    """An axis: the mean of its ``terms`` with evidence; ``fallback`` terms only when none has."""

    terms: tuple[Term, ...]
    text: str
    fallback: tuple[Term, ...] = ()


def _t(*metrics: str, kind: Literal["linear", "log", "log_inverse", "elo"] = "linear",
       lo: float, hi: float) -> Term:
    return Term(metrics, Scale(kind, lo, hi))


# Formula v1: catalog-data.md §3.1. "composition" is the research's compositional_accuracy,
# "speed" its inference_speed, "resolution" its resolution_ceiling.
FORMULAS: dict[int, dict[str, AxisFormula]] = {
    1: {
        "prompt_adherence": AxisFormula(
            (_t("geneval", lo=0.40, hi=0.90), _t("dpg", lo=60, hi=90)),
            "mean of available: G = 10·(geneval−0.40)/0.50, D = 10·(dpg−60)/30"),
        "photorealism": AxisFormula(
            (_t("hps_photo", lo=26, hi=36),),
            "10·(hps_photo−26)/10 (HPSv2.1 photo subscore)"),
        "text_rendering": AxisFormula(
            (_t("cvtg2k", lo=0, hi=1), _t("longtext_en", lo=0, hi=1)),
            "10·mean(cvtg2k, longtext_en) over those available"),
        "style_range": AxisFormula(
            (_t("hps_min_style", lo=26, hi=36),),
            "10·(hps_min_style−26)/10 (worst HPSv2.1 style: animation, concept-art, painting)"),
        "composition": AxisFormula(
            (_t("geneval_position", "geneval_color_attr", lo=0, hi=0.85),),
            "10·((geneval_position + geneval_color_attr)/2)/0.85"),
        "speed": AxisFormula(
            (_t("latency_s", kind="log_inverse", lo=0.5, hi=60),),
            "10·ln(60/latency_s)/ln(120): 0.5 s → 10, 60 s → 0 (s per 1024² image)"),
        "resolution": AxisFormula(
            (_t("max_megapixels", kind="log", lo=0.25, hi=16),),
            "10·log2(max_megapixels/0.25)/6: 0.25 MP → 0, 1 MP → 3.3, 4 MP → 6.7, 16 MP → 10"),
    },
}

# Formula v2 (2026-11-29, issue 7): v1 unchanged on every axis, plus one fallback term.
#
# - prompt_adherence: when a model has neither GenEval nor DPG, its arena rating is used:
#   ``arena_elo_vs_anchor`` = the model's Elo minus the anchor model's Elo *in the same snapshot*
#   (never across snapshots), mapped to 10 / (1 + 10^(−Δ/400)), i.e. 10 × the probability that
#   people prefer it to the anchor. The anchor scores 5.0; +200 Elo ≈ 7.6; +400 ≈ 9.1. Several
#   snapshots are combined by the median Δ. The shipped catalog anchors every snapshot on
#   FLUX.2 [max], the one model present in both 2026 snapshots (catalog-data §2.1, §3.1). This is
#   overall preference standing in for adherence, so it is a fallback only: any GenEval/DPG wins.
# - speed: unchanged formula, one definition: hosted latency per 1024² image at the cheapest
#   provider (``latency_s``). Local GPU times are recorded as ``latency_local_a100_s`` and never
#   feed the hosted speed score.
_V1 = FORMULAS[1]
FORMULAS[2] = {
    **_V1,
    "prompt_adherence": AxisFormula(
        _V1["prompt_adherence"].terms,
        _V1["prompt_adherence"].text + "; with neither, arena: 10/(1+10^(−Δ/400)), Δ = Elo − "
        "anchor Elo in one snapshot (anchor → 5.0)",
        fallback=(_t("arena_elo_vs_anchor", kind="elo", lo=400, hi=400),)),
    "speed": AxisFormula(
        _V1["speed"].terms,
        "10·ln(60/latency_s)/ln(120): 0.5 s → 10, 60 s → 0 (hosted s per 1024² image at the "
        "cheapest provider; local GPU time is not used)"),
}

# Metrics the catalog may record without any formula reading them yet (kept as evidence).
INFORMATIONAL_METRICS = frozenset({
    "longtext_zh", "tiif_short", "tiif_long", "hps_avg", "elo", "latency_p95_s",
    "latency_local_a100_s",
})

KNOWN_METRICS = frozenset(
    {m for version in FORMULAS.values() for f in version.values()
     for t in (*f.terms, *f.fallback) for m in t.metrics} | INFORMATIONAL_METRICS
)


def _round(x: float) -> float:
    """Clip to [0, 10] and round half up to 0.1 (``round`` would round 3.45 to even)."""
    x = min(10.0, max(0.0, x))
    return math.floor(x * 10 + 0.5 + 1e-9) / 10


def compute_scores(model: Model, formula_version: int) -> dict[str, Score]:
    """The seven capability scores of ``model`` under formula ``formula_version``.

    Several evidence rows for the same metric are combined by their median. Resolution falls back
    to the model's geometry (evidence source ``geometry``) when no ``max_megapixels`` is recorded.
    """
    from . import Score

    try:
        formulas = FORMULAS[formula_version]
    except KeyError:
        raise CatalogError(f"unknown formula_version {formula_version}; known: "
                           f"{', '.join(map(str, FORMULAS))} (settings.yaml)") from None

    by_metric: dict[str, list[Evidence]] = {}
    for ev in model.evidence:
        by_metric.setdefault(ev.metric, []).append(ev)
    if "max_megapixels" not in by_metric:
        mp = model.geometry.max_mp()
        if mp is not None:
            by_metric["max_megapixels"] = [Evidence(
                metric="max_megapixels", value=round(mp, 6), source="geometry", confidence="E",
                note="largest output size in the model's catalog geometry")]

    scores: dict[str, Score] = {}
    for axis in AXES:
        formula = formulas[axis]
        values: list[float] = []
        used: list[Evidence] = []
        for terms in (formula.terms, formula.fallback):
            for term in terms:
                if not all(m in by_metric for m in term.metrics):
                    continue
                raw = statistics.fmean(statistics.median(e.value for e in by_metric[m])
                                       for m in term.metrics)
                values.append(term.scale(raw))
                for m in term.metrics:
                    used.extend(by_metric[m])
            if values:
                break
        if values:
            scores[axis] = Score(axis, _round(statistics.fmean(values)), False, tuple(used),
                                 formula.text, formula_version,
                                 f"from {len(used)} evidence row{'s' if len(used) != 1 else ''}")
        elif axis in model.priors:
            prior = model.priors[axis]  # type: ignore[index]
            scores[axis] = Score(axis, _round(prior.value), True, (), formula.text,
                                 formula_version, f"estimated: {prior.reason}")
        else:
            scores[axis] = Score(axis, None, False, (), formula.text, formula_version,
                                 "no evidence and no stated prior")
    return scores
