"""The pipeline cache: loaded pipelines kept in device memory, least recently used evicted first.

Each cached pipeline is a :class:`PipelineEntry` with its own lock: one call runs on a pipeline
at a time (diffusers pipelines keep per-call state on themselves), calls on different pipelines
run side by side. The cache's own mutex only guards the table; loading happens outside it, under
a per-model load lock, so two callers asking for the same model load it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._families import Family

__all__ = ["PipelineCache", "PipelineEntry", "module_bytes"]

log = logging.getLogger("modelglass")


def module_bytes(pipe: Any) -> int:
    """Bytes held by a pipeline's parameters and buffers (each tensor counted once)."""
    import torch

    seen: set[int] = set()
    total = 0
    for comp in getattr(pipe, "components", {}).values():
        if not isinstance(comp, torch.nn.Module):
            continue
        for t in (*comp.parameters(), *comp.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


@dataclass(eq=False)
class PipelineEntry:
    """One loaded pipeline and everything needed to run it safely and repeatably."""

    key: str
    pipe: Any
    family: Family
    nbytes: int
    pinned: bool = False  # a pipeline the user handed in: never evicted, not counted
    load_s: float = 0.0
    fast: list[str] = field(default_factory=list)  # fast-path options applied at load
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Jobs waiting for this pipeline (the fast path merges compatible ones into one call).
    queue: list[Any] = field(default_factory=list)
    queue_mutex: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0
    last_used: float = field(default_factory=time.monotonic)
    embeddings: Any = None  # _fast.EmbeddingCache when the fast path is on

    def __post_init__(self) -> None:
        # Every call starts from the scheduler the pipeline was loaded with; a sampler swaps in a
        # new scheduler built from this config for one call only.
        self.original_scheduler = getattr(self.pipe, "scheduler", None)

    @property
    def busy(self) -> bool:
        return self.lock.locked()


class PipelineCache:
    """Pipelines by key, bounded by ``budget_bytes`` of device memory (None: unbounded)."""

    def __init__(self, budget_bytes: int | None,
                 on_evict: Callable[[PipelineEntry], None] | None = None) -> None:
        self.budget_bytes = budget_bytes
        self._on_evict = on_evict
        self._entries: OrderedDict[str, PipelineEntry] = OrderedDict()
        self._mutex = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self.evictions: list[str] = []

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        with self._mutex:
            return list(self._entries)

    @property
    def used_bytes(self) -> int:
        """Bytes held by evictable (not pinned) pipelines."""
        return sum(e.nbytes for e in self._entries.values() if not e.pinned)

    def peek(self, key: str) -> PipelineEntry | None:
        return self._entries.get(key)

    def add(self, entry: PipelineEntry) -> PipelineEntry:
        """Put a ready entry in the cache (pinned entries are user-owned pipelines)."""
        with self._mutex:
            if not entry.pinned:
                self._make_room(entry.nbytes, exclude=entry.key)
            self._entries[entry.key] = entry
            self._entries.move_to_end(entry.key)
        return entry

    def get(self, key: str, load: Callable[[], PipelineEntry], estimate_bytes: int = 0) -> PipelineEntry:
        """The entry for ``key``, loading it with ``load()`` if absent.

        Before loading, least recently used idle pipelines are evicted until ``estimate_bytes``
        fits the budget; after loading, again for the measured size.
        """
        with self._mutex:
            entry = self._touch(key)
            if entry is not None:
                return entry
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            with self._mutex:
                entry = self._touch(key)
                if entry is not None:
                    return entry
                self._make_room(estimate_bytes, exclude=key)
            entry = load()  # outside the mutex: other models stay usable while this one loads
            return self.add(entry)

    def evict(self, key: str) -> bool:
        """Drop ``key`` from the cache. A call running on it finishes; memory frees after."""
        with self._mutex:
            entry = self._entries.pop(key, None)
        if entry is not None:
            self._evicted(entry)
        return entry is not None

    def clear(self) -> None:
        """Drop every pipeline (pinned ones included)."""
        with self._mutex:
            entries = list(self._entries.values())
            self._entries.clear()
        for e in entries:
            self._evicted(e)

    # -- internals (called with the mutex held) -------------------------------------------------
    def _touch(self, key: str) -> PipelineEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            entry.last_used = time.monotonic()
        return entry

    def _make_room(self, need: int, *, exclude: str) -> None:
        if self.budget_bytes is None:
            return
        while self.used_bytes + need > self.budget_bytes:
            victims = [e for e in self._entries.values() if not e.pinned and e.key != exclude]
            # Idle pipelines first (a busy one keeps its memory until its call ends).
            victim = next((e for e in victims if not e.busy), victims[0] if victims else None)
            if victim is None:
                if need > self.budget_bytes:
                    log.warning("pipeline needs ~%.2f GiB, more than the local memory budget of "
                                "%.2f GiB; loading it anyway", need / 2**30,
                                self.budget_bytes / 2**30)
                return
            del self._entries[victim.key]
            self._evicted(victim)

    def _evicted(self, entry: PipelineEntry) -> None:
        self.evictions.append(entry.key)
        log.info("local: evicted pipeline %s (%.2f GiB)", entry.key, entry.nbytes / 2**30)
        if self._on_evict is not None:
            self._on_evict(entry)
