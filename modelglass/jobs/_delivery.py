"""The engine's steps after a provider's job: fetch and verify its images, check them.

- :class:`Download`: fetch and verify every image of one provider call; one outcome per image
  (bytes or the error), so one bad URL does not lose the others.
- :class:`Check`: the outcome checks of one try's images (OCR and the like: CPU-bound, run on a
  worker thread when awaited, so the event loop stays free).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._steps import Step

if TYPE_CHECKING:
    from .._download import Fetched
    from ..checks import Checker, CheckResult
    from ..providers.base import RawImage
    from ..request import ImageRequest
    from ..result import GeneratedImage

__all__ = ["Check", "Download"]


@dataclass(frozen=True, slots=True)
class Download(Step):
    """Fetch and verify ``images``; the outcome is one ``Fetched`` or exception per image."""

    images: tuple[RawImage, ...]
    provider: str
    timeout_s: float
    max_bytes: int

    def run(self, io: Any) -> list[Fetched | Exception]:
        from .._download import fetch

        def one(raw: RawImage) -> Fetched | Exception:
            try:
                client = None if raw.data is not None else io.http_client()
                return fetch(raw, client=client, provider=self.provider,  # type: ignore[arg-type]
                             timeout_s=self.timeout_s, max_bytes=self.max_bytes)
            except Exception as exc:  # noqa: BLE001 - each image's outcome goes back to the job
                return exc

        if len(self.images) == 1:
            return [one(self.images[0])]
        # Several images of one call: fetch and verify them side by side (the network wait and
        # Pillow's decoding both let other threads run), as AsyncClient does with gather.
        return list(io.download_pool().map(one, self.images))

    async def arun(self, io: Any) -> list[Fetched | Exception]:
        from .._download import afetch, fetch, verify_executor
        from .._verify_image import cheap_to_check

        async def one(raw: RawImage) -> Fetched | Exception:
            try:
                if raw.data is not None or (raw.url or "").startswith("data:"):
                    check = functools.partial(fetch, raw, client=None, provider=self.provider,  # type: ignore[arg-type]
                                              timeout_s=self.timeout_s, max_bytes=self.max_bytes)
                    if raw.data is not None and cheap_to_check(raw.data):
                        # a small PNG: ~1 ms here beats a thread's GIL handoffs; a large
                        # batch's check process takes it over once the batch has one
                        done = await _verified_elsewhere(io, raw, self.provider, self.max_bytes)
                        return done if done is not None else check()
                    # Verifying checks every pixel's data (milliseconds per image), mostly with
                    # the GIL released: on the shared verify threads it runs beside other jobs.
                    return await asyncio.get_running_loop().run_in_executor(verify_executor(),
                                                                            check)
                return await afetch(raw, client=io.ahttp_client(), provider=self.provider,
                                    timeout_s=self.timeout_s, max_bytes=self.max_bytes)
            except Exception as exc:  # noqa: BLE001
                return exc

        if len(self.images) == 1:
            return [await one(self.images[0])]
        return list(await asyncio.gather(*(one(raw) for raw in self.images)))


async def _verified_elsewhere(io: Any, raw: RawImage, provider: str,
                             max_bytes: int) -> Fetched | None:
    """``raw``'s inline bytes verified by the check process of a large async batch, or None:
    no such process, it did not answer, or it found a fault (then the check here says which)."""
    assert raw.data is not None
    ask = getattr(io, "check_process", None)  # an I/O without one checks here
    process = ask() if ask is not None and len(raw.data) <= max_bytes else None
    if process is None:
        return None
    from .._check_process import CheckProcessGone

    try:
        return await process.verify(raw.data, mime_hint=raw.mime, provider=provider)
    except CheckProcessGone:
        return None


@dataclass(frozen=True, slots=True)
class Check(Step):
    """Run ``checkers`` on ``images``; the outcome is their list of ``CheckResult``.
    ``earlier``: ``(index, sha256)`` of the job's images from earlier tries."""

    checkers: tuple[Checker, ...]
    images: tuple[GeneratedImage, ...]
    request: ImageRequest
    earlier: tuple[tuple[int, str], ...] = ()

    def run(self, io: Any) -> list[CheckResult]:
        from ..checks import run_checks

        return run_checks(self.checkers, self.images, self.request, self.earlier)

    async def arun(self, io: Any) -> list[CheckResult]:
        from ..checks import run_checks

        return await asyncio.to_thread(run_checks, self.checkers, self.images, self.request,
                                       self.earlier)
