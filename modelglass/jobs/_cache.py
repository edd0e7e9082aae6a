"""The opt-in result cache: the same call on a deterministic offer gives the same image, so a
repeat is served from disk at no cost.

A result is cached only when it can be reproduced: the request fixes its ``seed`` and the offer
honours seeds (its catalog ``controls.seed`` is true). The key is the sha256 of the offer, the
model, the provider and the normalized payload the planner built (which holds the seed), so a
change to any control, the size or the prompt is a different key. A hit returns an
:class:`~modelglass.result.ImageResult` with ``cost_usd=0``, ``extra["cached"]=True`` and the
key; the stored bytes are checked against their sha256 before they are returned.

Layout, one folder per key: ``<dir>/<key[:2]>/<key>/<i>.img`` (the provider's bytes, unchanged)
and ``meta.json`` (written last, through a rename, so a half-written entry is never a hit).
The sha256 a hit is checked against comes from the cache's own index (``<dir>/index.db``,
SQLite, written after the entry), not from ``meta.json`` next to the bytes: an entry whose
bytes and sidecar were both changed is a miss. A hit's bytes also pass the full image check
(:func:`~modelglass._download.verify_bytes`) before they are returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelglassError

if TYPE_CHECKING:
    from ..plan import ProviderCall
    from ..result import ImageResult

__all__ = ["ResultCache", "cache_key", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``<user cache dir>/modelglass/results`` (platformdirs)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("modelglass")) / "results"


def cache_key(call: ProviderCall) -> str | None:
    """The cache key of a planned call, or None when its result cannot be reproduced (no
    fixed seed, or an offer that does not honour seeds)."""
    if call.request.seed is None or call.offer.controls.seed is not True:
        return None
    blob = json.dumps({"offer": call.offer.key, "model": call.model, "provider": call.provider,
                       "payload": call.payload, "seed": call.request.seed, "n": call.request.n},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultCache:
    """Images of earlier calls, by :func:`cache_key`.

    >>> cache = ResultCache("~/.cache/mg-results")                    # doctest: +SKIP
    >>> client.generate_many(requests, cache=cache)                   # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()

    def __repr__(self) -> str:
        return f"ResultCache({str(self.directory)!r})"

    def _folder(self, key: str) -> Path:
        return self.directory / key[:2] / key

    def get(self, key: str, call: ProviderCall) -> ImageResult | None:
        """The stored result for ``key``, marked cached and free; None on a miss or when a
        stored file no longer matches its sha256."""
        from .._download import verify_bytes
        from ..result import Fate, FateKind, GeneratedImage, ImageResult

        folder = self._folder(key)
        indexed = self._indexed(key)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            if indexed is None or len(indexed) != len(meta["images"]):
                return None
            images = []
            for i, info in enumerate(meta["images"]):
                data = (folder / f"{i}.img").read_bytes()
                if hashlib.sha256(data).hexdigest() != indexed[i] or info["sha256"] != indexed[i]:
                    return None
                verify_bytes(data, info["mime"])
                images.append(GeneratedImage(data=data, mime=info["mime"], width=info["width"],
                                             height=info["height"], seed=info["seed"], index=i,
                                             sha256=info["sha256"],
                                             simulated=info.get("simulated", False)))
        except (OSError, ValueError, KeyError, TypeError, ModelglassError):
            return None
        fates = [Fate(f["control"], FateKind(f["kind"]), f.get("requested"), f.get("applied"),
                      f.get("reason", ""), f.get("delta")) for f in meta.get("fates", [])]
        for img in images:
            img.metadata = {**meta.get("provenance", {}), "seed": img.seed, "index": img.index,
                            "sha256": img.sha256, "cached": True}
        return ImageResult(images=images, model=meta["model"], provider=meta["provider"],
                           cost_usd=0.0, cost_is_estimate=False, latency_s=0.0, fates=fates,
                           plan=call, simulated=any(i.simulated for i in images),
                           extra={"cached": True, "cache_key": key,
                                  "original_cost_usd": meta.get("cost_usd")})

    def put(self, key: str, result: ImageResult) -> None:
        """Store ``result`` under ``key`` (the provider's bytes and what describes them)."""
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(result.images):
            _atomic_write(folder / f"{i}.img", img.data)
        first = result.images[0].metadata if result.images else {}
        meta: dict[str, Any] = {
            "model": result.model, "provider": result.provider, "cost_usd": result.cost_usd,
            "fates": [f.to_dict() for f in result.fates],
            "images": [{"mime": i.mime, "width": i.width, "height": i.height, "seed": i.seed,
                        "sha256": i.sha256, "simulated": i.simulated} for i in result.images],
            "provenance": {k: v for k, v in first.items()
                           if k not in ("seed", "index", "sha256", "payload", "request_id")},
        }
        _atomic_write(folder / "meta.json", json.dumps(meta, default=str).encode())
        self._index(key, [i.sha256 for i in result.images])

    # -- the index: the sha256 a hit must match, kept apart from the entry ------------------------
    def _db(self) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.directory / "index.db", timeout=30.0, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS images (key TEXT NOT NULL, idx INTEGER NOT NULL, "
                   "sha256 TEXT NOT NULL, PRIMARY KEY (key, idx))")
        return db

    def _index(self, key: str, shas: list[str]) -> None:
        with contextlib.closing(self._db()) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM images WHERE key=?", (key,))
            db.executemany("INSERT INTO images (key, idx, sha256) VALUES (?, ?, ?)",
                           [(key, i, sha) for i, sha in enumerate(shas)])
            db.execute("COMMIT")

    def _indexed(self, key: str) -> list[str] | None:
        try:
            with contextlib.closing(self._db()) as db:
                rows = db.execute("SELECT sha256 FROM images WHERE key=? ORDER BY idx",
                                  (key,)).fetchall()
        except (sqlite3.Error, OSError):
            return None
        return [r[0] for r in rows] or None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
