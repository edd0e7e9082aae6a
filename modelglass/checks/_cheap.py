"""Checks with no model: a blank (uniform) image, and the same bytes as another image of the job."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._base import CheckResult

if TYPE_CHECKING:
    from ..request import ImageRequest
    from ..result import GeneratedImage

__all__ = ["BlankCheck", "SameBytesCheck"]

VERSION = "1"


@dataclass(frozen=True)
class BlankCheck:
    """Fails an image whose pixels are (nearly) all one colour: a black frame from a safety
    filter, a white canvas, a decoder's grey. ``score`` is the spread of the grey levels
    (their standard deviation over 64, capped at 1); below ``min_spread`` the image is blank.

    >>> BlankCheck().name
    'blank'
    """

    min_spread: float = 2.0
    name: str = "blank"

    def applies(self, request: ImageRequest) -> bool:
        return True

    def check(self, image: GeneratedImage, request: ImageRequest) -> CheckResult:
        from PIL import Image, ImageStat

        t0 = time.perf_counter()
        with Image.open(io.BytesIO(image.data)) as img:
            grey = img.convert("L")
            grey.thumbnail((256, 256))
            spread = float(ImageStat.Stat(grey).stddev[0])
            lo, hi = grey.getextrema()  # type: ignore[misc]
        blank = spread < self.min_spread
        return CheckResult(
            self.name, "fail" if blank else "pass", min(spread / 64.0, 1.0),
            expected=f"grey-level spread >= {self.min_spread:g}", observed=round(spread, 2),
            checker=f"modelglass-blank {VERSION}", image=image.index,
            detail=(f"the image is (nearly) one colour: grey levels {lo}..{hi}" if blank
                    else ""), metrics={"spread": spread}, seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class SameBytesCheck:
    """Fails an image whose bytes equal another image of the same job (this call's others, and
    every earlier try's): a provider that ignored the seed, or a cache that answered twice.

    The job gives it the other images' hashes (:meth:`with_others`); alone, it passes.
    """

    others: tuple[tuple[int, str], ...] = ()
    name: str = "same-bytes"

    def with_others(self, others: tuple[tuple[int, str], ...]) -> SameBytesCheck:
        """This check, knowing the ``(index, sha256)`` of the job's other images."""
        return SameBytesCheck(others=others, name=self.name)

    def applies(self, request: ImageRequest) -> bool:
        return True

    def check(self, image: GeneratedImage, request: ImageRequest) -> CheckResult:
        twins = [i for i, sha in self.others if sha == image.sha256]
        detail = (f"the same bytes as image {twins[0]} of this job (sha256 "
                  f"{image.sha256[:12]}…)" if twins else "")
        observed: Any = twins[0] if twins else None
        return CheckResult(self.name, "fail" if twins else "pass", 0.0 if twins else 1.0,
                           expected="bytes unlike the job's other images", observed=observed,
                           checker=f"modelglass-same-bytes {VERSION}", image=image.index,
                           detail=detail)
