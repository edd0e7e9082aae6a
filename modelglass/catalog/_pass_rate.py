"""Pass rates: a model's declared score as a prior probability of passing an outcome check, the
Beta posterior once checks are observed, and whether what was observed contradicts the score.

Routing that learns (:mod:`modelglass.routing._learning`) ranks on :class:`PassRate`;
``catalog verify`` flags offers whose observed pass rate contradicts their declared score
(:func:`contradictions`). Both read the observed store's
:meth:`~modelglass.catalog._observed.ObservedStore.check_rate`.

The mapping from a 0–10 score to a prior pass probability is deliberately simple:
``p0 = score / 10``, clipped to [0.02, 0.98] (a ``text_rendering`` of 6.2 is a 62 % prior that
the image spells the quoted text right); an unknown score gives 0.5, an even prior.

>>> rate = PassRate(check="text", prompt_class="latin", prior=0.8, prior_strength=10,
...                 passed=8, total=30)
>>> round(rate.mean, 3), rate.describe()
(0.4, 'text pass rate 0.40, 30 observed + prior')
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._observed import PROMPT_CLASSES

if TYPE_CHECKING:
    from . import Catalog, OfferView

__all__ = ["CHECK_AXIS", "UNKNOWN_PRIOR", "PassRate", "contradictions", "declared_prior",
           "observed_rate", "prior_pass_probability", "wilson_interval"]

log = logging.getLogger("modelglass")

Finding = tuple[str, Literal["ok", "drift", "info"], Any, Any, str]

#: Prior pass probability of a model whose score for the check's axis is unknown.
UNKNOWN_PRIOR = 0.5
#: The capability axis whose score is the prior of each check.
CHECK_AXIS = {"text": "text_rendering"}


def prior_pass_probability(score: float | None) -> float:
    """The prior pass probability of a model whose score (0–10) on the check's axis is
    ``score``: ``score / 10`` clipped to [0.02, 0.98]; :data:`UNKNOWN_PRIOR` when unknown.

    >>> prior_pass_probability(6.2), prior_pass_probability(10), prior_pass_probability(None)
    (0.62, 0.98, 0.5)
    """
    if score is None:
        return UNKNOWN_PRIOR
    return min(0.98, max(0.02, round(score / 10.0, 6)))


def declared_prior(catalog: Catalog, model_id: str, check: str) -> tuple[float, float | None]:
    """The prior pass probability of ``check`` for ``model_id``, and the score behind it."""
    score = catalog.scores(model_id).get(CHECK_AXIS[check])
    value = score.value if score is not None else None
    return prior_pass_probability(value), value


@dataclass(frozen=True)
class PassRate:
    """One offer's Beta posterior for one check and prompt class: ``Beta(p0·k + passed,
    (1 − p0)·k + failed)``, with ``k`` the prior's strength in pseudo-observations."""

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


def observed_rate(source: Any, offer_key: str, check: str, cls: str) -> tuple[int, int]:
    """``(passed, total)`` from ``source.check_rate``; ``(0, 0)`` when it cannot say (never
    raises: a broken store must not break routing or verify)."""
    try:
        passed, total = source.check_rate(offer_key, check=check, prompt_class=cls)
    except Exception as exc:  # noqa: BLE001
        log.warning("observed %s pass rate of %s unreadable: %s", check, offer_key, exc)
        return 0, 0
    return int(passed), int(total)


def wilson_interval(passed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a pass rate; (0, 1) with no data."""
    if total <= 0:
        return 0.0, 1.0
    p = passed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def contradictions(view: OfferView, catalog: Catalog, store: Any, *, min_samples: int = 20,
                   margin: float = 0.2) -> list[Finding]:
    """``catalog verify``'s findings on observed pass rates, as ``(check, status, declared,
    observed, detail)``: per check and prompt class with ``min_samples`` observed outcomes, a
    contradiction is a declared prior outside the observed rate's 95 % Wilson interval *and*
    more than ``margin`` away from the observed rate. Latin text is judged (``drift``); other
    scripts are reported as ``info`` (published text scores are measured mostly on Latin text).
    """
    out: list[Finding] = []
    for check, axis in CHECK_AXIS.items():
        prior, score = declared_prior(catalog, view.model_id, check)
        shown = f"{axis} {score:.1f}" if score is not None else f"{axis} unknown"
        for cls in PROMPT_CLASSES[:2]:
            passed, total = observed_rate(store, view.key, check, cls)
            if total < min_samples:
                continue
            rate = passed / total
            lo, hi = wilson_interval(passed, total)
            off = not lo <= prior <= hi and abs(rate - prior) > margin
            status: Literal["ok", "drift", "info"] = \
                "ok" if not off else "drift" if cls == "latin" else "info"
            verb = "contradicts" if off else "agrees with"
            out.append((f"{check} pass rate ({cls})", status, round(prior, 3), round(rate, 3),
                        f"{passed} of {total} {cls} {check} checks passed ({rate:.2f}, 95 % "
                        f"{lo:.2f}–{hi:.2f}): {verb} {shown} (a {prior:.2f} prior)"))
    return out
