"""Formula v3: one calibrated score per model and axis, with a standard error.

Formula v2 mapped every benchmark onto 0–10 with fixed anchors and averaged the results, so two
benchmarks with different difficulty disagreed silently and a model with no row on an axis counted
as a flat guess. v3 keeps v2's anchors as the starting point and *learns* how each benchmark reads
against the others, from the models they share:

- Each benchmark ``b`` on an axis first maps its raw value onto 0–10 with its v2 anchors: ``y``.
- A model has one latent score ``θ`` per axis. A benchmark reads it as ``y = a_b + s_b·θ + ε``,
  ``ε ~ N(0, σ_b²)``: its own offset ``a_b``, scale ``s_b`` and noise ``σ_b``.
- The axis's *reference* benchmark (GenEval for prompt adherence, LongText-Bench EN for text) is
  fixed at ``a = 0, s = 1``: the latent scale is its anchor scale, so a score still means what
  v2 said. Every other benchmark's ``a_b, s_b`` are fitted by least squares on the models it shares
  with the axis's other benchmarks (each such model's latent as the *other* benchmarks read it),
  shrunk towards ``a = 0, s = 1`` (a ridge prior worth a few models). With fewer than three
  shared models only the offset is fitted: one or two models cannot tell a shift from a stretch.
  ``σ_b`` is the residual spread, shrunk towards the benchmark's stated noise.
- Each model's ``θ`` is the precision-weighted mean of what its benchmarks imply,
  ``(y − a_b)/s_b`` with variance ``(σ_b/s_b)²``, combined with a wide prior ``N(5, 3²)``. The
  posterior mean is the score, ``1/√(precision)`` its standard error.
- Fitting alternates the two steps a fixed number of times (deterministic, in model-id order).

A model with no row on an axis keeps ``value=None`` (unknown, never a silent guess), but its
score carries the prior (``mean`` 5.0, ``stderr`` 3.0) so routing can count it as "mean minus a
policy-set multiple of the uncertainty" instead of a flat number. Several rows of one metric for
one model are combined by their median first (repeated measurements of one protocol are one
observation, not several). The standard error ignores the uncertainty of the fitted ``a_b, s_b``.

Pure Python: the fit is a handful of 2×2 solves per axis, so the catalog needs no numpy and
``import modelglass`` stays fast.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._schema import Evidence, Model

if TYPE_CHECKING:
    from ._scores import Scale

__all__ = ["AxisCalibration", "Benchmark", "BenchmarkFit", "Contribution", "Posterior",
           "calibrate_axis"]

#: Alternations of the fit: on the shipped catalog the means move < 1e-6 after 20.
ITERATIONS = 20
#: Ridge prior on a benchmark's offset (0–10 units) and scale: its standard deviations.
OFFSET_PRIOR_SD = 1.0
SCALE_PRIOR_SD = 0.5
#: Pseudo-observations behind a benchmark's stated noise when its spread is estimated.
NOISE_PRIOR_WEIGHT = 4.0
#: A fitted scale never drops below this (a benchmark that stops reading the latent is noise).
MIN_SCALE = 0.2
#: Fewer shared models than this fit the offset only (scale stays 1): one or two models cannot
#: tell a shift from a stretch.
MIN_SHARED_FOR_SCALE = 3


@dataclass(frozen=True)
class Benchmark:
    """One benchmark on an axis: ``metrics`` (their mean) through ``anchor`` onto 0–10.

    ``anchor`` is any callable raw → 0–10 (formula v2's scales). ``noise`` is the stated spread on
    0–10 before any fit; ``reference`` fixes the latent scale (one per axis).
    """

    label: str
    metrics: tuple[str, ...]
    anchor: Scale
    noise: float
    reference: bool = False

    def read(self, by_metric: Mapping[str, list[Evidence]]) -> tuple[float, float] | None:
        """(raw, anchored 0–10) for a model's rows, or None when a metric is missing."""
        if not all(m in by_metric for m in self.metrics):
            return None
        raw = statistics.fmean(statistics.median(e.value for e in by_metric[m])
                               for m in self.metrics)
        return raw, self.anchor(raw)


@dataclass(frozen=True)
class AxisCalibration:
    """An axis under formula v3: its benchmarks and the prior of a model with no rows."""

    benchmarks: tuple[Benchmark, ...]
    text: str
    prior_mean: float = 5.0
    prior_sd: float = 3.0


@dataclass(frozen=True)
class BenchmarkFit:
    """What the fit learned about one benchmark: ``y = offset + scale·θ``, spread ``noise``."""

    offset: float
    scale: float
    noise: float
    shared: int  # models that informed it (they have another benchmark on the axis)


@dataclass(frozen=True)
class Contribution:
    """One benchmark's reading of one model: raw, anchored 0–10, the latent it implies ± SE."""

    benchmark: str
    raw: float
    anchored: float
    implied: float
    stderr: float
    rows: tuple[Evidence, ...]


@dataclass(frozen=True)
class Posterior:
    """One model's calibrated score on an axis (``mean`` is the prior's when nothing is known)."""

    mean: float
    stderr: float
    contributions: tuple[Contribution, ...]

    @property
    def known(self) -> bool:
        return bool(self.contributions)


def _observations(models: Mapping[str, Model], cal: AxisCalibration,
                  extra: Mapping[str, Mapping[str, list[Evidence]]]
                  ) -> dict[str, list[tuple[int, float, float, tuple[Evidence, ...]]]]:
    """model id → [(benchmark index, raw, anchored, rows)] for every benchmark it has."""
    obs: dict[str, list[tuple[int, float, float, tuple[Evidence, ...]]]] = {}
    for mid in sorted(models):
        by_metric = extra[mid]
        for i, bench in enumerate(cal.benchmarks):
            read = bench.read(by_metric)
            if read is not None:
                rows = tuple(e for m in bench.metrics for e in by_metric[m])
                obs.setdefault(mid, []).append((i, read[0], read[1], rows))
    return obs


def _fit_benchmark(pairs: list[tuple[float, float]], prior: BenchmarkFit) -> BenchmarkFit:
    """Ridge least squares of ``y = a + s·θ`` on (θ, y) pairs, shrunk to a = 0, s = 1; the pairs
    weigh by the benchmark's current noise estimate."""
    w = 1.0 / prior.noise ** 2
    la, ls = 1.0 / OFFSET_PRIOR_SD ** 2, 1.0 / SCALE_PRIOR_SD ** 2
    s00 = w * len(pairs) + la
    s01 = w * sum(t for t, _ in pairs)
    s11 = w * sum(t * t for t, _ in pairs) + ls
    r0 = w * sum(y for _, y in pairs)
    r1 = w * sum(t * y for t, y in pairs) + ls * 1.0
    if len(pairs) < MIN_SHARED_FOR_SCALE:
        a = (r0 - w * sum(t for t, _ in pairs)) / s00  # y − θ, shrunk towards 0
        return BenchmarkFit(a, 1.0, prior.noise, len(pairs))
    det = s00 * s11 - s01 * s01
    a = (r0 * s11 - r1 * s01) / det
    s = max(MIN_SCALE, (s00 * r1 - s01 * r0) / det)
    return BenchmarkFit(a, s, prior.noise, len(pairs))


def _noise(pairs: list[tuple[float, float]], fit: BenchmarkFit, stated: float) -> float:
    """Residual spread, shrunk towards the stated noise with NOISE_PRIOR_WEIGHT pseudo-rows."""
    ss = sum((y - fit.offset - fit.scale * t) ** 2 for t, y in pairs)
    return math.sqrt((NOISE_PRIOR_WEIGHT * stated ** 2 + ss) / (NOISE_PRIOR_WEIGHT + len(pairs)))


def _posterior(rows: list[tuple[int, float, float, tuple[Evidence, ...]]],
               fits: list[BenchmarkFit], cal: AxisCalibration,
               labels: tuple[str, ...], *, prior: bool = True) -> Posterior:
    """Precision-weighted latent from ``rows``; ``prior=False`` leaves out the axis prior (used
    when fitting a benchmark, so the prior's pull towards 5 does not bend its scale)."""
    precision = 1.0 / cal.prior_sd ** 2 if prior else 0.0
    total = cal.prior_mean * precision
    parts: list[Contribution] = []
    for i, raw, y, evidence in rows:
        f = fits[i]
        implied = (y - f.offset) / f.scale
        se = f.noise / f.scale
        precision += 1.0 / se ** 2
        total += implied / se ** 2
        parts.append(Contribution(labels[i], raw, y, implied, se, evidence))
    return Posterior(total / precision, 1.0 / math.sqrt(precision), tuple(parts))


def calibrate_axis(models: Mapping[str, Model], cal: AxisCalibration,
                   by_metric: Mapping[str, Mapping[str, list[Evidence]]]
                   ) -> tuple[dict[str, Posterior], list[BenchmarkFit]]:
    """Fit one axis over every model of a catalog: each model's posterior, each benchmark's fit.

    ``by_metric`` is model id → metric → evidence rows (the caller adds derived rows such as the
    geometry's largest size).
    """
    labels = tuple(b.label for b in cal.benchmarks)
    obs = _observations(models, cal, by_metric)
    fits = [BenchmarkFit(0.0, 1.0, b.noise, 0) for b in cal.benchmarks]
    post: dict[str, Posterior] = {}
    for _ in range(ITERATIONS):
        post = {mid: _posterior(rows, fits, cal, labels) for mid, rows in obs.items()}
        for i, bench in enumerate(cal.benchmarks):
            # Only models with another benchmark on this axis say anything about a_b and s_b:
            # their latent as the *other* benchmarks read it, against this benchmark's reading.
            pairs = [(_posterior([r for r in rows if r[0] != i], fits, cal, labels,
                                 prior=False).mean, y)
                     for rows in obs.values() if len(rows) > 1
                     for j, _, y, _ in rows if j == i]
            current = BenchmarkFit(0.0, 1.0, fits[i].noise, len(pairs))
            fit = current if bench.reference or not pairs else _fit_benchmark(pairs, current)
            fits[i] = BenchmarkFit(fit.offset, fit.scale,
                                   _noise(pairs, fit, bench.noise) if pairs else bench.noise,
                                   len(pairs))
    empty = Posterior(cal.prior_mean, cal.prior_sd, ())
    return {mid: post.get(mid, empty) for mid in models}, fits
