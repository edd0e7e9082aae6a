"""Which checks a call runs (``generate(check=..., on_fail=..., max_check_retries=...)``), and
running them over a try's images."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import InvalidRequest
from ._base import Checker, CheckResult
from ._cheap import BlankCheck, SameBytesCheck
from ._text import TextCheck

if TYPE_CHECKING:
    from ..request import ImageRequest
    from ..result import GeneratedImage

log = logging.getLogger("modelglass")

__all__ = ["BUILTIN", "ON_FAIL", "Checking", "builtin_checks", "checking_of", "passed",
           "run_checks"]

OnFail = Literal["keep", "retry", "escalate"]
ON_FAIL: tuple[str, ...] = ("keep", "retry", "escalate")
#: The built-in checks by name, in the order they run (the cheap ones first).
BUILTIN: dict[str, type] = {"blank": BlankCheck, "same-bytes": SameBytesCheck, "text": TextCheck}
#: The most tries after the first a call may pay for because of a failed check.
MAX_CHECK_RETRIES = 5


def builtin_checks() -> list[Checker]:
    """A fresh instance of every built-in check (what ``check=True`` runs where it applies)."""
    return [cls() for cls in BUILTIN.values()]


@dataclass(frozen=True)
class Checking:
    """The checks of one call and what a failed one leads to.

    ``on_fail``: ``"keep"`` returns the image with its failed check; ``"retry"`` pays for a new
    try on the same offer with a new seed; ``"escalate"`` pays for a try on the next offer in
    the ranking. At most ``max_retries`` such tries; each is reserved on the budget before it is
    sent, and the call returns the first try whose images pass (else the best one).
    """

    checkers: tuple[Checker, ...]
    on_fail: OnFail = "keep"
    max_retries: int = 1


def checking_of(check: bool | Iterable[Checker | str] | None, *, on_fail: str = "keep",
                max_check_retries: int = 1) -> Checking | None:
    """``generate``'s check arguments, validated. ``check``: ``True`` for every built-in check
    that applies, or a list of built-in names (``"text"``, ``"blank"``, ``"same-bytes"``) and
    :class:`Checker` objects of your own; ``False`` / None for none."""
    if on_fail not in ON_FAIL:
        raise InvalidRequest(f"on_fail must be one of {', '.join(ON_FAIL)}, got {on_fail!r}",
                             field="on_fail")
    if (isinstance(max_check_retries, bool) or not isinstance(max_check_retries, int)
            or not 0 <= max_check_retries <= MAX_CHECK_RETRIES):
        raise InvalidRequest(f"max_check_retries must be a whole number from 0 to "
                             f"{MAX_CHECK_RETRIES}, got {max_check_retries!r}",
                             field="max_check_retries")
    if check is None or check is False:
        if on_fail != "keep":
            raise InvalidRequest(f"on_fail={on_fail!r} acts on failed checks, but no check was "
                                 f"asked for; add check=True", field="on_fail")
        return None
    if check is True:
        return Checking(tuple(builtin_checks()), on_fail, max_check_retries)  # type: ignore[arg-type]
    if isinstance(check, (str, bytes)) or not isinstance(check, Iterable):
        raise InvalidRequest(f"check must be True, False, or a list of check names and Checker "
                             f"objects, got {check!r}", field="check")
    checkers: list[Checker] = []
    for item in check:
        if isinstance(item, str):
            if item not in BUILTIN:
                raise InvalidRequest(f"unknown check {item!r}; built-in checks: "
                                     f"{', '.join(BUILTIN)}", field="check")
            checkers.append(BUILTIN[item]())
        elif isinstance(item, Checker) and isinstance(getattr(item, "name", None), str):
            checkers.append(item)
        else:
            raise InvalidRequest(f"{item!r} is not a checker: give it a name, "
                                 f"applies(request) and check(image, request)", field="check")
    if not checkers:
        raise InvalidRequest("check=[] asks for no check; pass check=False", field="check")
    return Checking(tuple(checkers), on_fail, max_check_retries)  # type: ignore[arg-type]


def passed(results: Sequence[CheckResult]) -> bool:
    """True when no check failed (``unknown`` never counts as a failure)."""
    return not any(r.failed for r in results)


def run_checks(checkers: Sequence[Checker], images: Sequence[GeneratedImage],
               request: ImageRequest, earlier: Sequence[tuple[int, str]] = ()) -> list[CheckResult]:
    """Every applicable check on every image. ``earlier``: ``(index, sha256)`` of the job's
    images from earlier tries (the same-bytes check compares with them too). A checker that
    raises gives ``unknown`` with the error: a paid image is never lost to a checker's bug."""
    out: list[CheckResult] = []
    applicable = [c for c in checkers if _applies(c, request)]
    for img in images:
        others = tuple((o.index, o.sha256) for o in images if o is not img) + tuple(earlier)
        for checker in applicable:
            bound: Any = checker
            if hasattr(checker, "with_others"):
                bound = checker.with_others(others)
            out.append(_one(bound, img, request))
    return out


def _applies(checker: Checker, request: ImageRequest) -> bool:
    try:
        return bool(checker.applies(request))
    except Exception as exc:  # noqa: BLE001 - a checker's bug must not fail a paid job
        log.warning("check %r: applies() raised %s: %s; not run", getattr(checker, "name", "?"),
                    type(exc).__name__, exc)
        return False


def _one(checker: Any, image: GeneratedImage, request: ImageRequest) -> CheckResult:
    t0 = time.perf_counter()
    name = str(getattr(checker, "name", type(checker).__name__))
    try:
        result = checker.check(image, request)
        if not isinstance(result, CheckResult):
            raise TypeError(f"check() returned {type(result).__name__}, not a CheckResult")
    except ImportError as exc:
        log.warning("check %r cannot run: %s", name, exc)
        return CheckResult(name, "unknown", None, image=image.index, detail=str(exc),
                           checker=type(checker).__name__, seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - a checker's bug must not lose a paid image
        log.warning("check %r raised %s: %s; counted as unknown", name, type(exc).__name__, exc)
        return CheckResult(name, "unknown", None, image=image.index,
                           detail=f"the checker raised {type(exc).__name__}: {exc}",
                           checker=type(checker).__name__, seconds=time.perf_counter() - t0)
    if result.image != image.index:  # a user's checker need not know the index
        from dataclasses import replace

        result = replace(result, image=image.index)
    return result
