"""``mg.evaluate`` / ``modelglass eval``: measure what each model delivers before you trust it.

A *suite* is a shipped list of prompts with the outcome check that judges them (``text``: 60
short quoted texts, 1–8 words, English plus Chinese and Japanese; see ``modelglass/_suites/``).
``evaluate`` runs the first ``n`` prompts on each model as one batch of the job engine
(:mod:`modelglass.jobs`): one budget (a job that could pass it is not sent), one journal (a rerun
with the same journal skips what is done and pays nothing twice), images saved beside the
journal. Every job runs the suite's check (``generate(check=[...])``), and the client records
each verdict in the observed store, where routing that learns and ``catalog verify`` read it.

>>> import modelglass as mg
>>> report = mg.evaluate(["flux-schnell", "gpt-image-2"], n=20, budget=5,
...                      journal="eval-text.db")                     # doctest: +SKIP
>>> report.to_dict()["offers"][0]                                    # doctest: +SKIP
{'offer': 'flux-schnell@fal', 'check': 'text', 'n': 20, 'passed': 9, 'pass_rate': 0.45,
 'cost_usd': 0.06, 'cost_per_accepted_usd': 0.00667, ...}

Per offer: ``n`` images with a verdict (``pass`` or ``fail``; ``unknown`` ones are counted
apart, a low-confidence reading says nothing), ``passed``, ``pass_rate = passed / n``,
``cost_usd`` (everything the offer's jobs cost, ``unknown`` verdicts included) and
``cost_per_accepted_usd = cost_usd / passed``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest

if TYPE_CHECKING:
    from .budget import Budget
    from .client import Client
    from .jobs._batch import BatchReport, JobOutcome

__all__ = ["EvalReport", "OfferScore", "Suite", "evaluate", "load_suite", "suite_names"]

#: Seeds are fixed per prompt position, so a rerun asks for exactly the same images.
SEED_BASE = 1000


@dataclass(frozen=True)
class SuitePrompt:
    """One prompt of a suite: its id, language, the text it expects and the prompt itself."""

    id: str
    lang: str
    text: str
    prompt: str


@dataclass(frozen=True)
class Suite:
    """A shipped prompt suite and the check that judges its images."""

    name: str
    check: str
    description: str
    prompts: tuple[SuitePrompt, ...]


def suite_names() -> list[str]:
    """The suites shipped with modelglass."""
    root = resources.files("modelglass") / "_suites"
    return sorted(p.name.removesuffix(".json") for p in root.iterdir()
                  if p.name.endswith(".json"))


def load_suite(name: str) -> Suite:
    """A shipped suite by name (``"text"``); :class:`InvalidRequest` names the others."""
    if name not in suite_names():
        raise InvalidRequest(f"no suite {name!r}; shipped suites: {', '.join(suite_names())}",
                             field="suite")
    data = json.loads((resources.files("modelglass") / "_suites" / f"{name}.json")
                      .read_text(encoding="utf-8"))
    prompts = tuple(SuitePrompt(p["id"], p["lang"], p["text"], p["prompt"])
                    for p in data["prompts"])
    return Suite(data["name"], data["check"], data["description"], prompts)


@dataclass
class OfferScore:
    """What one offer delivered on a suite's check."""

    offer: str
    model: str
    check: str
    n: int = 0
    passed: int = 0
    unknown: int = 0
    jobs: int = 0
    cost_usd: float = 0.0
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.n if self.n else None

    @property
    def cost_per_accepted_usd(self) -> float | None:
        return self.cost_usd / self.passed if self.passed else None

    @property
    def cost_per_image_usd(self) -> float | None:
        images = self.n + self.unknown
        return self.cost_usd / images if images else None

    def to_dict(self) -> dict[str, Any]:
        rate, per = self.pass_rate, self.cost_per_accepted_usd
        per_image = self.cost_per_image_usd
        return {"offer": self.offer, "check": self.check, "n": self.n, "passed": self.passed,
                "pass_rate": None if rate is None else round(rate, 4),
                "cost_usd": round(self.cost_usd, 6),
                "cost_per_accepted_usd": None if per is None else round(per, 6),
                "model": self.model, "unknown": self.unknown, "jobs": self.jobs,
                "cost_per_image_usd": None if per_image is None else round(per_image, 6),
                "by_class": self.by_class}


@dataclass
class EvalReport:
    """The result of :func:`evaluate`: one :class:`OfferScore` per offer that served the suite,
    and the batch behind it (``batch``: statuses, spend, undone jobs)."""

    suite: Suite
    models: list[str]
    n: int
    quality: str
    offers: list[OfferScore]
    batch: BatchReport
    journal: str | None = None
    simulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON view: ``{"offers": [{"offer", "check", "n", "passed", "pass_rate",
        "cost_usd", "cost_per_accepted_usd", ...}], ...}`` (what ``eval --json`` prints)."""
        summary = self.batch.summary()
        return {"suite": self.suite.name, "check": self.suite.check, "models": self.models,
                "n": self.n, "quality": self.quality,
                "offers": [o.to_dict() for o in self.offers],
                "jobs": summary["jobs"], "counts": summary["counts"],
                "spent_usd": summary["spent_usd"], "budget_usd": summary["budget_usd"],
                "undone": summary["undone"], "failed": summary["failed"],
                "journal": self.journal, "simulated": self.simulated}

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Pass rate against cost per image, one point per offer, with the Pareto front
        (needs matplotlib: ``pip install 'modelglass[plot]'``); returns the PNG's path."""
        from ._eval_plot import plot_eval

        return plot_eval(self, Path(path))


def _requests(suite: Suite, models: Sequence[tuple[str, str | None]], n: int,
              quality: str) -> list[dict[str, Any]]:
    """``n`` jobs per model: the suite's prompts in order (cycled past its end), a fixed seed
    per position, an id that names suite, model and prompt (stable across runs)."""
    out = []
    for model, provider in models:
        who = f"{model}@{provider}" if provider else model
        for j in range(n):
            p = suite.prompts[j % len(suite.prompts)]
            out.append({"id": f"{suite.name}/{who}/{j:03d}-{p.id}", "prompt": p.prompt,
                        "expect_text": p.text, "model": model, "provider": provider,
                        "quality": quality, "seed": SEED_BASE + j})
    return out


def _verdicts(outcome: JobOutcome, check: str) -> list[dict[str, Any]]:
    """The suite check's verdicts of one job: from its result when it ran now, from the
    journal's entry when an earlier run did it."""
    if outcome.result is not None and outcome.status in ("done", "cached"):
        return [c.to_dict() for c in outcome.result.checks if c.name == check]
    entry = outcome.entry or {}
    return [c for c in entry.get("checks", []) if c.get("name") == check]


def _offer_of(outcome: JobOutcome) -> str | None:
    r = outcome.result
    if r is not None and r.plan is not None:
        return str(r.plan.offer.key)
    if r is not None and (r.extra or {}).get("offer"):  # a spilled result keeps only the key
        return str(r.extra["offer"])
    entry = outcome.entry or {}
    return entry.get("offer")


def score_outcomes(suite: Suite, outcomes: Iterable[JobOutcome]) -> list[OfferScore]:
    """Tally each offer's verdicts and cost from a batch's outcomes."""
    from .checks import prompt_class

    rows: dict[str, OfferScore] = {}
    for o in outcomes:
        offer = _offer_of(o)
        if offer is None:
            continue  # never reached an offer (undone, refused before sending)
        row = rows.setdefault(offer, OfferScore(offer, offer.rsplit("@", 1)[0], suite.check))
        row.jobs += 1
        row.cost_usd += o.cost_usd or 0.0
        cls = prompt_class(o.request)
        tally = row.by_class.setdefault(cls, {"n": 0, "passed": 0, "unknown": 0})
        for v in _verdicts(o, suite.check):
            if v["verdict"] == "unknown":
                row.unknown += 1
                tally["unknown"] += 1
                continue
            row.n += 1
            tally["n"] += 1
            if v["verdict"] == "pass":
                row.passed += 1
                tally["passed"] += 1
    return sorted(rows.values(), key=lambda r: r.offer)


def evaluate(models: str | Sequence[str], *, suite: str = "text", n: int = 20,
             budget: Budget | float | None = None, client: Client | None = None,
             journal: str | os.PathLike[str] | None = None,
             out: str | os.PathLike[str] | None = None, quality: str = "hero",
             concurrency: int = 8,
             on_outcome: Callable[[JobOutcome], None] | None = None) -> EvalReport:
    """Run ``suite`` on each of ``models`` (``"flux-schnell,gpt-image-2"`` or a list; pin a
    provider with ``model@provider``), ``n`` prompts each, and score the suite's check per offer.

    ``budget`` (dollars or a :class:`~modelglass.Budget`) bounds the whole run, earlier runs of
    ``journal`` included; jobs that no longer fit are left ``undone``. ``journal`` (a SQLite
    file) makes the run resumable: rerun with the same one and only what is missing is sent.
    Images go to ``out`` (default: beside the journal). ``client`` defaults to ``mg.Client()``;
    its observed store receives every verdict.
    """
    from ._compare import parse_models

    pairs = parse_models(models)
    if not pairs:
        raise InvalidRequest("give at least one model (e.g. flux-schnell,gpt-image-2)",
                             field="models")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
        raise InvalidRequest(f"n must be a whole number from 1 to 10000, got {n!r}", field="n")
    spec = load_suite(suite)
    own = client is None
    if client is None:
        from .client import Client

        client = Client()
    try:
        for model, _ in pairs:
            client.catalog.model(model)  # an unknown id fails here, with suggestions
        report = client.generate_many(
            _requests(spec, pairs, n, quality), concurrency=concurrency, budget=budget,
            journal=journal, out=out, on_outcome=on_outcome, check=[spec.check])
    finally:
        if own:
            client.close()
    simulated = any(r is not None and r.simulated for r in report.results)
    return EvalReport(spec, [f"{m}@{p}" if p else m for m, p in pairs], n, quality,
                      score_outcomes(spec, report), report,
                      journal=str(journal) if journal is not None else None, simulated=simulated)
