"""``modelglass batch jobs.jsonl --out out/ --journal run.db``: many jobs, one budget, resumable.

``jobs.jsonl`` holds one request per line: the fields of :class:`~modelglass.ImageRequest`, plus
an optional ``id``. Every bad line is reported with its line number before anything is sent.
The output folder gets the images (``<id>-<i>.png``, provenance embedded; with ``--check``, the
paid images of tries a check rejected as ``<id>-rejected-<sha>.png``) and ``manifest.jsonl`` (one
line per job, in input order: id, status, model, provider, cost, seed, sha256, files, fates,
error, and the checks and rejected images when checks ran). Run the same command again after a crash: done jobs are skipped, submitted ones resumed
by their provider request id, and nothing is paid for twice (see ``docs/batch.md``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import typer

from ._cli_common import emit_json, err, friendly, out
from ._cli_options import CatalogOpt, JsonOpt, _assume, _assume_opt, policy_opt, run_option
from ._cli_policy import apply_policy
from ._jsonl import json_lines
from .errors import InvalidRequest, StorageError

if TYPE_CHECKING:
    from .jobs._batch import Batch, BatchReport, JobOutcome
    from .jobs._events import JobEvent

__all__ = ["batch", "read_jobs", "register", "stopped_line"]


def register(app: typer.Typer) -> None:
    """Add ``batch`` to the ``modelglass`` app."""
    app.command("batch")(batch)


def read_jobs(path: Path, *, axes: list[str] | None = None) -> list[dict[str, Any]]:
    """The jobs of a JSONL file (UTF-8, a byte-order mark accepted), each checked as an
    :class:`ImageRequest` and, with ``axes``, its quality against those names; every bad line is
    reported (``path:line: what is wrong``) in one :class:`InvalidRequest`."""
    from pydantic import ValidationError

    from .request import ImageRequest
    from .routing._policy import _unknown as unknown_name

    jobs: list[dict[str, Any]] = []
    problems: list[str] = []
    ids: dict[str, int] = {}
    quality_problems = 0
    for number, data in json_lines(path, field="jobs", what="jobs file"):  # a BOM is fine
        if isinstance(data, str):  # not JSON, or not an object
            problems.append(data)
            continue
        fields = {k: v for k, v in data.items() if k != "id"}
        try:
            request = ImageRequest(**fields)
        except ValidationError as exc:
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"]) or "request"
                problems.append(f"{path}:{number}: {where}: {e['msg']}")
            continue
        except (InvalidRequest, TypeError, ValueError) as exc:
            problems.append(f"{path}:{number}: {str(exc).removeprefix('invalid request: ')}")
            continue
        quality = str(getattr(request.quality, "value", request.quality))
        if axes is not None and "quality" in request.model_fields_set and quality not in axes:
            problems.append(f"{path}:{number}: quality: {unknown_name('quality axis', quality, axes)}")
            quality_problems += 1
            continue
        if "id" in data:
            job_id = str(data["id"])
            if job_id in ids:
                problems.append(f"{path}:{number}: id {job_id!r} already used on line "
                                f"{ids[job_id]}")
                continue
            ids[job_id] = number
        jobs.append(data)
    if problems:
        raise InvalidRequest(f"{len(problems)} bad line(s) in {path}; nothing was sent:\n"
                             + "\n".join(problems), path=str(path),
                             field="quality" if quality_problems == len(problems) else "jobs")
    if not jobs:
        raise InvalidRequest(f"{path} holds no jobs (one JSON object per line)", field="jobs")
    return jobs


def _write_manifest(report: BatchReport, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "manifest.jsonl"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for outcome in report:
            fh.write(json.dumps(outcome.manifest(), default=str) + "\n")
    os.replace(tmp, target)
    return target


class _Progress:
    """The rich progress bar: done / failed / cached, spend against the budget, ETA."""

    def __init__(self, total: int, budget: float | None, enabled: bool) -> None:
        self.counts = {"done": 0, "failed": 0, "cached": 0, "skipped": 0, "undone": 0,
                       "possibly_charged": 0}
        self.batch: Batch | None = None
        self.costs = 0.0
        self.budget = budget
        self.progress: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[line]}"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=err, transient=False)
            self.task = self.progress.add_task("batch", total=total, line="")

    def __enter__(self) -> Self:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def outcome(self, o: JobOutcome) -> None:
        self.counts[o.status] = self.counts.get(o.status, 0) + 1
        self.costs += o.cost_usd or 0.0  # a running sum: no pass over every outcome per job
        self._show(advance=1)

    def event(self, e: JobEvent) -> None:
        """Engine and batch events: a job starting to wait for a cooldown updates the line
        (no outcome may come for a while)."""
        if e.state == "waiting" and "cooldown" in (e.message or ""):
            self._show(advance=0)

    def _show(self, advance: int) -> None:
        if self.progress is None:
            return
        c = self.counts
        spent = self.batch.budget.spent if self.batch and self.batch.budget else self.costs
        cooling = len(self.batch.parking) if self.batch is not None else 0
        money = (f"${spent:.2f}/${self.budget:.2f}" if self.budget is not None
                 else f"${spent:.2f}")
        line = (f"[green]{c['done'] + c['skipped']} done[/] [red]{c['failed']} failed[/] "
                f"[cyan]{c['cached']} cached[/]"
                + (f" [yellow]{c['undone']} undone[/]" if c["undone"] else "")
                + (f" [magenta]{c['possibly_charged']} possibly charged[/]"
                   if c["possibly_charged"] else "")
                + (f" [blue]{cooling} waiting for a cooldown[/]" if cooling else "")
                + f"  {money}")
        self.progress.update(self.task, advance=advance, line=line)


_jobs_arg = typer.Argument(..., help="JSONL: one ImageRequest per line (plus an optional id).")


@friendly
def batch(jobs_file: Path = _jobs_arg,
          out_dir: Path = run_option("out", more=" and manifest.jsonl"),
          concurrency: int = run_option("concurrency", default=32),
          budget: float | None = run_option("budget", scope="batch"),
          journal: Path | None = run_option("journal", scope="batch"),
          engine: str = run_option("engine"), address: str | None = run_option("address"),
          cache: Path | None = run_option("cache"), limits: Path | None = run_option("limits"),
          allow_double_payment: bool = run_option("allow_double_payment"),
          retry_failed: bool = run_option("retry_failed"), durable: bool = run_option("durable"),
          simulate: bool = run_option("simulate"), repair: bool = run_option("repair"),
          check: bool = run_option("check", text="the prompt's quoted text or the job's "
                                   "expect_text", more="; the verdicts go to the manifest and "
                                   "the journal"),
          on_fail: str = run_option("on_fail", more="; implies --check"),
          assume_available: str | None = _assume_opt,
          json_out: bool = JsonOpt, catalog: str | None = CatalogOpt,
          policy: str | None = policy_opt) -> None:
    """Run every job of JOBS_FILE with a progress bar; resumable with --journal."""
    from ._cli_generate import _make_client, _maybe_simulate
    from .jobs._batch import Batch, load_limits

    read_jobs(jobs_file)  # every bad line reported before anything else is done
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, got {engine!r}")
    check = check or on_fail != "keep"
    if repair:
        _repair(read_jobs(jobs_file), journal, out_dir, json_out)
        return
    t0 = time.monotonic()
    with _maybe_simulate(simulate):
        client = _make_client(catalog, None, simulate, _assume(assume_available))
        apply_policy(client, policy)  # policy hook
        # quality names checked against this policy's axes, before anything is sent
        requests = read_jobs(jobs_file, axes=client.policy.axis_names(client.catalog))
        if not simulate and assume_available is None:
            check_some_provider(client)
        progress = _Progress(len(requests), budget, enabled=not json_out)
        with client:
            b = Batch(client, requests, concurrency=concurrency, budget=budget,
                      journal=journal, out=out_dir, cache=cache,
                      limits=load_limits(limits) if limits else None,
                      allow_double_payment=allow_double_payment, retry_failed=retry_failed,
                      durable=durable, on_outcome=progress.outcome, simulated=simulate,
                      check=check, on_fail=on_fail,
                      on_event=progress.event if not json_out else None)
            progress.batch = b
            with progress:
                report = _run_on(engine, b, address, out_dir)
    manifest = _write_manifest(report, out_dir)
    data = {**report.summary(), "manifest": str(manifest), "out": str(out_dir),
            "journal": str(journal) if journal else None, "simulated": simulate,
            "wall_s": round(time.monotonic() - t0, 3)}
    _finish(report, data, journal, json_out)


def _run_on(engine: str, b: Batch, address: str | None, out_dir: Path) -> BatchReport:
    """Run batch ``b`` on ``engine``. Ctrl-C still gives the report (the jobs in flight were
    cancelled); a storage error (disk full) still writes the manifest of what finished."""
    from .jobs._sync import run_sync

    try:
        if engine == "ray":
            from .jobs._ray import run_ray

            return run_ray(b, address=address)
        return run_sync(b)
    except KeyboardInterrupt as exc:  # Ctrl-C: the jobs in flight were cancelled
        if getattr(getattr(exc, "report", None), "stopped", None) is None:
            raise
        return exc.report  # type: ignore[attr-defined, no-any-return]
    except StorageError as exc:  # disk full and the like: nothing more was sent
        partial = getattr(exc, "report", None)
        if partial is not None:
            with contextlib.suppress(OSError):
                _write_manifest(partial, out_dir)
        raise


def _finish(report: BatchReport, data: dict[str, Any], journal: Path | None,
            json_out: bool) -> None:
    """Print the summary (or its JSON) and exit as the outcomes say: 130 after Ctrl-C, 1 or 2
    when a job failed."""
    if json_out:
        emit_json(data)
    elif report.stopped is None:
        _print_summary(data, report)
    if report.stopped is not None:
        if not json_out:
            out.print(stopped_line(report.stopped, journal), highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if any(o.status in ("failed", "possibly_charged", "undone") for o in report):
        raise typer.Exit(_failed_status(report))


def _failed_status(report: BatchReport) -> int:
    """1 when a provider failed (or a job may have been charged, or was left undone); 2 when
    every failed job failed for something the user can change (a key, the request, nothing
    eligible), as ``generate`` would have said for each."""
    from ._cli_common import EXIT_PROVIDER, EXIT_USER, exit_code
    from .errors import ModelglassError

    bad = [o for o in report if o.status in ("failed", "possibly_charged", "undone")]
    if all(o.status == "failed" and isinstance(o.error, ModelglassError)
           and not str(o.error).startswith("(from the journal)")
           and exit_code(o.error) == EXIT_USER for o in bad):
        return EXIT_USER
    return EXIT_PROVIDER


def check_some_provider(client: Any) -> None:
    """Refuse, before anything is sent, a batch that no provider here could run (a newcomer's
    first try without keys): each provider's reason, and how to try it without keys."""
    from .errors import ProviderUnavailable
    from .providers import PROVIDER_CLASSES

    why = {name: client.availability(name) for name in PROVIDER_CLASSES}
    if any(a.ok for a in why.values()):
        return
    exc = ProviderUnavailable("no provider can be used here, so no job can run; nothing was "
                              "sent:\n" + "\n".join(f"  - {n}: {a.reason}" for n, a in why.items()))
    exc.hint = ("add --simulate to run every job against the built-in simulators (no keys, no "
                "cost), or set FAL_KEY, OPENAI_API_KEY or REPLICATE_API_TOKEN")
    raise exc


def _repair(requests: list[dict[str, Any]], journal: Path | None, out_dir: Path,
            json_out: bool) -> None:
    """``--repair``: rebuild the journal from what can be read and the images on disk."""
    from .jobs._adopt import repair, safe_name
    from .jobs._schedule import job_ids, request_json

    if journal is None:
        raise InvalidRequest("--repair needs the --journal to rebuild", field="journal")
    pairs = [(jid, json.loads(request_json(req))) for jid, req in job_ids(requests)]
    result = repair(journal, pairs, out_dir, {jid: safe_name(jid) for jid, _ in pairs})
    if json_out:
        emit_json({"repaired": str(journal), "salvaged": result.salvaged,
                   "adopted": result.adopted, "unknown": result.unknown,
                   "moved_to": result.moved_to})
    else:
        out.print(result.line(), highlight=False, soft_wrap=True)


def stopped_line(stopped: dict[str, list[str]], journal: Path | None) -> str:
    """One line on what Ctrl-C left: jobs cancelled, possibly charged, still running, pending."""
    running = (f", {len(stopped['still_running'])} still running"
               if stopped["still_running"] else "")
    rerun = (f"run the same command with --journal {journal} to finish them" if journal
             else "without --journal a rerun sends every job again")
    return (f"Interrupted: {len(stopped['cancelled'])} job(s) in flight cancelled, "
            f"{len(stopped['possibly_charged'])} possibly charged (the provider's cancel was "
            f"sent; not sent again){running}, {len(stopped['pending'])} left pending; {rerun}.")


def _print_summary(data: dict[str, Any], report: BatchReport) -> None:
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in data["counts"].items())
    budget = f" of ${data['budget_usd']:.2f}" if data["budget_usd"] is not None else ""
    spent = (f"simulated, nothing was charged (${data['spent_usd']:.4f}{budget} at list "
             "prices)" if data["simulated"] else f"spent ${data['spent_usd']:.4f}{budget}")
    out.print(f"[bold]{data['jobs']} jobs[/]: {counts}; {spent} in {data['wall_s']:.1f} s",
              highlight=False, soft_wrap=True)
    if data["simulated"]:
        out.print("[yellow]SIMULATED — no provider was called; nothing was charged.[/]")
    for o in report:
        if o.status in ("failed", "possibly_charged"):
            msg = str(o.error).splitlines()[0] if o.error else ""
            out.print(f"  [red]{o.status}[/] {o.id}: {type(o.error).__name__}: {msg}",
                      highlight=False, soft_wrap=True)
    if data["undone"]:
        out.print(f"[yellow]{len(data['undone'])} job(s) left undone: the next one could pass "
                  f"the budget.[/] Raise --budget and run again with the same --journal to "
                  f"finish them.", highlight=False)
    from_journal = [o.id for o in report if o.status == "failed"
                    and str(o.error).startswith("(from the journal)")]
    if from_journal:  # failed in an earlier run of this journal: kept, not run again
        out.print(f"[yellow]hint:[/] {len(from_journal)} job(s) failed in an earlier run of this "
                  "journal and were not run again; add --retry-failed to run them again (or use "
                  "another --journal).", highlight=False, soft_wrap=True)
    out.print(f"manifest: {data['manifest']}", highlight=False, soft_wrap=True)
