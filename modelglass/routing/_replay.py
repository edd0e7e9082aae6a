"""Policy replay: route a workload under two (or more) policies without calling any provider,
and compare what each would have spent and chosen.

A workload is JSONL: one :class:`~modelglass.request.ImageRequest` per line (its fields), with an
optional ``id``; blank lines and lines starting with ``#`` are skipped. Every job is routed by
:func:`~._route.route` under each policy with the same catalog, the same assumed availability and
the same date, so the only difference is the policy.

Per policy the replay reports: estimated spend (the chosen offer's plan estimate, summed; jobs
whose chosen offer has no price are counted, never priced at $0), mean quality, jobs per model and
per provider, jobs with no eligible offer (with the constraint that rejected most offers), and
the jobs where the policies choose differently.

Quality is measured on one yardstick for every policy, so the means compare: the chosen model's
weighted score (0–10) on the job's axis as the **baseline** policy (the first one, ``--vs``)
defines it, with the prompt's signals; for an axis only the other policy defines, that policy's
definition. A policy that lowers its own minimums cannot look better by redefining quality.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _clock
from ..errors import CatalogError, InvalidRequest, ModelglassError
from ..request import ImageRequest
from ._latency import LatencySource
from ._policy import Policy
from ._route import route
from ._scoring import model_quality, signal_weights
from ._signals import prompt_signals

if TYPE_CHECKING:
    from ..catalog import Catalog

__all__ = ["Job", "JobOutcome", "PolicyReplay", "Replay", "hosted_providers", "read_workload",
           "replay"]


@dataclass(frozen=True)
class Job:
    """One line of a workload: its id (given, or ``line-N``), the request, and where it was."""

    id: str
    request: ImageRequest
    line: int


@dataclass(frozen=True)
class JobOutcome:
    """What one policy chose for one job (``offer`` None: no eligible offer, ``why`` says)."""

    job_id: str
    axis: str
    offer: str | None
    model: str | None
    provider: str | None
    cost_usd: float | None
    quality: float | None
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.job_id, "axis": self.axis, "offer": self.offer, "model": self.model,
                "provider": self.provider, "cost_usd": self.cost_usd,
                "quality": None if self.quality is None else round(self.quality, 4),
                "why": self.why or None}


@dataclass
class PolicyReplay:
    """One policy's outcomes over the workload, and the figures that sum them up."""

    name: str
    outcomes: list[JobOutcome] = field(default_factory=list)

    @property
    def routed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.offer is not None]

    @property
    def spend_usd(self) -> float:
        """Estimated spend over the jobs whose chosen offer has a known price."""
        return sum(o.cost_usd for o in self.routed if o.cost_usd is not None)

    @property
    def unpriced(self) -> int:
        """Routed jobs whose chosen offer has no known price (not counted in the spend)."""
        return sum(1 for o in self.routed if o.cost_usd is None)

    @property
    def mean_quality(self) -> float | None:
        values = [o.quality for o in self.routed if o.quality is not None]
        return sum(values) / len(values) if values else None

    @property
    def no_offer(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.offer is None]

    def by(self, what: str) -> Counter[str]:
        """Jobs per ``model`` or per ``provider``."""
        return Counter(getattr(o, what) for o in self.routed)

    def mean_quality_by_axis(self) -> dict[str, float]:
        sums: dict[str, list[float]] = {}
        for o in self.routed:
            if o.quality is not None:
                sums.setdefault(o.axis, []).append(o.quality)
        return {a: sum(v) / len(v) for a, v in sorted(sums.items())}

    def summary(self) -> dict[str, Any]:
        mq = self.mean_quality
        return {"policy": self.name, "jobs": len(self.outcomes), "routed": len(self.routed),
                "no_eligible_offer": len(self.no_offer), "spend_usd": round(self.spend_usd, 6),
                "unpriced_jobs": self.unpriced,
                "mean_quality": None if mq is None else round(mq, 4),
                "mean_quality_by_axis": {a: round(v, 4)
                                         for a, v in self.mean_quality_by_axis().items()},
                "by_model": dict(self.by("model").most_common()),
                "by_provider": dict(self.by("provider").most_common())}


@dataclass
class Replay:
    """Every policy's replay of one workload, in the order given (the first is the baseline)."""

    jobs: list[Job]
    policies: list[PolicyReplay]

    def differences(self) -> list[tuple[Job, list[JobOutcome]]]:
        """The jobs where the policies do not all choose the same offer."""
        out = []
        for i, job in enumerate(self.jobs):
            row = [p.outcomes[i] for p in self.policies]
            if len({o.offer for o in row}) > 1:
                out.append((job, row))
        return out

    def to_dict(self) -> dict[str, Any]:
        diffs = self.differences()
        return {"jobs": len(self.jobs),
                "policies": [p.summary() for p in self.policies],
                "differences": len(diffs),
                "differing_jobs": [{"id": job.id, "line": job.line, "axis": row[0].axis,
                                    "prompt": job.request.prompt[:120],
                                    "choices": {p.name: o.to_dict()
                                                for p, o in zip(self.policies, row, strict=True)}}
                                   for job, row in diffs]}

    def table(self) -> list[tuple[str, ...]]:
        """The side-by-side figures as rows of text: (figure, policy 1, policy 2, …)."""
        rows: list[tuple[str, ...]] = []

        def add(label: str, values: Iterable[str]) -> None:
            rows.append((label, *values))

        ps = self.policies
        add("jobs", (str(len(p.outcomes)) for p in ps))
        add("estimated spend", (f"${p.spend_usd:.4f}" for p in ps))
        add("jobs with unknown price", (str(p.unpriced) for p in ps))
        add("mean quality (0–10)", ("—" if p.mean_quality is None else f"{p.mean_quality:.2f}"
                                    for p in ps))
        axes = sorted({a for p in ps for a in p.mean_quality_by_axis()})
        for a in axes:
            add(f"  on {a}", (f"{p.mean_quality_by_axis()[a]:.2f}" if a in
                              p.mean_quality_by_axis() else "—" for p in ps))
        add("no eligible offer", (str(len(p.no_offer)) for p in ps))
        for what in ("provider", "model"):
            names = sorted({n for p in ps for n in p.by(what)},
                           key=lambda n: (-sum(p.by(what)[n] for p in ps), n))
            for n in names:
                add(f"{what} {n}", (str(p.by(what)[n]) for p in ps))
        add("jobs routed differently", (str(len(self.differences())) for _ in ps))
        return rows


# --------------------------------------------------------------------------------------------
def read_workload(path: str | Path) -> list[Job]:
    """Read a JSONL workload; every bad line is reported as ``file:line: message`` at once."""
    from .._paths import read_text

    p = Path(path)
    text = read_text(p, field="workload", what="workload")
    jobs: list[Job] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            data = json.loads(s)
        except json.JSONDecodeError as exc:
            problems.append(f"{p}:{n}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{p}:{n}: a job is a JSON object of ImageRequest fields")
            continue
        job_id = str(data.pop("id", f"line-{n}"))
        if job_id in seen:
            problems.append(f"{p}:{n}: id {job_id!r} repeats line {seen[job_id]}")
            continue
        seen[job_id] = n
        try:
            jobs.append(Job(job_id, ImageRequest(**data), n))
        except InvalidRequest as exc:
            problems.append(f"{p}:{n}: {exc}")
    if problems:
        raise InvalidRequest(f"the workload has {len(problems)} bad line(s):\n"
                             + "\n".join(problems[:50])
                             + (f"\n… and {len(problems) - 50} more" if len(problems) > 50 else ""))
    return jobs


def hosted_providers(catalog: Catalog) -> list[str]:
    """The catalog's providers that are called over the network (they take an API key)."""
    from ..providers import provider_class

    out = []
    for name in catalog.providers:
        try:
            if provider_class(name).env_keys:
                out.append(name)
        except (ImportError, KeyError, ModelglassError):
            continue
    return out


def replay(jobs: Sequence[Job], policies: Sequence[tuple[str, Policy]], catalog: Catalog, *,
           available: Iterable[str] | None = None, today: dt.date | None = None,
           observed: LatencySource | None = None) -> Replay:
    """Route every job under every policy (no provider is called) and collect the outcomes.

    ``available``: the providers assumed usable (default: every hosted provider of the catalog).
    ``observed``: measured latencies that latency limits judge by (None: the catalog's figures).
    """
    names = list(available) if available is not None else hosted_providers(catalog)
    today = _clock.today(today)
    baseline = policies[0][1]
    result = Replay(list(jobs), [PolicyReplay(name) for name, _ in policies])
    for (_, policy), pr in zip(policies, result.policies, strict=True):
        for job in jobs:
            pr.outcomes.append(_outcome(job, policy, baseline, catalog, names, today, observed))
    return result


def _outcome(job: Job, policy: Policy, baseline: Policy, catalog: Catalog,
             available: list[str], today: dt.date, observed: LatencySource | None) -> JobOutcome:
    axis_name = str(job.request.quality)
    try:
        decision = route(job.request, catalog, available=available, today=today, policy=policy,
                         observed=observed)
    except (CatalogError, InvalidRequest) as exc:  # an axis this policy does not define
        return JobOutcome(job.id, axis_name, None, None, None, None, None, str(exc))
    axis_name = decision.quality  # the policy's default_quality when the job names none
    choice = decision.choice
    if choice is None:
        counts = Counter(r.constraint for r in decision.rejected
                         if r.constraint not in ("pin", "lifecycle", "availability"))
        top = ", ".join(f"{n} {c}" for c, n in counts.most_common(3))
        return JobOutcome(job.id, axis_name, None, None, None, None, None,
                          f"no eligible offer ({top or 'every offer unavailable'})")
    cost = choice.cost_usd
    return JobOutcome(job.id, axis_name, choice.key, choice.model, choice.provider, cost,
                      _yardstick(job, choice.model, baseline, policy, catalog))


def _yardstick(job: Job, model: str, baseline: Policy, own: Policy, catalog: Catalog) -> float:
    name = str(job.request.quality)
    judge = baseline if name in baseline.axis_names(catalog) else own
    axis = judge.quality_axis(name, catalog)
    signals = prompt_signals(job.request.prompt, job.request.negative_prompt)
    weights = signal_weights(axis, signals, judge.scoring)
    return model_quality(catalog.scores(model), axis, weights, signals, judge.scoring).quality
