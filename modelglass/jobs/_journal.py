"""The batch journal: one SQLite file that says, for every job, how far it got.

A batch writes each transition *before* acting on it: ``started`` before the job may send
anything, ``submitted`` (with the provider's request id) as soon as the engine knows the id and
before it polls, ``done`` only once every image is on disk with its sha256. After a crash (even
a SIGKILL) the next run reads the journal and:

- skips ``done`` jobs whose files are still on disk with the recorded sha256;
- resumes ``submitted`` jobs by their request id (:class:`~modelglass.jobs.Resume`): polled,
  never re-submitted;
- reports a job that was ``started`` but whose request id never reached the journal as
  *possibly charged*: the provider may have billed it (an OpenAI or local call has no id to
  resume by), so it is not re-sent unless the caller allows paying twice.

Durability: WAL mode with ``synchronous=NORMAL`` by default. A commit is then in the WAL file
(the OS page cache) when ``commit`` returns, so killing the process at any point — SIGKILL
included — loses nothing that was committed; only a power cut or kernel crash can lose the last
commits. ``durable=True`` switches to ``synchronous=FULL`` (an fsync per commit) for that case,
at roughly a millisecond or more per transition on ordinary disks; ``benchmarks/batch.py``
measures both.

The standard library's :mod:`sqlite3` only; one connection guarded by a lock, so the event sink
may be called from worker threads (the sync runner) or the event loop (the async one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ..errors import InvalidRequest, JournalError
from ._journal_file import SCHEMA, check_sound, journal_error, migrate
from ._lock import JournalLock

if TYPE_CHECKING:
    from ._events import JobEvent

__all__ = ["Journal", "JournalJob", "file_sha256", "journal_error"]

#: Journal states, in the order a job moves through them (``failed`` may follow any).
STATES = ("pending", "started", "sending", "submitted", "generated", "downloaded", "done",
          "failed")
_PERSISTED_EVENTS = {"submitted", "generated", "downloaded"}


def rejected_entry(sha256: str, seed: int | None, offer: str | None, path: str | None = None,
                   file_sha: str | None = None) -> dict[str, Any]:
    """One rejected image as the manifest lists it (``file`` and ``file_sha256`` when saved)."""
    entry: dict[str, Any] = {"sha256": sha256, "seed": seed, "offer": offer}
    if path is not None:
        entry["file"], entry["file_sha256"] = path, file_sha
    return entry


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class JournalCall:
    """One provider call of a job as the journal knows it."""

    chunk: int
    offer_key: str
    request_id: str | None
    state: str
    urls: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()
    cost: float | None = None


@dataclass
class JournalJob:
    """One job's row, with its provider calls and saved files."""

    id: str
    seq: int
    request: dict[str, Any]
    state: str
    offer_key: str | None = None
    provider: str | None = None
    estimate: float | None = None
    cost: float | None = None
    possibly_charged: bool = False
    error: dict[str, Any] | None = None
    entry: dict[str, Any] | None = None
    carried: float = 0.0
    updated: float = 0.0  # when the row last changed (epoch seconds)
    calls: list[JournalCall] = field(default_factory=list)
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, sha256 of the file)
    #: The paid images of tries a check rejected (the manifest's ``rejected`` entries), and
    #: how many tries the job had made when the last of them was rejected.
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_tries: int = 0
    rejected_ids: set[str] = field(default_factory=set)  # their tries' provider request ids

    def resumable_call(self) -> JournalCall | None:
        """The latest call that has a provider request id and no downloaded images yet."""
        open_calls = [c for c in self.calls
                      if c.request_id and c.state not in ("downloaded", "failed")]
        return open_calls[-1] if open_calls else None

    def refetchable_call(self) -> JournalCall | None:
        """The job's one call when its images were downloaded but the job never reached
        ``done`` (its files could not be written): fetching that request's result again
        costs nothing."""
        live = [c for c in self.calls if c.state != "failed"]
        if self.state != "done" and len(live) == 1 and live[0].request_id \
                and live[0].state == "downloaded" and live[0].chunk == 0:
            return live[0]
        return None

    def files_ok(self) -> list[str]:
        """Problems with the saved files (missing, or sha256 differs); empty when all is well."""
        problems = []
        for path, digest in self.files:
            p = Path(path)
            if not p.is_file():
                problems.append(f"{path}: missing")
            elif file_sha256(p) != digest:
                problems.append(f"{path}: sha256 differs from the journal's {digest[:12]}…")
        return problems


class Journal:
    """A batch's persistent record (see the module docstring).

    >>> with Journal("run.db") as j:                                  # doctest: +SKIP
    ...     jobs = j.begin([("a", {"prompt": "a red bicycle"})])
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False,
                 lock: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise JournalError(f"--journal {self.path} is a folder; name a file (it is created "
                               f"if missing), e.g. {self.path / 'run.db'}", path=str(self.path))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create the journal's folder {self.path.parent}: "
                               f"{exc.strerror}", path=str(self.path)) from None
        # One owner per journal: the lock comes before the first read (see ._lock).
        self._owner = JournalLock(self.path) if lock else None
        if self._owner is not None:
            self._owner.acquire()
        try:
            self._db = self._open()
        except BaseException:
            if self._owner is not None:
                self._owner.release()
            raise

    def _open(self) -> sqlite3.Connection:
        """Connect, check that the file is a sound journal, create or migrate the schema, and
        make the files readable by their owner only (they name paid jobs and their ids)."""
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            # isolation_level=None: we write BEGIN/COMMIT ourselves, one transaction per step.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30.0)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        try:
            if not fresh:
                check_sound(db, self.path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
            # Each step touches a few pages; a small page cache keeps a long batch's memory
            # flat (the default 2 MB grows with the journal, about 1 KB per job).
            db.execute("PRAGMA cache_size=-256")
            db.executescript(SCHEMA)
            migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise self._unusable(exc) from None
        except BaseException:
            db.close()
            raise
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.chmod(f"{self.path}{suffix}", 0o600)
        return db

    def _unusable(self, exc: sqlite3.Error) -> JournalError:
        return journal_error(self.path, exc, "open")

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, durable={self.durable})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (checkpointing the WAL) and give up the lock."""
        with self._lock:
            try:
                self._db.close()
            finally:
                if self._owner is not None:
                    self._owner.release()
                    self._owner = None

    def _write(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for sql, args in statements:
                        self._db.execute(sql, args)
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise journal_error(self.path, exc, "write") from None

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise journal_error(self.path, exc, "read") from None

    # -- setup ------------------------------------------------------------------------------------
    def begin(self, jobs: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, JournalJob]:
        """Add the jobs not yet in the journal (as ``pending``) and return every job's record.

        A job id already in the journal with a different request is an error: the jobs changed
        between runs, so resuming by id could pay for one request and return another.
        """
        rows = {r.id: r for r in self.jobs()}
        new: list[tuple[str, tuple[Any, ...]]] = []
        now = time.time()
        for seq, (job_id, request) in enumerate(jobs):
            text = _canonical(request)
            known = rows.get(job_id)
            if known is not None:
                if _canonical(known.request) != text:
                    raise InvalidRequest(
                        f"job {job_id!r} in the journal {self.path} was recorded with a different "
                        f"request; the jobs changed since the journal was written. Use a new "
                        f"journal, or give the changed job a new id.", field="id")
                continue
            new.append(("INSERT INTO jobs (id, seq, request, state, updated) "
                        "VALUES (?, ?, ?, 'pending', ?)", (job_id, seq, text, now)))
        if new:
            self._write(new)
        return {r.id: r for r in self.jobs()}

    def jobs(self) -> list[JournalJob]:
        """Every job in the journal, in input order, with its calls and files."""
        rows = self._read("SELECT id, seq, request, state, offer_key, provider, estimate, cost, "
                          "possibly_charged, error, entry, carried, updated FROM jobs ORDER BY seq")
        calls = self._read("SELECT job_id, chunk, offer_key, request_id, state, urls, sha256, "
                           "cost FROM calls ORDER BY rowid")
        files = self._read("SELECT job_id, path, sha256 FROM files ORDER BY job_id, idx")
        out = {r[0]: JournalJob(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], r[7],
                                bool(r[8]), _loads(r[9]), _loads(r[10]), r[11], r[12])
               for r in rows}
        for job_id, chunk, offer, rid, state, urls, sha, cost in calls:
            if job_id in out:
                out[job_id].calls.append(JournalCall(chunk, offer, rid, state,
                                                     tuple(_loads(urls) or ()),
                                                     tuple(_loads(sha) or ()), cost))
        for job_id, path, sha in files:
            if job_id in out:
                out[job_id].files.append((path, sha))
        for job_id, sha, tries, seed, offer, path, file_sha, rid in self._read(
                "SELECT job_id, sha256, tries, seed, offer_key, path, file_sha256, request_id "
                "FROM rejected ORDER BY rowid"):
            if job_id in out:
                out[job_id].rejected.append(rejected_entry(sha, seed, offer, path, file_sha))
                out[job_id].rejected_tries = max(out[job_id].rejected_tries, tries)
                if rid:
                    out[job_id].rejected_ids.add(rid)
        return list(out.values())

    def get(self, job_id: str) -> JournalJob | None:
        """One job's record."""
        return next((j for j in self.jobs() if j.id == job_id), None)

    # -- transitions ------------------------------------------------------------------------------
    def rejected(self, job_id: str, tries: int, entries: Iterable[dict[str, Any]], *,
                 request_id: str | None = None) -> None:
        """The paid images of a try a check rejected (:func:`rejected_entry` each: saved or
        not), and the job's tries so far: a rerun neither loses them nor retries past
        ``max_check_retries``. Committed before the next try is sent."""
        self._write([("INSERT OR REPLACE INTO rejected (job_id, sha256, tries, seed, offer_key, "
                      "path, file_sha256, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (job_id, e["sha256"], tries, e.get("seed"), e.get("offer"), e.get("file"),
                       e.get("file_sha256"), request_id)) for e in entries])

    def unreject(self, job_id: str, sha256s: Iterable[str]) -> None:
        """Images recorded as rejected that the job returned in the end (no later try did
        better): they are its images now, not rejected ones."""
        self._write([("DELETE FROM rejected WHERE job_id=? AND sha256=?", (job_id, sha))
                     for sha in sha256s])

    def started(self, job_id: str, *, offer_key: str | None, provider: str | None,
                estimate: float | None) -> None:
        """The job is about to run: from here on it may send (and be billed for) a request."""
        self._write([("UPDATE jobs SET state='started', offer_key=?, provider=?, estimate=?, "
                      "updated=? WHERE id=? AND state IN ('pending', 'started', 'failed')",
                      (offer_key, provider, estimate, time.time(), job_id))])

    def record(self, event: JobEvent) -> None:
        """The engine's event sink: persist the transitions a restart needs.

        ``submitted`` (request id), ``generated`` (URLs) and ``downloaded`` (sha256) are written
        and committed before this returns, so the engine acts on them only once they are safe.
        ``waiting``, ``done`` and ``failed`` are the runner's to record (it knows where the
        files went), except that a ``possibly_charged`` flag is kept at once, a ``failed``
        offer's calls are closed (never resumed), and ``pending`` with an offer records which
        offer the job is on.
        """
        if event.state not in _PERSISTED_EVENTS:
            stmts: list[tuple[str, tuple[Any, ...]]] = []
            if event.state == "sending":
                # A create is about to go out (its id comes later): from here it may be billed.
                stmts.append(("UPDATE jobs SET state='sending', offer_key=COALESCE(?, offer_key), "
                              "provider=COALESCE(?, provider), updated=? WHERE id=? "
                              "AND state='started'",
                              (event.offer_key, event.provider, time.time(), event.job_id)))
            if event.state == "waiting" and not event.possibly_charged:
                # The engine waits to retry only after a try that was not billed (a 429, a
                # refused connection, a 5xx on the create): until it sends again, nothing is out.
                stmts.append(("UPDATE jobs SET state='started', updated=? WHERE id=? AND "
                              "state='sending' AND possibly_charged=0 AND NOT EXISTS "
                              "(SELECT 1 FROM calls WHERE calls.job_id=jobs.id)",
                              (time.time(), event.job_id)))
            if event.state == "pending" and event.offer_key:
                # The offer about to be tried: a restart needs it to tell "nothing was sent"
                # (a provider that announces its send) from "a create may be out".
                stmts.append(("UPDATE jobs SET offer_key=?, provider=COALESCE(?, provider), "
                              "updated=? WHERE id=? AND state='started'",
                              (event.offer_key, event.provider, time.time(), event.job_id)))
            if event.state == "failed" and event.offer_key:
                # That offer's calls are over: a restart must not resume them (a fallback may
                # be running on the next offer).
                stmts.append(("UPDATE calls SET state='failed' WHERE job_id=? AND offer_key=? "
                              "AND state NOT IN ('downloaded', 'failed')",
                              (event.job_id, event.offer_key)))
            if event.possibly_charged:
                stmts.append(("UPDATE jobs SET possibly_charged=1, updated=? WHERE id=?",
                              (time.time(), event.job_id)))
            if stmts:
                self._write(stmts)
            return
        offer = event.offer_key or "?"
        stmts = []
        if event.state == "submitted":
            stmts.append(("INSERT INTO calls (job_id, chunk, offer_key, request_id, state) "
                          "VALUES (?, ?, ?, ?, 'submitted') ON CONFLICT(job_id, chunk, offer_key) "
                          "DO UPDATE SET request_id=excluded.request_id, state='submitted'",
                          (event.job_id, event.chunk, offer, event.request_id)))
        else:
            column, value = (("urls", json.dumps(list(event.urls))) if event.state == "generated"
                             else ("sha256", json.dumps(list(event.sha256))))
            stmts.append((f"INSERT INTO calls (job_id, chunk, offer_key, request_id, state, "
                          f"{column}, cost) VALUES (?, ?, ?, ?, ?, ?, ?) "
                          f"ON CONFLICT(job_id, chunk, offer_key) DO UPDATE SET "
                          f"state=excluded.state, {column}=excluded.{column}, "
                          f"cost=COALESCE(excluded.cost, calls.cost), "
                          f"request_id=COALESCE(calls.request_id, excluded.request_id)",
                          (event.job_id, event.chunk, offer, event.request_id, event.state, value,
                           event.cost_usd)))
        stmts.append(("UPDATE jobs SET state=?, offer_key=COALESCE(?, offer_key), "
                      "provider=COALESCE(?, provider), possibly_charged=MAX(possibly_charged, ?), "
                      "updated=? WHERE id=? AND state NOT IN ('done', 'failed')",
                      (event.state, event.offer_key, event.provider, int(event.possibly_charged),
                       time.time(), event.job_id)))
        self._write(stmts)

    def done(self, job_id: str, *, cost: float | None, entry: dict[str, Any],
             files: list[tuple[str, str]]) -> None:
        """Every image of the job is on disk (``files``: path and the file's sha256)."""
        stmts: list[tuple[str, tuple[Any, ...]]] = [("DELETE FROM files WHERE job_id=?", (job_id,))]
        stmts += [("INSERT INTO files (job_id, idx, path, sha256) VALUES (?, ?, ?, ?)",
                   (job_id, i, path, sha)) for i, (path, sha) in enumerate(files)]
        stmts.append(("UPDATE jobs SET state='done', cost=?, entry=?, error=NULL, "
                      "offer_key=COALESCE(?, offer_key), provider=COALESCE(?, provider), "
                      "updated=? WHERE id=?",
                      (cost, json.dumps(entry, default=str), entry.get("offer"),
                       entry.get("provider"), time.time(), job_id)))
        self._write(stmts)

    def failed(self, job_id: str, *, error: dict[str, Any], cost: float | None = None,
               possibly_charged: bool = False, entry: dict[str, Any] | None = None) -> None:
        """The job ended without images (or with some, listed in ``entry``)."""
        self._write([("UPDATE jobs SET state='failed', error=?, cost=?, entry=?, "
                      "possibly_charged=MAX(possibly_charged, ?), updated=? WHERE id=?",
                      (json.dumps(error, default=str), cost,
                       None if entry is None else json.dumps(entry, default=str),
                       int(possibly_charged), time.time(), job_id))])

    def reset(self, job_id: str, *, carry: float = 0.0) -> None:
        """Forget a job's progress (it will run again as new): only for jobs that charged
        nothing, or when the caller allowed paying twice. ``carry`` is what the earlier try
        may have cost; it stays counted in :meth:`spent`."""
        self._write([("DELETE FROM calls WHERE job_id=?", (job_id,)),
                     ("DELETE FROM files WHERE job_id=?", (job_id,)),
                     ("UPDATE jobs SET state='pending', cost=NULL, error=NULL, entry=NULL, "
                      "possibly_charged=0, carried=carried+?, updated=? WHERE id=?",
                      (carry, time.time(), job_id))])

    # -- money ------------------------------------------------------------------------------------
    def restore(self, rows: dict[str, dict[str, Any]]) -> None:
        """Carry rows salvaged from a damaged journal over, by job id: state, offer, estimate,
        cost, possibly charged, carried cost, error (what keeps money safe)."""
        self._write(("UPDATE jobs SET state=?, offer_key=?, provider=?, estimate=?, cost=?, "
                     "possibly_charged=?, carried=?, error=? WHERE id=?",
                     (d["state"], d["offer_key"], d["provider"], d["estimate"], d["cost"],
                      int(bool(d["possibly_charged"])), d["carried"] or 0.0, d["error"], job_id))
                    for job_id, d in rows.items())

    def spent(self) -> float:
        """USD this journal's jobs have cost so far, as an upper bound: settled costs; the
        estimate of every job that may have been charged without a known cost (``started``
        with no request id, or flagged possibly charged); and what earlier runs may have been
        charged for jobs that were sent again (``carried``). Jobs with a request id that will
        be resumed are not counted: resuming reserves and settles them again."""
        total = 0.0
        for job in self.jobs():
            total += job.carried
            if job.cost is not None:
                total += job.cost
            elif job.possibly_charged or job.state in ("started", "sending"):
                total += job.estimate or 0.0
        return total

    def set_meta(self, key: str, value: Any) -> None:
        """Store a batch-wide setting (JSON)."""
        self._write([("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                      "SET value=excluded.value", (key, json.dumps(value, default=str)))])

    def meta(self, key: str, default: Any = None) -> Any:
        """A batch-wide setting stored with :meth:`set_meta`."""
        rows = self._read("SELECT value FROM meta WHERE key=?", (key,))
        return default if not rows else json.loads(rows[0][0])


def _canonical(request: dict[str, Any]) -> str:
    return json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
