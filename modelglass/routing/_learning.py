"""Routing that learns: what each offer really delivers, from the outcome checks of its images.

For a request an outcome check applies to (quoted text in the prompt, or ``expect_text=``: the
``text`` check), routing estimates each offer's probability of passing that check and ranks by
**expected cost per accepted image**::

    cost per accepted image = price per image ÷ pass probability

within the axis's hard minimums (only offers that passed every hard constraint are ranked).

The pass probability is the mean of a Beta posterior per offer, check and prompt class (Latin
text, other scripts; see :func:`prompt_class`):

- **prior**: the model's calibrated ``text_rendering`` score mapped to a probability, simply
  ``p0 = score / 10`` clipped to [0.02, 0.98] (a 6.2 is a 62 % prior); an unknown score gives
  ``p0 = 0.5``. The prior counts as ``prior_strength`` pseudo-observations (the policy's
  ``learning:`` section; 10 by default): ``Beta(p0·k, (1 − p0)·k)``;
- **evidence**: ``(passed, total)`` from the observed store
  (:meth:`~modelglass.catalog._observed.ObservedStore.check_rate`); ``unknown`` verdicts are not
  counted, a low-confidence OCR says nothing about the model;
- **posterior mean**: ``(p0·k + passed) / (k + total)``.

The learned ranking moves routing only past a minimum sample: it engages once some candidate
offer has at least ``min_samples`` checked images of the request's class (20 by default); before
that the static ranking (quality/cost trade) stands unchanged. ``explain()`` states the rate each
offer was ranked on: ``text pass rate 0.62, 41 observed + prior``.

>>> rate = PassRate(check="text", prompt_class="latin", prior=0.8, prior_strength=10,
...                 passed=8, total=30)
>>> round(rate.mean, 3), rate.describe()
(0.4, 'text pass rate 0.40, 30 observed + prior')
"""

from __future__ import annotations

import dataclasses
import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..request import ImageRequest
    from ._decision import Row
    from ._policy import LearningRules
    from ._signals import Signals

__all__ = ["CheckRateSource", "PassRate", "learned_ranking", "prior_pass_probability",
           "prompt_class", "request_check"]

log = logging.getLogger("modelglass")

#: Prior pass probability of a model whose score for the check's axis is unknown.
UNKNOWN_PRIOR = 0.5
#: The capability axis whose score is the prior of each check.
CHECK_AXIS = {"text": "text_rendering"}


class CheckRateSource(Protocol):
    """Observed check outcomes by offer key: ``(passed, total)``, ``unknown`` verdicts left out."""

    def check_rate(self, offer_key: str, check: str = "text",
                   prompt_class: str | None = None) -> tuple[int, int]: ...


def prompt_class(text: str | Sequence[str] | None) -> str:
    """``"latin"`` when every letter of the expected text is Latin script, ``"other"`` when any
    letter is of another script (CJK, Cyrillic, Arabic…), ``"none"`` when there is no text.

    >>> prompt_class("OPEN"), prompt_class(["Café", "東京"]), prompt_class("")
    ('latin', 'other', 'none')
    """
    texts = [text] if isinstance(text, str) else list(text or ())
    letters = [ch for t in texts for ch in t if ch.isalpha()]
    if not letters:
        return "none"
    for ch in letters:
        if not unicodedata.name(ch, "").startswith("LATIN"):
            return "other"
    return "latin"


def prior_pass_probability(score: float | None) -> float:
    """The prior pass probability of a model whose score (0–10) on the check's axis is
    ``score``: ``score / 10`` clipped to [0.02, 0.98]; :data:`UNKNOWN_PRIOR` when unknown.

    >>> prior_pass_probability(6.2), prior_pass_probability(10), prior_pass_probability(None)
    (0.62, 0.98, 0.5)
    """
    if score is None:
        return UNKNOWN_PRIOR
    return min(0.98, max(0.02, round(score / 10.0, 6)))


@dataclass(frozen=True)
class PassRate:
    """One offer's Beta posterior for one check and prompt class."""

    check: str
    prompt_class: str
    prior: float
    prior_strength: float
    passed: int
    total: int

    @property
    def mean(self) -> float:
        """Posterior mean pass probability: ``(p0·k + passed) / (k + total)``."""
        k = self.prior_strength
        return (self.prior * k + self.passed) / (k + self.total)

    def describe(self) -> str:
        """``text pass rate 0.62, 41 observed + prior`` (or ``prior only``)."""
        basis = f"{self.total} observed + prior" if self.total else "prior only, none observed"
        return f"{self.check} pass rate {self.mean:.2f}, {basis}"


def request_check(request: ImageRequest, signals: Signals) -> tuple[str, str] | None:
    """The check a request is ranked for, and its prompt class; None when no check applies.

    The text check applies when the prompt quotes text, or the request names it
    (``expect_text``)."""
    expected = getattr(request, "expect_text", None)
    texts: Sequence[str] = (expected,) if expected else signals.quoted_text
    cls = prompt_class(texts)
    return ("text", cls) if cls != "none" else None


def _observed(source: Any, key: str, check: str, cls: str) -> tuple[int, int]:
    try:
        passed, total = source.check_rate(key, check=check, prompt_class=cls)
    except Exception as exc:  # noqa: BLE001 - a broken store must not break routing
        log.warning("observed %s pass rate of %s unreadable: %s", check, key, exc)
        return 0, 0
    return int(passed), int(total)


def learned_ranking(rows: list[Row], request: ImageRequest, signals: Signals,
                    rules: LearningRules, observed: Any,
                    catalog: Catalog) -> tuple[list[Row], str | None]:
    """``rows`` ranked by expected cost per accepted image, and a line saying so, when a check
    applies and the observed store has ``rules.min_samples`` outcomes for some offer; else
    ``rows`` unchanged and None.

    The prior is the model's score in ``catalog`` (see :func:`prior_pass_probability`). Each row
    gains a reason stating the pass rate it was ranked on. The sort is stable: equal costs per
    accepted image keep the static order.
    """
    applies = request_check(request, signals)
    if not rows or applies is None or not rules.enabled or observed is None \
            or not hasattr(observed, "check_rate"):
        return rows, None
    check, cls = applies
    rates: list[PassRate] = []
    for row in rows:
        passed, total = _observed(observed, row.offer.key, check, cls)
        score = catalog.scores(row.offer.model_id).get(CHECK_AXIS[check])
        prior = prior_pass_probability(score.value if score is not None else None)
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
        ranked.append((cost, dataclasses.replace(row, reasons=(*row.reasons, why))))
    ranked.sort(key=lambda pair: pair[0])
    note = (f"ranked by expected cost per accepted image (price ÷ {check} pass rate, {cls} "
            f"text): {most} checks observed on an offer ≥ min_samples {rules.min_samples}; "
            f"prior strength {rules.prior_strength:g}")
    return [row for _, row in ranked], note
