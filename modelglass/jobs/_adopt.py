"""Paid images already on disk: adopted, never bought again; and a damaged journal rebuilt.

A run can stop between writing a job's images and committing ``done`` (a full disk, a file size
limit, a kill). The images are then on disk as ``<out>/<id>-<i>.png`` with their provenance
embedded, and the journal holds the sha256 of the provider's bytes from the ``downloaded``
step. :func:`adopt` matches the two: a job whose every recorded image is on disk with that
sha256 is done, and nothing is sent for it.

:func:`repair` rebuilds a damaged journal: the damaged file is moved aside, the rows that can
still be read are carried over, and every job whose images are on disk (provenance naming the
same prompt) is adopted as done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._journal import Journal, JournalJob, file_sha256

log = logging.getLogger("modelglass")

__all__ = ["Adopted", "RepairReport", "adopt", "repair", "safe_name"]


def safe_name(job_id: str) -> str:
    """The file stem of a job's images: its id, made safe for a file name (with a hash of the
    id when it had to change, so two ids never share files)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", job_id).strip("._") or "job"
    if name != job_id:  # two ids that sanitize alike must not share files
        name += "-" + hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return name[:120]


@dataclass
class Adopted:
    """A job's images found on disk: the files (path, sha256 of the file) and its manifest
    entry, rebuilt from the images' provenance."""

    files: list[tuple[str, str]]
    entry: dict[str, Any]
    cost: float | None


def _metadata(path: Path) -> dict[str, Any] | None:
    from .._provenance import read_metadata

    if not path.is_file():
        return None
    try:
        return read_metadata(path)
    except (OSError, ValueError):
        return None


def adopt(record: JournalJob, out: Path, stem: str) -> Adopted | None:
    """The job's images when they are all on disk: every image the journal saw downloaded,
    with the same sha256 (of the provider's bytes, as each file's provenance says); or, when
    the run stopped before the journal heard of them, ``n`` files whose provenance names this
    job's request (prompt and seed). Else None."""
    shas = [s for call in record.calls for s in call.sha256]
    if shas:
        found = _on_disk(out, stem, len(shas))
        if found is None or sorted(m.get("sha256") or "" for _, m in found) != sorted(shas):
            return None
        cost = sum(c.cost for c in record.calls if c.cost is not None) if any(
            c.cost is not None for c in record.calls) else record.estimate
        return _adopted(record.id, found, cost)
    found = _on_disk(out, stem, int(record.request.get("n") or 1))
    if found is None or not all(_same_request(m, record.request) for _, m in found):
        return None
    return _adopted(record.id, found, _cost(found))


def _same_request(meta: dict[str, Any], request: dict[str, Any]) -> bool:
    sent = meta.get("request")
    return isinstance(sent, dict) and all(sent.get(k) == request.get(k)
                                          for k in ("prompt", "seed", "negative_prompt"))


def _on_disk(out: Path, stem: str, n: int) -> list[tuple[Path, dict[str, Any]]] | None:
    found = []
    for i in range(n):
        path = out / f"{stem}-{i}.png"
        meta = _metadata(path)
        if meta is None:
            return None
        found.append((path, meta))
    return found


def _adopted(job_id: str, found: list[tuple[Path, dict[str, Any]]],
             cost: float | None) -> Adopted:
    files = [(str(p), file_sha256(p)) for p, _ in found]
    first = found[0][1]
    entry = {"id": job_id, "status": "done", "model": first.get("model"),
             "provider": first.get("provider"), "offer": first.get("offer"), "cost_usd": cost,
             "seed": [m.get("seed") for _, m in found], "sha256": [m.get("sha256") for _, m in found],
             "files": [p for p, _ in files], "file_sha256": [s for _, s in files],
             "fates": first.get("fates") or [], "simulated": bool(first.get("simulated")),
             "resumed": True, "adopted": True, "error": None}
    return Adopted(files, entry, cost)


# -- repair --------------------------------------------------------------------------------------
@dataclass
class RepairReport:
    """What :func:`repair` did: rows carried over from the damaged file, jobs adopted from the
    images on disk, jobs left with no record (they run on the next run), and where the damaged
    file went."""

    salvaged: int
    adopted: list[str]
    unknown: list[str]
    moved_to: str | None

    def line(self) -> str:
        """One line for the CLI."""
        moved = f"; the damaged file is kept as {self.moved_to}" if self.moved_to else ""
        return (f"Repaired: {self.salvaged} job record(s) carried over, {len(self.adopted)} "
                f"adopted from the images on disk, {len(self.unknown)} with no record left "
                f"(they will be sent on the next run; check the providers' dashboards for "
                f"them if they may have been sent){moved}.")


def repair(path: Path, jobs: list[tuple[str, dict[str, Any]]], out: Path,
           stems: dict[str, str]) -> RepairReport:
    """Rebuild the journal at ``path`` for ``jobs`` (id, request as JSON) from what can still be
    read in it and from the images in ``out`` (``stems``: each job's file stem)."""
    from ..errors import JournalError

    try:
        with Journal(path) as j:
            return _fill(j, jobs, out, stems, {}, None)  # the file was sound after all
    except JournalError as exc:
        if exc.holder is not None:
            raise
    rows, meta = _salvage(path)
    moved_to = _move_aside(path)
    with Journal(path) as j:
        if "simulated" in meta:  # keep the run's mode (a real run refuses a simulated journal)
            with contextlib.suppress(ValueError):
                j.set_meta("simulated", json.loads(meta["simulated"]))
        return _fill(j, jobs, out, stems, rows, moved_to)


def _fill(j: Journal, jobs: list[tuple[str, dict[str, Any]]], out: Path, stems: dict[str, str],
          rows: dict[str, tuple[Any, ...]], moved_to: str | None) -> RepairReport:
    records = j.begin(jobs)
    salvaged = _restore(j, rows)
    records = {r.id: r for r in j.jobs()} if salvaged else records
    adopted, unknown = [], []
    for job_id, request in jobs:
        record = records[job_id]
        if record.state == "done" and not record.files_ok():
            continue
        got = adopt(record, out, stems[job_id])
        if got is not None:
            j.done(job_id, cost=got.cost, entry=got.entry, files=got.files)
            adopted.append(job_id)
        elif job_id not in rows:
            unknown.append(job_id)
    return RepairReport(salvaged, adopted, unknown, moved_to)


def _cost(found: list[tuple[Path, dict[str, Any]]]) -> float | None:
    costs = {m.get("cost_usd") for _, m in found}  # each image carries its call's cost
    return sum(c for c in costs if isinstance(c, (int, float))) if costs - {None} else None


_JOB_COLUMNS = ("id", "seq", "request", "state", "offer_key", "provider", "estimate", "cost",
                "possibly_charged", "error", "entry", "carried")


def _salvage(path: Path) -> tuple[dict[str, tuple[Any, ...]], dict[str, str]]:
    """The job rows and settings that can still be read from a damaged journal (none when it
    is not SQLite at all)."""
    rows: dict[str, tuple[Any, ...]] = {}
    meta: dict[str, str] = {}
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(path)) as db:
        with contextlib.suppress(sqlite3.Error):
            meta = {str(k): v for k, v in db.execute("SELECT key, value FROM meta")}
        for row in db.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs"):
            with contextlib.suppress(IndexError, TypeError):
                rows[str(row[0])] = tuple(row)
    return rows, meta


def _restore(j: Journal, rows: dict[str, tuple[Any, ...]]) -> int:
    """Carry salvaged rows over (state, cost, possibly charged: what keeps money safe)."""
    kept = {job_id: data for job_id, row in rows.items()
            if (data := dict(zip(_JOB_COLUMNS, row, strict=False)))["state"] != "done"}
    # done is re-established from the files on disk, or not at all
    j.restore(kept)
    return len(kept)


def _move_aside(path: Path) -> str:
    target = path.with_name(path.name + ".damaged")
    k = 1
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.damaged{k}")
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            side.replace(Path(f"{target}{suffix}"))
    log.warning("moved the damaged journal %s to %s", path, target)
    return str(target)
