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
from typing import Any, Literal

from ..errors import CatalogError
from ._calibrate import AxisCalibration, Benchmark, Posterior, calibrate_axis
from ._schema import AXES, Evidence, Model


@dataclass(frozen=True)
class Score:
    """One capability score and where it came from.

    ``value`` is None when there is no evidence and no stated prior. ``estimated`` is True when
    the value is a prior (a stated estimate), not computed from evidence.

    Formula v3 (calibrated) adds ``mean`` (the posterior mean, unrounded; for an unknown score the
    axis prior's mean), ``stderr`` (its standard error; for an unknown score the prior's spread)
    and ``contributions`` (each benchmark's reading: raw value, what it implies, its own SE).
    Earlier formulas leave ``stderr`` None.
    """

    axis: str
    value: float | None
    estimated: bool = False
    evidence: tuple[Evidence, ...] = ()
    formula: str = ""
    formula_version: int = 1
    reason: str = ""
    mean: float | None = None
    stderr: float | None = None
    contributions: tuple[Any, ...] = ()

    @property
    def known(self) -> bool:
        return self.value is not None

    def lower(self, k: float) -> float | None:
        """``mean − k·stderr`` clipped to 0–10 (the value itself when there is no stderr);
        None when nothing is known and no prior is stated."""
        if self.stderr is None or self.mean is None:
            return self.value
        return min(10.0, max(0.0, self.mean - k * self.stderr))

    def with_uncertainty(self) -> str:
        """``8.3 ± 0.6``; ``unknown (prior 5.0 ± 3.0)``; plain ``str()`` without a stderr."""
        if self.stderr is None:
            return str(self)
        if self.value is None:
            return f"unknown (prior {self.mean:.1f} ± {self.stderr:.1f})"
        return f"{self.value:.1f} ± {self.stderr:.1f}"

    def __str__(self) -> str:
        if self.value is None:
            return "unknown"
        return f"{self.value:.1f}{'*' if self.estimated else ''}"


__all__ = ["CALIBRATIONS", "FORMULAS", "KNOWN_METRICS", "compute_catalog_scores", "compute_scores"]


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

# Formula v3 (2026-12-06, issue 14): calibrated. Per axis, one latent score per model fitted from
# all its benchmarks, each benchmark with its own offset and scale learned from the models it
# shares with the others (modelglass/catalog/_calibrate.py; docs/scores.md has a worked example).
# The anchors below are the starting point of each benchmark's scale (v2's where v2 had one); the
# reference benchmark of an axis keeps them and so fixes what a score means.
_ELO = Scale("elo", 400, 400)


def _b(label: str, *metrics: str, kind: Literal["linear", "log", "log_inverse", "elo"] = "linear",
       lo: float, hi: float, noise: float = 0.5, reference: bool = False) -> Benchmark:
    return Benchmark(label, metrics, Scale(kind, lo, hi), noise, reference)


CALIBRATIONS: dict[int, dict[str, AxisCalibration]] = {3: {
    "prompt_adherence": AxisCalibration((
        _b("GenEval", "geneval", lo=0.40, hi=0.90, reference=True),
        _b("DPG-Bench", "dpg", lo=60, hi=90),
        # OneIG-Bench EN alignment: anchors set so FLUX.1 [dev] (.786) and Qwen-Image (.882)
        # start where GenEval puts them (5.2, 9.4); the fit refines the scale.
        _b("OneIG-EN alignment", "oneig_alignment", lo=0.67, hi=0.90),
        # PRISM-Bench overall alignment (GPT-4.1 judge): anchors set so FLUX.1 [dev] (72.4) and
        # Qwen-Image (81.1) start near GenEval's 5.2 and 9.4; a VLM judge, so noise 0.7.
        _b("PRISM-Bench alignment", "prism_align", lo=62, hi=82, noise=0.7),
        # TIIF-Bench testmini overall instruction following (GPT-4o judge; mean of the short- and
        # long-prompt scores, 0–100): anchors set so FLUX.1 [dev] (71.4) and Qwen-Image (86.5)
        # start near GenEval's 5.2 and 9.4; a VLM judge, so noise 0.7.
        _b("TIIF-Bench overall", "tiif_short", "tiif_long", lo=53, hi=89, noise=0.7),
        # Overall arena preference standing in for adherence: a weaker reading (noise 1.0).
        Benchmark("arena Elo vs anchor", ("arena_elo_vs_anchor",), _ELO, 1.0),
        # Alibaba AI Arena (another arena, other voters and prompts): its own benchmark, Elo
        # minus Qwen-Image's in the same table, never mixed with the FLUX.2 [max]-anchored one.
        Benchmark("AI Arena Elo vs Qwen-Image", ("aiarena_elo_vs_anchor",), _ELO, 1.0)),
        "calibrated (v3): latent on GenEval's scale 10·(g−0.40)/0.50; DPG 10·(d−60)/30, OneIG-EN "
        "alignment 10·(x−0.67)/0.23, PRISM-Bench alignment 10·(x−62)/20, TIIF-Bench "
        "10·(x−53)/36 and two arenas 10/(1+10^(−Δ/400)) each with a fitted offset and scale"),
    "text_rendering": AxisCalibration((
        _b("LongText-Bench EN", "longtext_en", lo=0, hi=1, reference=True),
        _b("CVTG-2K word accuracy", "cvtg2k", lo=0, hi=1),
        _b("OneIG-EN text", "oneig_text", lo=0, hi=1),
        # PRISM-Bench text-rendering alignment (GPT-4.1 judge, 0–100): a VLM's reading of the
        # text, a weaker protocol than OCR accuracy (noise 1.0); the fit learns its scale.
        _b("PRISM-Bench text", "prism_text", lo=10, hi=70, noise=1.0),
        # TIIF-Bench testmini text dimension (OCR edit-distance based, 0–100; mean of short and
        # long prompts): few prompts per model, so noise 0.7.
        _b("TIIF-Bench text", "tiif_text_short", "tiif_text_long", lo=0, hi=100, noise=0.7),
        # ImageBench V1 text-rendering pass rate: 15 images per model, each judged pass/fail by a
        # VLM (qwen3-vl); the binomial error alone is ~1 point on 0–10, so noise 1.5.
        _b("ImageBench text", "imagebench_text", lo=0, hi=1, noise=1.5)),
        "calibrated (v3): latent on 10·LongText-EN; CVTG-2K word accuracy, OneIG-EN text and "
        "ImageBench text ×10, PRISM-Bench text 10·(x−10)/60, TIIF-Bench text x/10, each with a "
        "fitted offset and scale"),
    "photorealism": AxisCalibration((
        _b("HPSv2.1 photo", "hps_photo", lo=26, hi=36, reference=True),),
        "calibrated (v3): 10·(hps_photo−26)/10"),
    "style_range": AxisCalibration((
        _b("HPSv2.1 worst style", "hps_min_style", lo=26, hi=36, reference=True),),
        "calibrated (v3): 10·(hps_min_style−26)/10"),
    "composition": AxisCalibration((
        _b("GenEval position+attribute", "geneval_position", "geneval_color_attr", lo=0, hi=0.85,
           reference=True),),
        "calibrated (v3): 10·((geneval_position + geneval_color_attr)/2)/0.85"),
    "speed": AxisCalibration((
        _b("hosted latency", "latency_s", kind="log_inverse", lo=0.5, hi=60, reference=True),),
        "calibrated (v3): 10·ln(60/latency_s)/ln(120) (hosted s per 1024² image)"),
    "resolution": AxisCalibration((
        _b("max megapixels", "max_megapixels", kind="log", lo=0.25, hi=16, noise=0.2,
           reference=True),),
        "calibrated (v3): 10·log2(max_megapixels/0.25)/6"),
}}

FORMULAS[3] = {
    axis: AxisFormula(tuple(Term(b.metrics, b.anchor) for b in cal.benchmarks), cal.text)
    for axis, cal in CALIBRATIONS[3].items()
}

# Metrics the catalog may record without any formula reading them yet (kept as evidence).
INFORMATIONAL_METRICS = frozenset({
    "longtext_zh", "hps_avg", "elo", "latency_p95_s",
    "latency_local_a100_s", "oneig_zh_alignment", "oneig_zh_text",
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

    try:
        formulas = FORMULAS[formula_version]
    except KeyError:
        raise CatalogError(f"unknown formula_version {formula_version}; known: "
                           f"{', '.join(map(str, FORMULAS))} (settings.yaml)") from None
    if formula_version in CALIBRATIONS:
        # A calibrated formula fits across models; alone, a model is calibrated against itself.
        return compute_catalog_scores({"_": model}, formula_version)["_"]

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


def _by_metric(model: Model) -> dict[str, list[Evidence]]:
    """A model's evidence by metric, plus the geometry's largest size when none is recorded."""
    by_metric: dict[str, list[Evidence]] = {}
    for ev in model.evidence:
        by_metric.setdefault(ev.metric, []).append(ev)
    if "max_megapixels" not in by_metric:
        mp = model.geometry.max_mp()
        if mp is not None:
            by_metric["max_megapixels"] = [Evidence(
                metric="max_megapixels", value=round(mp, 6), source="geometry", confidence="E",
                note="largest output size in the model's catalog geometry")]
    return by_metric


def compute_catalog_scores(models: dict[str, Model], formula_version: int
                           ) -> dict[str, dict[str, Score]]:
    """Every model's seven scores. v1/v2 score each model alone; v3 fits each axis over all models
    of the catalog (so a benchmark's scale is learned from every model that reports it)."""
    if formula_version not in CALIBRATIONS:
        return {mid: compute_scores(m, formula_version) for mid, m in models.items()}
    cals = CALIBRATIONS[formula_version]
    by_metric = {mid: _by_metric(m) for mid, m in models.items()}
    out: dict[str, dict[str, Score]] = {mid: {} for mid in models}
    for axis in AXES:
        cal = cals[axis]
        posts, _ = calibrate_axis(models, cal, by_metric)
        for mid, post in posts.items():
            out[mid][axis] = _v3_score(models[mid], axis, cal, post, formula_version)
    return out


def calibration_fits(models: dict[str, Model], formula_version: int, axis: str
                     ) -> list[tuple[str, float, float, float, int]]:
    """What v3 learned per benchmark on ``axis``: (label, offset, scale, noise, shared models)."""
    cal = CALIBRATIONS[formula_version][axis]
    by_metric = {mid: _by_metric(m) for mid, m in models.items()}
    _, fits = calibrate_axis(models, cal, by_metric)
    return [(b.label, f.offset, f.scale, f.noise, f.shared) for b, f in zip(cal.benchmarks, fits)]


def _v3_score(model: Model, axis: str, cal: AxisCalibration, post: object,
              version: int) -> Score:
    assert isinstance(post, Posterior)
    if post.known:
        used = tuple(e for c in post.contributions for e in c.rows)
        names = ", ".join(c.benchmark for c in post.contributions)
        return Score(axis, _round(post.mean), False, used, cal.text, version,
                     f"calibrated from {names} ({len(used)} row{'s' if len(used) != 1 else ''})",
                     mean=post.mean, stderr=post.stderr, contributions=post.contributions)
    if axis in model.priors:
        prior = model.priors[axis]  # type: ignore[index]
        return Score(axis, _round(prior.value), True, (), cal.text, version,
                     f"estimated: {prior.reason}", mean=prior.value)
    return Score(axis, None, False, (), cal.text, version,
                 f"no evidence: prior {post.mean:.1f} ± {post.stderr:.1f}",
                 mean=post.mean, stderr=post.stderr)
