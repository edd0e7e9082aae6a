"""Observed truth: what each offer really cost, how long it took, how often it failed.

A small SQLite database (stdlib ``sqlite3``) in the user's cache directory
(``platformdirs.user_cache_dir("modelglass")/observed.sqlite``, or ``MODELGLASS_OBSERVED_DB``).
Every result the client returns records its offer, latency, the provider-reported cost (or the
estimate, marked as such), its size and seeds with image hashes; every failed attempt records the
offer and the error type; every outcome check of an image records its offer, check, prompt
class and verdict (:meth:`ObservedStore.check_rate`). ``catalog verify`` compares this with the catalog; routing may judge
``max_latency_s`` on :meth:`ObservedStore.latency_p90`.

Opt out with ``MODELGLASS_OBSERVE=0``, ``ObservedStore(enabled=False)`` or a client whose
``observed`` attribute is False. Inside ``modelglass.testing.simulate()`` the default store is a
throwaway file, so simulated runs never mix with real observations. Nothing but numbers,
offer keys, error type names, sizes, seeds and hashes is stored: no prompts, no keys, no images
(a prompt enters only as a salted hash that groups identical requests for the seed check).

>>> store = ObservedStore(":memory:")
>>> store.record_result("flux-dev@fal", latency_s=3.2, cost_usd=0.025, cost_reported=True)
>>> store.latency_p90("flux-dev@fal") is None   # fewer than MIN_SAMPLES results
True
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._env import switched_off
from ..checks._text import prompt_class
from ._bills import record_bill

log = logging.getLogger("modelglass")

__all__ = ["MIN_SAMPLES", "PROMPT_CLASSES", "WINDOW", "ObservedStore", "OfferObservations",
           "observe_checks", "observe_failure", "observe_result"]

#: The prompt classes checks are counted in: text in Latin script, in other scripts, no text.
PROMPT_CLASSES = ("latin", "other", "none")

#: Fewer results than this and latency/cost statistics are None (not known yet).
MIN_SAMPLES = 3
#: Statistics read the most recent WINDOW events of an offer.
WINDOW = 200
#: How long :meth:`ObservedStore.latency_p90` answers from memory.
CACHE_S = 5.0
#: Events kept per offer (older ones are pruned): the store never grows without bound.
KEEP = 2000
_PRUNE_EVERY = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, offer TEXT NOT NULL, latency_s REAL,
    cost_usd REAL, cost_reported INTEGER NOT NULL DEFAULT 0, estimated_usd REAL,
    n INTEGER NOT NULL DEFAULT 1, width INTEGER, height INTEGER, requested_size TEXT,
    fingerprint TEXT, source TEXT NOT NULL DEFAULT 'client');
CREATE TABLE IF NOT EXISTS images (
    result_id INTEGER NOT NULL, seed INTEGER, sha256 TEXT, width INTEGER, height INTEGER);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, offer TEXT NOT NULL, error_type TEXT NOT NULL,
    latency_s REAL, source TEXT NOT NULL DEFAULT 'client');
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, offer TEXT NOT NULL, "check" TEXT NOT NULL,
    prompt_class TEXT NOT NULL, verdict TEXT NOT NULL, score REAL,
    source TEXT NOT NULL DEFAULT 'client');
CREATE TABLE IF NOT EXISTS bills (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, offer TEXT NOT NULL, provider TEXT NOT NULL,
    quoted_usd REAL, billed_usd REAL, source TEXT NOT NULL, request_ids TEXT);
CREATE INDEX IF NOT EXISTS bills_offer ON bills (offer, at);
CREATE INDEX IF NOT EXISTS results_offer ON results (offer, at);
CREATE INDEX IF NOT EXISTS checks_offer ON checks (offer, "check", prompt_class);
CREATE INDEX IF NOT EXISTS failures_offer ON failures (offer, at);
CREATE INDEX IF NOT EXISTS images_result ON images (result_id);
"""


def _finite(x: Any) -> float | None:
    """A finite number ≥ 0, else None: a poisoned figure never enters the statistics."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) and x >= 0 else None


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: the answer is a latency that happened)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def default_path() -> Path:
    """Where :meth:`ObservedStore.default` keeps its database."""
    env = os.environ.get("MODELGLASS_OBSERVED_DB")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("modelglass")) / "observed.sqlite"


def observing_enabled() -> bool:
    """False when ``MODELGLASS_OBSERVE`` is ``0``, ``false``, ``no`` or ``off``."""
    return not switched_off("MODELGLASS_OBSERVE")


@dataclass(frozen=True)
class OfferObservations:
    """What the store knows about one offer (None = not enough data)."""

    offer: str
    results: int
    failures: int
    failure_rate: float | None
    latency_p50_s: float | None
    latency_p90_s: float | None
    #: Median provider-reported cost per image (estimates are not counted).
    cost_per_image_usd: float | None
    cost_samples: int
    sizes: tuple[str, ...] = ()
    #: Requested size → size delivered, where they differed.
    size_changes: dict[str, str] = field(default_factory=dict)
    #: Same request and seed, different images: how many such groups (0 = reproducible).
    seed_mismatches: int = 0
    seed_groups: int = 0
    error_types: dict[str, int] = field(default_factory=dict)


class ObservedStore:
    """Per-offer observed cost, latency, failures, sizes and seeds, in SQLite.

    ``path``: the database file (``":memory:"`` for a throwaway one); ``enabled=False`` makes
    every ``record_*`` a no-op and every query None. Safe to share between threads; every
    database error is logged and turns the store off rather than failing a generation.
    """

    def __init__(self, path: str | Path | None = None, *, enabled: bool = True) -> None:
        self.path = default_path() if path is None else path
        self.enabled = enabled
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._p90_cache: dict[str, tuple[float, float | None]] = {}
        self._writes = 0

    @classmethod
    def default(cls) -> ObservedStore:
        """The user's store (see :func:`default_path`), off when ``MODELGLASS_OBSERVE=0``."""
        return cls(default_path(), enabled=observing_enabled())

    def __repr__(self) -> str:
        return f"ObservedStore({str(self.path)!r}, enabled={self.enabled})"

    # -- plumbing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The store's one connection (opened on first use, reopened after a fork), in a
        transaction. WAL with ``synchronous=NORMAL``: a commit does not wait for the disk, so a
        result costs well under a millisecond; an OS crash may lose the last observations, which
        is fine for statistics."""
        with self._lock:
            if self._conn is None or self._pid != os.getpid():
                memory = str(self.path) == ":memory:"
                if not memory:
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(":memory:" if memory else str(self.path), timeout=5.0,
                                       check_same_thread=False)
                if not memory:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
                self._conn, self._pid = conn, os.getpid()
            with self._conn:
                yield self._conn

    def close(self) -> None:
        """Close the connection (it reopens on the next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def write(self, fn: Any) -> None:
        if not self.enabled:
            return
        self._p90_cache.clear()
        self._writes += 1
        try:
            with self._db() as conn:
                fn(conn)
                if self._writes % _PRUNE_EVERY == 0:
                    _prune(conn)
        except (sqlite3.Error, OSError) as exc:
            log.warning("observed store %s unusable (%s); observing is off for this process",
                        self.path, exc)
            self.enabled = False

    def read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        if not self.enabled or (str(self.path) != ":memory:" and not Path(self.path).exists()):
            return []  # reading never creates the database
        try:
            with self._db() as conn:
                return list(conn.execute(sql, tuple(args)))
        except (sqlite3.Error, OSError) as exc:
            log.warning("observed store %s unreadable (%s)", self.path, exc)
            return []

    # -- recording --------------------------------------------------------------------------------
    def record_result(self, offer_key: str, *, latency_s: float | None = None,
                      cost_usd: float | None = None, cost_reported: bool = False,
                      estimated_usd: float | None = None, n: int = 1, width: int | None = None,
                      height: int | None = None, requested_size: str | None = None,
                      seeds: Iterable[int | None] = (), sha256: Iterable[str] = (),
                      fingerprint: str | None = None, source: str = "client",
                      at: float | None = None) -> None:
        """One delivered result of ``offer_key``.

        ``cost_usd`` with ``cost_reported=True`` is what the provider said it charged (only those
        count as observed cost); ``estimated_usd`` is what the catalog expected. ``seeds`` and
        ``sha256`` pair up per image; ``fingerprint`` groups identical requests (see
        :func:`request_fingerprint`) for the seed-reproducibility check.
        """
        seeds, hashes = list(seeds), list(sha256)

        def write(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "INSERT INTO results (at, offer, latency_s, cost_usd, cost_reported, estimated_usd,"
                " n, width, height, requested_size, fingerprint, source)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (at or time.time(), offer_key, _finite(latency_s), _finite(cost_usd),
                 int(bool(cost_reported and _finite(cost_usd) is not None)),
                 _finite(estimated_usd), max(int(n), 1), width, height, requested_size,
                 fingerprint, source))
            rid = cur.lastrowid
            for i in range(max(len(seeds), len(hashes))):
                conn.execute("INSERT INTO images (result_id, seed, sha256, width, height) "
                             "VALUES (?,?,?,?,?)",
                             (rid, seeds[i] if i < len(seeds) else None,
                              hashes[i] if i < len(hashes) else None, width, height))

        self.write(write)

    def record_failure(self, offer_key: str, error_type: str, *, latency_s: float | None = None,
                       source: str = "client", at: float | None = None) -> None:
        """One failed attempt on ``offer_key``; ``error_type`` is the error class name."""
        self.write(lambda conn: conn.execute(
            "INSERT INTO failures (at, offer, error_type, latency_s, source) VALUES (?,?,?,?,?)",
            (at or time.time(), offer_key, str(error_type), _finite(latency_s), source)))

    def record_check(self, offer_key: str, check: str, verdict: str, *,
                     prompt_class: str = "none", score: float | None = None,
                     source: str = "client", at: float | None = None) -> None:
        """One outcome check of one image of ``offer_key``: the check's name, its verdict
        (``pass``, ``fail`` or ``unknown``) and the request's prompt class (``latin``,
        ``other``, ``none``: see :func:`modelglass.checks.prompt_class`)."""
        if verdict not in ("pass", "fail", "unknown") or prompt_class not in PROMPT_CLASSES:
            raise ValueError(f"verdict {verdict!r} / prompt class {prompt_class!r}: use pass, "
                             f"fail or unknown / {', '.join(PROMPT_CLASSES)}")
        self.write(lambda conn: conn.execute(
            'INSERT INTO checks (at, offer, "check", prompt_class, verdict, score, source) '
            "VALUES (?,?,?,?,?,?,?)", (at or time.time(), offer_key, str(check), prompt_class,
                                       verdict, _finite(score), source)))

    def check_rate(self, offer_key: str, check: str = "text", *,
                   prompt_class: str | None = None) -> tuple[int, int]:
        """``(passed, total)`` of ``check`` on ``offer_key``'s images, over its most recent
        :data:`KEEP` verdicts (of one ``prompt_class``, or all). ``unknown`` verdicts are left
        out of both: the checker could not tell.

        >>> store = ObservedStore(":memory:")
        >>> store.record_check("flux-schnell@fal", "text", "pass", prompt_class="latin")
        >>> store.record_check("flux-schnell@fal", "text", "fail", prompt_class="latin")
        >>> store.check_rate("flux-schnell@fal", check="text")
        (1, 2)
        """
        where, args = 'offer = ? AND "check" = ? AND verdict != ?', [offer_key, check, "unknown"]
        if prompt_class is not None:
            where += " AND prompt_class = ?"
            args.append(prompt_class)
        rows = self.read(f"SELECT COALESCE(SUM(verdict = 'pass'), 0), COUNT(*) FROM (SELECT "
                          f"verdict FROM checks WHERE {where} ORDER BY id DESC LIMIT ?)",
                          (*args, KEEP))
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def forget(self, offer_key: str | None = None) -> None:
        """Delete what is stored (for one offer, or everything)."""
        def wipe(conn: sqlite3.Connection) -> None:
            where, args = ("WHERE offer = ?", (offer_key,)) if offer_key else ("", ())
            conn.execute(f"DELETE FROM images WHERE result_id IN (SELECT id FROM results {where})",
                         args)
            conn.execute(f"DELETE FROM results {where}", args)
            conn.execute(f"DELETE FROM failures {where}", args)
            conn.execute(f"DELETE FROM checks {where}", args)
            conn.execute(f"DELETE FROM bills {where}", args)

        self.write(wipe)

    # -- queries ----------------------------------------------------------------------------------
    def _latencies(self, offer_key: str) -> list[float]:
        rows = self.read("SELECT latency_s FROM results WHERE offer = ? AND latency_s IS NOT NULL"
                          " ORDER BY at DESC LIMIT ?", (offer_key, WINDOW))
        return [r[0] for r in rows]

    def latency_p90(self, offer_key: str) -> float | None:
        """90th-percentile latency (seconds) of recent results; None below MIN_SAMPLES.

        Cached for :data:`CACHE_S` seconds (routing asks for every offer on every route); a
        write through this store clears the cache.
        """
        now = time.monotonic()
        hit = self._p90_cache.get(offer_key)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        lat = self._latencies(offer_key)
        value = _quantile(lat, 0.9) if len(lat) >= MIN_SAMPLES else None
        self._p90_cache[offer_key] = (now, value)
        return value

    def latency_p50(self, offer_key: str) -> float | None:
        """Median latency (seconds) of recent results; None below MIN_SAMPLES."""
        lat = self._latencies(offer_key)
        return _quantile(lat, 0.5) if len(lat) >= MIN_SAMPLES else None

    def failure_rate(self, offer_key: str) -> float | None:
        """Failed attempts / (failed attempts + results) over recent events; None with none."""
        ok = self.read("SELECT at FROM results WHERE offer = ? ORDER BY at DESC LIMIT ?",
                        (offer_key, WINDOW))
        bad = self.read("SELECT at FROM failures WHERE offer = ? ORDER BY at DESC LIMIT ?",
                         (offer_key, WINDOW))
        events = sorted([(t, 0) for (t,) in ok] + [(t, 1) for (t,) in bad], reverse=True)[:WINDOW]
        if not events:
            return None
        return sum(e for _, e in events) / len(events)

    def cost_per_image(self, offer_key: str) -> float | None:
        """Median provider-reported cost per image; None below MIN_SAMPLES reported costs."""
        rows = self.read("SELECT cost_usd, n FROM results WHERE offer = ? AND cost_reported = 1"
                          " ORDER BY at DESC LIMIT ?", (offer_key, WINDOW))
        per = [c / n for c, n in rows]
        return _quantile(per, 0.5) if len(per) >= MIN_SAMPLES else None

    def latencies(self, offer_key: str) -> list[float]:
        """Recent result latencies (seconds), newest first."""
        return self._latencies(offer_key)

    def cost_ratios(self, offer_key: str) -> list[float]:
        """Provider-reported cost ÷ the catalog's estimate, per recent result that has both."""
        rows = self.read("SELECT cost_usd, estimated_usd FROM results WHERE offer = ? AND "
                          "cost_reported = 1 AND estimated_usd > 0 ORDER BY at DESC LIMIT ?",
                          (offer_key, WINDOW))
        return [c / e for c, e in rows]

    def offers(self) -> list[str]:
        """Every offer key with at least one recorded event."""
        rows = self.read("SELECT offer FROM results UNION SELECT offer FROM failures "
                          "UNION SELECT offer FROM checks")
        return sorted(r[0] for r in rows)

    def observations(self, offer_key: str) -> OfferObservations:
        """Everything known about one offer, in one object (what ``catalog verify`` reads)."""
        results = self.read("SELECT COUNT(*) FROM results WHERE offer = ?", (offer_key,))
        failures = self.read("SELECT error_type, COUNT(*) FROM failures WHERE offer = ? "
                              "GROUP BY error_type", (offer_key,))
        n_results = results[0][0] if results else 0
        errors = {t: c for t, c in failures}
        costs = self.read("SELECT COUNT(*) FROM results WHERE offer = ? AND cost_reported = 1",
                           (offer_key,))
        sizes = self.read("SELECT DISTINCT width, height FROM results WHERE offer = ? AND "
                           "width IS NOT NULL ORDER BY width, height", (offer_key,))
        changes = self.read("SELECT requested_size, width, height FROM results WHERE offer = ? "
                             "AND requested_size IS NOT NULL AND width IS NOT NULL", (offer_key,))
        seed_rows = self.read(
            "SELECT r.fingerprint, i.seed, COUNT(DISTINCT i.sha256) FROM images i "
            "JOIN results r ON r.id = i.result_id WHERE r.offer = ? AND r.fingerprint IS NOT NULL"
            " AND i.seed IS NOT NULL AND i.sha256 IS NOT NULL GROUP BY r.fingerprint, i.seed "
            "HAVING COUNT(*) > 1", (offer_key,))
        return OfferObservations(
            offer=offer_key, results=n_results, failures=sum(errors.values()),
            failure_rate=self.failure_rate(offer_key), latency_p50_s=self.latency_p50(offer_key),
            latency_p90_s=self.latency_p90(offer_key),
            cost_per_image_usd=self.cost_per_image(offer_key),
            cost_samples=costs[0][0] if costs else 0,
            sizes=tuple(f"{w}x{h}" for w, h in sizes),
            size_changes={req: f"{w}x{h}" for req, w, h in changes if req != f"{w}x{h}"},
            seed_mismatches=sum(1 for *_, distinct in seed_rows if distinct > 1),
            seed_groups=len(seed_rows), error_types=errors)


def _prune(conn: sqlite3.Connection, keep: int | None = None) -> None:
    """Keep the newest ``keep`` (default :data:`KEEP`) results and failures of every offer."""
    keep = KEEP if keep is None else keep
    for table in ("results", "failures", "checks", "bills"):
        conn.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() "
                     f"OVER (PARTITION BY offer ORDER BY id DESC) AS rank FROM {table}) "
                     "WHERE rank > ?)", (keep,))
    conn.execute("DELETE FROM images WHERE result_id NOT IN (SELECT id FROM results)")


def request_fingerprint(**fields: Any) -> str:
    """A short, salted hash of what determines an image except the seed (prompt included).

    Only equality matters (it groups repeats of one request); the prompt cannot be read back.
    """
    text = repr(sorted((k, str(v)) for k, v in fields.items() if k != "seed"))
    return hashlib.sha256(b"modelglass-observed:" + text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# ------------------------------------------------------------------------------------------------
# Hooks the client calls (kept tiny: "# observed-store hook" marks the call sites)
# ------------------------------------------------------------------------------------------------
_DEFAULTS: dict[tuple[str, bool], ObservedStore] = {}
_DEFAULTS_LOCK = threading.Lock()


def _store_of(client: Any) -> ObservedStore | None:
    store = getattr(client, "observed", None)
    if store is False:
        return None
    if isinstance(store, ObservedStore):
        return store if store.enabled else None
    if not observing_enabled():
        return None
    # One store per database path, so that every client of the process shares its lock.
    key = (str(default_path()), True)
    with _DEFAULTS_LOCK:
        default = _DEFAULTS.get(key)
        if default is None:
            default = _DEFAULTS[key] = ObservedStore(default_path())
    return default if default.enabled else None


def observe_result(client: Any, result: Any) -> None:
    """Record one delivered :class:`~modelglass.ImageResult` (never raises)."""
    try:
        store = _store_of(client)
        plan = getattr(result, "plan", None)
        if store is None or plan is None:
            return
        key = plan.offer.key
        own = [a for a in getattr(result, "attempts", []) if getattr(a, "offer_id", None) == key
               and getattr(a, "error", None) is None]
        latency = sum(a.duration_s for a in own) if own else result.latency_s
        images = list(result.images)
        planned = plan.planned
        first = images[0] if images else None
        fp = request_fingerprint(offer=key, prompt=planned.prompt, width=planned.width,
                                 height=planned.height, steps=planned.steps,
                                 guidance=planned.guidance, negative=planned.negative_prompt,
                                 tier=planned.tier, sampler=planned.sampler)
        store.record_result(
            key, latency_s=latency, cost_usd=result.cost_usd,
            cost_reported=not result.cost_is_estimate,
            estimated_usd=plan.estimate.usd, n=max(len(images), 1),
            width=first.width if first else None, height=first.height if first else None,
            requested_size=f"{planned.width}x{planned.height}",
            seeds=[img.seed for img in images], sha256=[img.sha256 for img in images],
            fingerprint=fp)
        record_bill(store, result)
    except Exception as exc:  # noqa: BLE001 - observing must never break a generation
        log.debug("observed store: result not recorded: %s", exc)


def observe_failure(client: Any, offer_key: str | None, exc: BaseException,
                    latency_s: float | None = None) -> None:
    """Record one failed attempt on ``offer_key`` (never raises)."""
    try:
        store = _store_of(client)
        if store is None or not offer_key:
            return
        store.record_failure(offer_key, type(exc).__name__, latency_s=latency_s)
    except Exception as err:  # noqa: BLE001 - observing must never break a generation
        log.debug("observed store: failure not recorded: %s", err)


def observe_checks(client: Any, offer_key: str | None, request: Any, checks: Iterable[Any]) -> None:
    """Record the outcome checks of one try on ``offer_key`` (never raises)."""
    try:
        store = _store_of(client)
        if store is None or not offer_key:
            return
        cls = prompt_class(request)
        for c in checks:
            store.record_check(offer_key, c.name, c.verdict, prompt_class=cls, score=c.score)
    except Exception as exc:  # noqa: BLE001 - observing must never break a generation
        log.debug("observed store: checks not recorded: %s", exc)
