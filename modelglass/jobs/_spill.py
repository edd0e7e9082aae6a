"""Bounded memory for batches that save their images: a finished job keeps paths, not bytes.

With ``out=`` (and always in ``modelglass batch``) every image is on disk before its job counts
as done, so holding its bytes as well would make a batch's memory grow with every job (about
45 KB per job for 1024² PNGs, gigabytes for 5,000 real 1–3 MB images). :func:`spill` swaps each
image for a :class:`SavedImage`: the same fields, with ``data`` and ``metadata`` read from the
saved file when asked for, and drops the routing decision and the plan (a few KB each: the
plan is in every file's provenance, the offer's key stays in ``result.extra["offer"]``, and
``client.route(request)`` explains the routing again). The result cache and the journal get the
full result before this.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from ..result import GeneratedImage, ImageResult

__all__ = ["SavedImage", "spill"]

_KEPT = tuple(f.name for f in dataclasses.fields(GeneratedImage)
              if f.name not in ("data", "metadata"))


class SavedImage(GeneratedImage):
    """A batch image that lives on disk at :attr:`path`. ``data`` reads the saved file (the
    provider's pixels with the provenance embedded, so its sha256 is the file's, not
    :attr:`sha256`, which stays the provider bytes'); ``metadata`` is the file's provenance."""

    path: Path

    def __init__(self, image: GeneratedImage, path: Path) -> None:
        for name in _KEPT:
            object.__setattr__(self, name, getattr(image, name))
        self.path = Path(path)

    @property
    def data(self) -> bytes:  # type: ignore[override]
        return self.path.read_bytes()

    @property
    def metadata(self) -> dict[str, Any]:  # type: ignore[override]
        from .._provenance import read_metadata

        return read_metadata(self.path)

    def save(self, path: Any, *, overwrite: bool = False) -> Any:
        """Copy the saved file (provenance and all) to ``path``; never over an existing file
        unless ``overwrite``."""
        from .._provenance import _exists

        target = Path(path)
        if target.is_dir() or os.fspath(path).endswith((os.sep, "/")):
            target = target / self.path.name
        if target.exists() and not overwrite:
            raise _exists(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, target)
        return target

    def __repr__(self) -> str:
        return (f"SavedImage({self.width}x{self.height} {self.mime}, seed={self.seed}, "
                f"sha256={self.sha256[:12]}…, {self.path})")


def spill(result: ImageResult, files: list[Path]) -> ImageResult:
    """``result`` with its images on disk (``files``, one per image, in order), no routing
    decision and no plan; the same object, changed in place."""
    if len(files) != len(result.images):
        return result
    result.images = [SavedImage(img, path) for img, path in zip(result.images, files,
                                                                 strict=True)]
    if result.plan is not None:  # in each file's provenance ("plan", "request", "planned")
        result.extra.setdefault("offer", result.plan.offer.key)
    result.decision = None
    result.plan = None
    return result
