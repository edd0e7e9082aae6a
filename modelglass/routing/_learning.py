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
- **evidence**: ``(passed, total)`` of the request's prompt class from the observed store
  (:meth:`~modelglass.catalog._observed.ObservedStore.check_rate`); ``unknown`` verdicts are not
  counted, a low-confidence OCR says nothing about the model;
- **posterior mean**: ``(p0·k + passed) / (k + total)``.

The learned ranking moves routing only past a minimum sample: it engages once some candidate
offer has at least ``min_samples`` checked images of the request's class (20 by default); before
that the static ranking (quality/cost trade) stands unchanged. ``explain()`` states the rate each
offer was ranked on: ``text pass rate 0.62, 41 observed + prior``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..catalog._pass_rate import PassRate, declared_prior, observed_rate, prior_pass_probability
from ..checks import prompt_class

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..request import ImageRequest
    from ._decision import Row
    from ._policy import LearningRules

__all__ = ["PassRate", "learned_ranking", "prior_pass_probability", "request_check"]


def request_check(request: ImageRequest) -> tuple[str, str] | None:
    """The check a request is ranked for, and its prompt class (as the observed store keeps
    them: :func:`modelglass.checks.prompt_class`); None when no check applies. The text check
    applies when the prompt quotes text, or the request names it (``expect_text``)."""
    cls = prompt_class(request)
    return ("text", cls) if cls != "none" else None


def learned_ranking(rows: list[Row], request: ImageRequest, rules: LearningRules, observed: Any,
                    catalog: Catalog) -> tuple[list[Row], str | None]:
    """``rows`` ranked by expected cost per accepted image, and a line saying so, when a check
    applies and the observed store has ``rules.min_samples`` outcomes for some offer; else
    ``rows`` unchanged and None.

    The prior is the model's score in ``catalog`` (see :func:`prior_pass_probability`). Each row
    gains a reason stating the pass rate it was ranked on. The sort is stable: equal costs per
    accepted image keep the static order.
    """
    applies = request_check(request)
    if not rows or applies is None or not rules.enabled or observed is None \
            or not hasattr(observed, "check_rate"):
        return rows, None
    check, cls = applies
    rates: list[PassRate] = []
    for row in rows:
        passed, total = observed_rate(observed, row.offer.key, check, cls)
        prior, _ = declared_prior(catalog, row.offer.model_id, check)
        rates.append(PassRate(check, cls, prior, rules.prior_strength, passed, total))
    most = max(r.total for r in rates)
    if most < rules.min_samples:
        return rows, None  # not enough evidence yet: the static ranking stands
    ranked = []
    for row, rate in zip(rows, rates, strict=True):
        per = row.cost_per_image_usd
        if per is None:
            cost, shown = float("inf"), "price unknown → cost per accepted image unknown"
        else:
            cost = per / rate.mean
            shown = f"${cost:.4f} per accepted image (${per:.4f} ÷ {rate.mean:.2f})"
        why = f"{rate.describe()} ({cls} text) → {shown}"
        ranked.append((cost, dataclasses.replace(row, reasons=(*row.reasons, why), learned=why)))
    ranked.sort(key=lambda pair: pair[0])
    note = (f"ranked by expected cost per accepted image (price ÷ {check} pass rate, {cls} "
            f"text): {most} checks observed on an offer ≥ min_samples {rules.min_samples}; "
            f"prior strength {rules.prior_strength:g}")
    return [row for _, row in ranked], note
