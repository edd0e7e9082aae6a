"""The batch journal's SQLite file: its schema, the columns older files get on open, the
soundness check of a file found on disk, and typed errors for SQLite failures (what went wrong
and what to do next). :class:`~._journal.Journal` reads and writes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import JournalError

__all__ = ["COLUMNS", "SCHEMA", "check_sound", "journal_error", "migrate"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    offer_key TEXT,
    provider TEXT,
    estimate REAL,
    cost REAL,
    possibly_charged INTEGER NOT NULL DEFAULT 0,
    carried REAL NOT NULL DEFAULT 0,
    error TEXT,
    entry TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    job_id TEXT NOT NULL,
    chunk INTEGER NOT NULL,
    offer_key TEXT NOT NULL,
    request_id TEXT,
    state TEXT NOT NULL,
    urls TEXT,
    sha256 TEXT,
    cost REAL,
    PRIMARY KEY (job_id, chunk, offer_key)
);
CREATE TABLE IF NOT EXISTS files (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS rejected (
    job_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    tries INTEGER NOT NULL,
    seed INTEGER,
    offer_key TEXT,
    path TEXT,
    file_sha256 TEXT,
    request_id TEXT,
    PRIMARY KEY (job_id, sha256)
);
"""

#: Columns added after the first release, by table: a journal written by an older version gets
#: them on open (``ALTER TABLE … ADD COLUMN``). Later features add theirs here; queries name
#: their columns, so a journal with columns this version does not know still works.
COLUMNS: dict[str, dict[str, str]] = {"jobs": {}, "calls": {}, "files": {},
                                      "rejected": {"request_id": "TEXT"}}


def migrate(db: sqlite3.Connection) -> None:
    """Add the columns a journal written by an older version lacks (:data:`COLUMNS`)."""
    for table, columns in COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', '1')")


def check_sound(db: sqlite3.Connection, path: Path) -> None:
    """Raise when an existing file is not a sound modelglass journal: not SQLite, damaged
    (``quick_check``), or a database of something else."""
    result = db.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        raise sqlite3.DatabaseError(f"database disk image is malformed ({result and result[0]})")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "jobs" not in tables:
        raise JournalError(
            f"{path} is an SQLite database but not a modelglass journal (its tables: "
            f"{', '.join(sorted(tables)[:5])}); name another --journal file", path=str(path))


def journal_error(path: Path, exc: sqlite3.Error, doing: str) -> JournalError:
    """A typed error for an SQLite failure on the journal ``path``, saying what to do."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    full = "full" in text or code == 13 or "disk I/O" in text
    if full and doing != "open":
        return JournalError(
            f"cannot write the journal {path}: {text} (the disk is full or a file size limit "
            f"was hit). Nothing more was sent. Free some space and run the same command again: "
            f"jobs already paid for are resumed or adopted from disk, not bought again.",
            path=str(path))
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError) \
            or "malformed" in text or "not a database" in text:
        return JournalError(
            f"the journal {path} is damaged or not a journal ({text}). Nothing was sent. Run "
            f"`modelglass batch JOBS --journal {path} --repair` to rebuild it from the files on "
            f"disk (the damaged file is kept as {path.name}.damaged), or name another --journal.",
            path=str(path))
    if "readonly" in text or "unable to open" in text or isinstance(exc, sqlite3.OperationalError):
        return JournalError(
            f"cannot {doing} the journal {path}: {text}. Check that it is a file you can write "
            f"(and its folder too), or name another --journal.", path=str(path))
    return JournalError(f"the journal {path} failed to {doing}: {text}", path=str(path))
