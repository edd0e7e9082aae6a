"""What a check says about one image (:class:`CheckResult`) and what a checker is (:class:`Checker`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..request import ImageRequest
    from ..result import GeneratedImage

__all__ = ["VERDICTS", "CheckResult", "Checker", "Verdict"]

Verdict = Literal["pass", "fail", "unknown"]
VERDICTS: tuple[str, ...] = ("pass", "fail", "unknown")


@dataclass(frozen=True)
class CheckResult:
    """One check of one image against what the request asked for.

    ``verdict`` is ``"pass"``, ``"fail"`` or ``"unknown"`` (the checker could not tell: text it
    could not read with confidence, a script its model does not know). Only ``"fail"`` ever
    triggers ``on_fail``. ``score`` (0–1) is the checker's own measure (the text check: one minus
    the normalized edit distance); ``expected`` and ``observed`` say what was looked for and what
    was seen; ``checker`` names the checker and its version (``"rapidocr 3.10.0 PP-OCRv6"``);
    ``image`` is the index of the image in its result; ``metrics`` holds the figures behind the
    verdict (``word_accuracy``, ``ned``, ``confidence``); ``detail`` says why in words.

    >>> CheckResult("text", "pass", 1.0, expected="OPEN", observed="OPEN", checker="ocr 1")
    CheckResult(text: pass, score 1.00, expected 'OPEN', observed 'OPEN')
    """

    name: str
    verdict: Verdict
    score: float | None = None
    expected: Any = None
    observed: Any = None
    checker: str = ""
    image: int = 0
    detail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"a check's verdict is one of {', '.join(VERDICTS)}; "
                             f"{self.name!r} gave {self.verdict!r}")
        if self.score is not None and not 0.0 <= float(self.score) <= 1.0:
            raise ValueError(f"a check's score lies in 0..1; {self.name!r} gave {self.score!r}")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def __repr__(self) -> str:
        score = "" if self.score is None else f", score {self.score:.2f}"
        seen = "" if self.expected is None else (f", expected {self.expected!r}, "
                                                 f"observed {self.observed!r}")
        return f"CheckResult({self.name}: {self.verdict}{score}{seen})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (provenance, the manifest, ``ImageResult.to_dict()``)."""
        return {"name": self.name, "verdict": self.verdict,
                "score": None if self.score is None else round(float(self.score), 4),
                "expected": self.expected, "observed": self.observed, "checker": self.checker,
                "image": self.image, "detail": self.detail,
                "metrics": {k: round(float(v), 4) for k, v in self.metrics.items()},
                "seconds": round(self.seconds, 4)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """The inverse of :meth:`to_dict` (reading a manifest or a saved image back)."""
        keys = ("name", "verdict", "score", "expected", "observed", "checker", "image", "detail",
                "metrics", "seconds")
        return cls(**{k: data[k] for k in keys if k in data})


@runtime_checkable
class Checker(Protocol):
    """A judge of generated images: the built-in checks, or one of your own.

    ``name`` names the check (``"text"``, ``"blank"``, ``"clip"``); ``applies(request)`` says
    whether it has anything to judge for this request (the text check: only when the prompt
    quotes text or ``expect_text`` is given); ``check(image, request)`` returns one
    :class:`CheckResult` for one :class:`~modelglass.GeneratedImage`. It runs off the event
    loop (``AsyncClient``) and may be slow; it should say ``"unknown"`` rather than ``"fail"``
    when it cannot tell.

    >>> class MostlyRed:                                                  # doctest: +SKIP
    ...     name = "mostly-red"
    ...     def applies(self, request): return "red" in request.prompt
    ...     def check(self, image, request):
    ...         r, g, b = image.to_pil().convert("RGB").resize((1, 1)).getpixel((0, 0))
    ...         ok = r > max(g, b)
    ...         return mg.CheckResult(self.name, "pass" if ok else "fail", float(ok),
    ...                               checker="mostly-red 1")
    >>> client.generate("a red door", check=[MostlyRed()], on_fail="retry")  # doctest: +SKIP
    """

    name: str

    def applies(self, request: ImageRequest) -> bool: ...

    def check(self, image: GeneratedImage, request: ImageRequest) -> CheckResult: ...
