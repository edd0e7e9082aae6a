"""Scoring: how prompt signals shift the axis weights, and the small bonuses and penalties on top
of the quality/cost trade. All numbers live in :class:`Scoring` (the ``scoring:`` section of a
policy file) so they can be read, tested and tuned in one place.

The total score of a passing offer is::

    total = (1 − cost_weight) · quality / 10 + cost_weight · cost_score + adjustments
    cost_score = cost_reference_usd / (cost_reference_usd + cost per image)

with ``cost_weight`` and ``cost_reference_usd`` from the quality axis. An unknown price scores
``unknown_cost_score`` (0 by default: unknown is never free).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._signals import Signals

if TYPE_CHECKING:
    from ..catalog import QualityAxis, Score

__all__ = ["ModelQuality", "Scoring", "cost_score", "model_quality", "signal_weights"]


@dataclass(frozen=True)
class Scoring:
    """The tunable numbers of scoring (a policy's ``scoring:`` section). The defaults are those of
    the shipped default policy (``catalog/policies/default.yaml``)."""

    #: Quoted text adds this share of the axis's total weight to ``text_rendering``.
    text_weight_share: float = 0.5
    #: Counts/spatial words add this share of the axis's total weight to ``composition``.
    composition_weight_share: float = 0.35
    #: With quoted text, a ``text_rendering`` score at or above this earns the bonus, below (or
    #: unknown) the penalty. Soft: it moves the ranking, it does not reject.
    text_soft_minimum: float = 6.0
    text_bonus: float = 0.03
    text_penalty: float = 0.06
    #: With a negative prompt: bonus when the plan honours or maps it, penalty when it drops it.
    negative_bonus: float = 0.03
    negative_penalty: float = 0.03
    #: Per requested control the plan approximates / drops (other than the negative prompt).
    approximated_penalty: float = 0.01
    dropped_penalty: float = 0.03
    #: A deprecated (not yet shut down) model: still eligible, slightly less preferred.
    deprecated_penalty: float = 0.02
    #: Cost score of an offer whose price is unknown.
    unknown_cost_score: float = 0.0
    #: Calibrated scores (formula v3) count as ``mean − uncertainty_penalty × stderr`` in the
    #: weighted quality; an unknown one as its prior's mean minus the same multiple of the prior's
    #: spread. 0 ranks on the posterior mean alone. Hard minimums judge the score itself.
    uncertainty_penalty: float = 1.0
    #: A score whose standard error is at least this is called uncertain in the explanation.
    uncertain_stderr: float = 1.0


def signal_weights(axis: QualityAxis, signals: Signals, policy: Scoring) -> dict[str, float]:
    """The axis weights adjusted by the prompt's signals (not normalised)."""
    weights: dict[str, float] = {str(k): v for k, v in axis.weights.items()}
    total = sum(weights.values())
    if signals.text_matters:
        weights["text_rendering"] = weights.get("text_rendering", 0.0) \
            + policy.text_weight_share * total
    if signals.composition_matters:
        weights["composition"] = weights.get("composition", 0.0) \
            + policy.composition_weight_share * total
    return weights


@dataclass(frozen=True)
class ModelQuality:
    """One model's standing on one quality axis (with signals): computed once, reused per offer.

    ``failed_minimums`` is empty when every hard minimum passes; otherwise it is the reason text.
    ``adjustment`` is the soft bonus/penalty from signals, with its reason in ``notes``.
    """

    quality: float
    failed_minimums: str
    unknown_axes: tuple[str, ...]
    estimated_axes: tuple[str, ...]
    adjustment: float
    notes: tuple[str, ...]
    #: Unknown axes with no prior either, counted as the quality axis's flat ``unknown_score``.
    flat_unknown_axes: tuple[str, ...] = ()
    #: Known axes whose standard error is at least the policy's ``uncertain_stderr``.
    uncertain_axes: tuple[str, ...] = ()


def model_quality(scores: Mapping[str, Score], axis: QualityAxis, weights: Mapping[str, float],
                  signals: Signals, policy: Scoring) -> ModelQuality:
    """Weighted quality (0–10), hard-minimum check and signal adjustments for one model."""
    num = 0.0
    den = 0.0
    unknown: list[str] = []
    estimated: list[str] = []
    parts: list[str] = []
    flat_unknown: list[str] = []
    for ax, w in weights.items():
        if w <= 0:
            continue
        sc = scores.get(ax)
        counted = _counted(sc, policy)
        if sc is None or sc.value is None:
            unknown.append(ax)
            if counted is None:
                flat_unknown.append(ax)
        elif sc.estimated:
            estimated.append(ax)
        value = axis.unknown_score if counted is None else counted
        num += w * value
        den += w
    quality = num / den if den else 0.0
    parts.extend(_uncertainty_notes(scores, weights, unknown, flat_unknown, axis, policy))

    failures: list[str] = []
    for ax, minimum in axis.minimums.items():
        sc = scores.get(ax)
        if sc is None or sc.value is None:
            failures.append(f"{ax} score unknown (no evidence), needs ≥ {minimum:g}")
        elif sc.value < minimum:
            failures.append(f"{ax} {sc.value:.1f} < minimum {minimum:g}")
        elif sc.estimated:
            estimated.append(ax)
            parts.append(f"{ax} {sc.value:.1f} passes minimum {minimum:g} on an estimated prior")

    adjustment = 0.0
    if signals.text_matters:
        sc = scores.get("text_rendering")
        tv = sc.value if sc is not None else None
        if tv is not None and tv >= policy.text_soft_minimum:
            adjustment += policy.text_bonus
            parts.append(f"text_rendering {tv:.1f} ≥ {policy.text_soft_minimum:g} for the quoted "
                         f"text (+{policy.text_bonus:g})")
        else:
            adjustment -= policy.text_penalty
            shown = "unknown" if tv is None else f"{tv:.1f}"
            parts.append(f"text_rendering {shown} below {policy.text_soft_minimum:g} for the quoted "
                         f"text (−{policy.text_penalty:g})")
    return ModelQuality(quality=quality, failed_minimums="; ".join(failures),
                        unknown_axes=tuple(unknown), estimated_axes=tuple(dict.fromkeys(estimated)),
                        adjustment=adjustment, notes=tuple(parts),
                        flat_unknown_axes=tuple(flat_unknown),
                        uncertain_axes=_uncertain(scores, weights, policy))


def _counted(sc: Score | None, policy: Scoring) -> float | None:
    """What a score counts as in the weighted quality: ``mean − k·stderr`` when it has a standard
    error (formula v3, known or prior), the value otherwise; None for unknown without a prior."""
    if sc is None:
        return None
    return sc.lower(policy.uncertainty_penalty)


def _uncertain(scores: Mapping[str, Score], weights: Mapping[str, float],
               policy: Scoring) -> tuple[str, ...]:
    """Weighted axes with a known score whose standard error reaches ``uncertain_stderr``."""
    out = []
    for ax, w in weights.items():
        sc = scores.get(ax)
        if w > 0 and sc is not None and sc.value is not None and sc.stderr is not None \
                and sc.stderr >= policy.uncertain_stderr:
            out.append(ax)
    return tuple(out)


def _uncertainty_notes(scores: Mapping[str, Score], weights: Mapping[str, float],
                       unknown: list[str], flat_unknown: list[str], axis: QualityAxis,
                       policy: Scoring) -> list[str]:
    """The explanation lines: unknown scores and what they counted as; uncertain known ones."""
    parts: list[str] = []
    if flat_unknown:
        parts.append(f"unknown score{'s' if len(flat_unknown) > 1 else ''} counted as "
                     f"{axis.unknown_score:g}: {', '.join(flat_unknown)}")
    k = policy.uncertainty_penalty
    priors = [ax for ax in unknown if ax not in flat_unknown]
    if priors:
        shown = ", ".join(f"{ax} (prior {scores[ax].mean:.1f} ± {scores[ax].stderr:.1f}) → "
                          f"{scores[ax].lower(k):.1f}" for ax in priors)
        parts.append(f"unknown, no evidence; counted as prior mean − {k:g}×SE: {shown}")
    uncertain = _uncertain(scores, weights, policy)
    if uncertain:
        shown = ", ".join(f"{ax} {scores[ax].with_uncertainty()} → {scores[ax].lower(k):.1f}"
                          for ax in uncertain)
        parts.append(f"uncertain (SE ≥ {policy.uncertain_stderr:g}), counted as mean − "
                     f"{k:g}×SE: {shown}")
    return parts


def cost_score(per_image_usd: float | None, reference_usd: float, policy: Scoring) -> float:
    """``ref / (ref + cost)``: 1 when free, 0.5 at the reference price; unknown → policy value."""
    if per_image_usd is None:
        return policy.unknown_cost_score
    return reference_usd / (reference_usd + per_image_usd)
