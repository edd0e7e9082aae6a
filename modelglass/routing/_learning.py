"""Routing that learns: what each offer really delivers, from the outcome checks of its images.

For a request an outcome check applies to (quoted text in the prompt, or ``expect_text=``: the
``text`` check), routing estimates each offer's probability of passing that check and ranks by
**expected cost per accepted image**::

    cost per accepted image = price per image ÷ pass probability

within the axis's hard minimums (only offers that passed every hard constraint are ranked).

The pass probability is the mean of a Beta posterior per offer, check and prompt class (Latin
text, other scripts; see :mod:`modelglass.catalog._pass_rate`):

- **prior**: the model's calibrated ``text_rendering`` score mapped to a probability, simply
  ``p0 = score / 10`` clipped to [0.02, 0.98] (a 6.2 is a 62 % prior); an unknown score gives
  ``p0 = 0.5``. The prior counts as ``prior_strength`` pseudo-observations (the policy's
  ``learning:`` section; 10 by default): ``Beta(p0·k, (1 − p0)·k)``;
- **an uncertain score is a weaker prior**: the score's standard error (formula v3, 0–10) adds
  to the prior's variance, so its pseudo-count shrinks to what a Beta of that total variance
  carries: ``k_eff = k / (1 + k·(SE/10)² / (p0·(1 − p0)))`` (:func:`prior_pseudo_count`).
  Qwen-Image's 9.1 ± 0.3 keeps 9 of 10; FLUX.2 [max]'s 9.4 ± 1.1 is worth 3; an unknown score
  (prior 5.0 ± 3.0) is worth 2.2. A score with no standard error keeps ``k``;
- **evidence**: ``(passed, total)`` of the request's prompt class from the observed store
  (:meth:`~modelglass.catalog._observed.ObservedStore.check_rate`); ``unknown`` verdicts are not
  counted, a low-confidence OCR says nothing about the model;
- **posterior mean**: ``(p0·k_eff + passed) / (k_eff + total)``.

The learned ranking moves routing only past a minimum sample: it engages once some candidate
offer has at least ``min_samples`` checked images of the request's class (20 by default); before
that the static ranking (quality/cost trade) stands unchanged. ``explain()`` states the rate each
offer was ranked on: ``text pass rate 0.62, 41 observed + prior``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..catalog._pass_rate import (
    CHECK_AXIS,
    PassRate,
    declared_prior,
    observed_rate,
    prior_pass_probability,
)
from ..checks import prompt_class

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..request import ImageRequest
    from ._decision import Row
    from ._policy import LearningRules

__all__ = ["PassRate", "learned_ranking", "prior_pass_probability", "prior_pseudo_count",
           "request_check"]


def request_check(request: ImageRequest) -> tuple[str, str] | None:
    """The check a request is ranked for, and its prompt class (as the observed store keeps
    them: :func:`modelglass.checks.prompt_class`); None when no check applies. The text check
    applies when the prompt quotes text, or the request names it (``expect_text``)."""
    cls = prompt_class(request)
    return ("text", cls) if cls != "none" else None


def prior_pseudo_count(strength: float, prior: float, stderr: float | None) -> float:
    """The pseudo-observations a prior pass probability ``prior`` is worth when the score behind
    it has standard error ``stderr`` (0–10 scale) and the policy's ``prior_strength`` is
    ``strength``: the Beta prior's variance ``p0·(1 − p0)/k`` plus the score's ``(SE/10)²``,
    turned back into a pseudo-count, ``k / (1 + k·(SE/10)² / (p0·(1 − p0)))``. No standard
    error (or zero) leaves ``strength`` as it is.

    >>> prior_pseudo_count(10, 0.91, None), round(prior_pseudo_count(10, 0.5, 3.0), 2)
    (10, 2.17)
    """
    if not stderr:
        return strength
    spread = prior * (1.0 - prior)
    return strength / (1.0 + strength * (stderr / 10.0) ** 2 / spread)


def _score_stderr(catalog: Catalog, model_id: str, check: str) -> float | None:
    score = catalog.scores(model_id).get(CHECK_AXIS[check])
    return score.stderr if score is not None else None


def _pass_rate(row: Row, rules: LearningRules, observed: Any, catalog: Catalog, check: str,
               cls: str) -> tuple[PassRate, str]:
    """One row's posterior, and what its prior was worth when the score's uncertainty shrank it
    (``"; prior worth 3.0 of 10 checks (score ± 1.1)"``; empty when it kept the policy's
    strength)."""
    passed, total = observed_rate(observed, row.offer.key, check, cls)
    prior, _ = declared_prior(catalog, row.offer.model_id, check)
    stderr = _score_stderr(catalog, row.offer.model_id, check)
    strength = prior_pseudo_count(rules.prior_strength, prior, stderr)
    worth = ""
    if stderr and strength < rules.prior_strength - 0.05:
        worth = (f"; prior worth {strength:.1f} of {rules.prior_strength:g} checks (score ± "
                 f"{stderr:.1f})")
    return PassRate(check, cls, prior, strength, passed, total), worth


def learned_ranking(rows: list[Row], request: ImageRequest, rules: LearningRules, observed: Any,
                    catalog: Catalog) -> tuple[list[Row], str | None]:
    """``rows`` ranked by expected cost per accepted image, and a line saying so, when a check
    applies and the observed store has ``rules.min_samples`` outcomes for some offer; else
    ``rows`` unchanged and None.

    The prior is the model's score in ``catalog`` (see :func:`prior_pass_probability`), worth
    :func:`prior_pseudo_count` observations (fewer when the score is uncertain). Each row gains
    a reason stating the pass rate it was ranked on. The sort is stable: equal costs per accepted
    image keep the static order.
    """
    applies = request_check(request)
    if not rows or applies is None or not rules.enabled or observed is None \
            or not hasattr(observed, "check_rate"):
        return rows, None
    check, cls = applies
    rates = [_pass_rate(row, rules, observed, catalog, check, cls) for row in rows]
    most = max(rate.total for rate, _ in rates)
    if most < rules.min_samples:
        return rows, None  # not enough evidence yet: the static ranking stands
    ranked = []
    for row, (rate, worth) in zip(rows, rates, strict=True):
        per = row.cost_per_image_usd
        if per is None:
            cost, shown = float("inf"), "price unknown → cost per accepted image unknown"
        else:
            cost = per / rate.mean
            shown = f"${cost:.4f} per accepted image (${per:.4f} ÷ {rate.mean:.2f})"
        why = f"{rate.describe()}{worth} ({cls} text) → {shown}"
        ranked.append((cost, dataclasses.replace(row, reasons=(*row.reasons, why), learned=why)))
    ranked.sort(key=lambda pair: pair[0])
    note = (f"ranked by expected cost per accepted image (price ÷ {check} pass rate, {cls} "
            f"text): {most} checks observed on an offer ≥ min_samples {rules.min_samples}; "
            f"prior strength {rules.prior_strength:g}, less where the score is uncertain")
    return [row for _, row in ranked], note
