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

from ..errors import InvalidRequest, StorageError
from ..result import GeneratedImage, ImageResult
from ._adopt import safe_name
from ._journal import file_sha256, rejected_entry

__all__ = ["SavedImage", "keep_rejected", "rejected_entries", "rejected_name", "save_images",
           "save_rejected", "spill"]

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


def spill(result: ImageResult, files: list[Path], rejected: list[Path] | None = None
          ) -> ImageResult:
    """``result`` with its images on disk (``files``, one per image, in order; ``rejected``,
    one per image of ``result.rejected``), no routing decision and no plan; the same object,
    changed in place."""
    if len(files) != len(result.images):
        return result
    result.images = [SavedImage(img, path) for img, path in zip(result.images, files,
                                                                 strict=True)]
    if rejected is not None and len(rejected) == len(result.rejected):
        result.rejected = [SavedImage(img, path) for img, path in zip(result.rejected, rejected,
                                                                       strict=True)]
    if result.plan is not None:  # in each file's provenance ("plan", "request", "planned")
        result.extra.setdefault("offer", result.plan.offer.key)
    result.decision = None
    result.plan = None
    return result


def save_images(out: Path, job_id: str, result: ImageResult) -> list[tuple[Path, str]]:
    """Save every image of job ``job_id`` (PNG with provenance) as ``<out>/<id>-<i>.png``;
    returns each file with the sha256 of its bytes on disk. A file written before a crash is
    adopted; any other file in the way, or a write that fails, is a :class:`StorageError`."""
    stem = safe_name(job_id)
    return [_save(out / f"{stem}-{img.index}.png", img, job_id) for img in result.images]


def rejected_name(job_id: str, image: GeneratedImage) -> str:
    """The file name of a paid image that a check rejected: ``<id>-rejected-<sha256[:12]>.png``
    (named by its bytes, so the same image gets the same name whenever it is saved)."""
    return f"{safe_name(job_id)}-rejected-{image.sha256[:12]}.png"


def save_rejected(out: Path, job_id: str, images: list[GeneratedImage]) -> list[tuple[Path, str]]:
    """Save the images of the tries an outcome check rejected (paid for like any:
    ``ImageResult.rejected``) as ``<out>/<id>-rejected-<sha>.png``, provenance and verdicts
    embedded; returns each file with the sha256 of its bytes on disk."""
    return [_save(out / rejected_name(job_id, img), img, job_id) for img in images]


def keep_rejected(out: Path | None, journal: Any, job_id: str, tries: int,
                  images: list[GeneratedImage], request_id: str | None = None
                  ) -> list[dict[str, Any]]:
    """A try a check rejected (``tries``: the job's tries so far): its paid images saved under
    ``out`` and named in ``journal`` (either may be None) before the next try is sent, so a run
    that stops now loses none of them and its rerun counts the tries (``request_id``: the
    try's provider request, which a rerun may fetch again); the manifest entries."""
    files = save_rejected(out, job_id, images) if out is not None else []
    entries = rejected_entries(images, files)
    if journal is not None:
        journal.rejected(job_id, tries, entries, request_id=request_id)
    return entries


def rejected_entries(images: list[Any], files: list[tuple[Path, str]]
                     ) -> list[dict[str, Any]]:
    """The manifest's record of the images a check rejected (one per image, its file when
    saved)."""
    return [rejected_entry(img.sha256, img.seed, (img.metadata or {}).get("offer"),
                           *((str(files[i][0]), files[i][1]) if i < len(files) else ()))
            for i, img in enumerate(images)]


def _save(target: Path, img: GeneratedImage, job_id: str) -> tuple[Path, str]:
    if target.exists() and _same_image(target, img.sha256):
        return target, file_sha256(target)  # written before a crash: adopt
    try:
        path = Path(img.save(target))
    except InvalidRequest:  # a file that is not this job's image is in the way
        raise StorageError(
            f"{target} already exists and is not job {job_id}'s image (modelglass never "
            f"overwrites a file). Move it away and run the same command again: the job "
            f"is resumed by its provider request id where it has one, not bought again.",
            path=str(target)) from None
    except OSError as exc:
        raise StorageError(
            f"cannot write {target}: {exc.strerror or exc} (the disk is full, a file "
            f"size limit was hit, or the folder is not writable). Nothing more is sent; "
            f"free some space and run the same command again: paid jobs are resumed or "
            f"adopted from disk, not bought again.", path=str(target)) from None
    return path, file_sha256(path)


def _same_image(path: Path, sha256: str) -> bool:
    """Whether the image file at ``path`` carries provenance naming the provider bytes
    ``sha256`` (this job's image, written before an earlier run stopped)."""
    from .._provenance import read_metadata

    try:
        return bool(read_metadata(path).get("sha256") == sha256)
    except (OSError, ValueError):
        return False
