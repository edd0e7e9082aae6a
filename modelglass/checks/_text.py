"""The text check: does the image spell what the prompt quoted?

What is expected: ``expect_text`` when the request names it, else the prompt's quoted text
(``"..."``, ``“...”``, ``「...」``, ``『...』``, ``«...»``; several quotes are read in order).

How it is scored, as CVTG-2K scores it (word accuracy and normalized edit distance), on text
normalized the same way on both sides (NFKC, case folded, punctuation dropped; Han and kana are
one word per character, as CJK benchmarks count them):

- ``word_accuracy``: the share of expected words found among the words OCR read anywhere in the
  image (each read word counts once);
- ``ned``: the edit distance between the expected text and the lines OCR read that resemble it,
  over the longer of the two; ``score = 1 - ned``.

The verdict: ``pass`` when every expected word was read; ``unknown`` when the lines that
resemble the text were read with a confidence under :data:`MIN_CONFIDENCE` (never a ``fail``
on a guess), the text is in a script the OCR model does not read (it reads Latin, Chinese
and Japanese kana), or the image is a simulator's that had no font for the script; ``fail`` otherwise (misspelled, or absent while OCR read the rest
confidently).
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .._fonts import can_draw
from ._base import CheckResult

if TYPE_CHECKING:
    from ..request import ImageRequest
    from ..result import GeneratedImage
    from ._ocr import Line

__all__ = ["MIN_CONFIDENCE", "PromptClass", "TextCheck", "edit_distance", "expected_text",
           "prompt_class", "quoted_text", "text_metrics", "words"]

#: Below this OCR confidence on the lines that resemble the text, the verdict is ``unknown``.
MIN_CONFIDENCE = 0.6
#: A read word this similar (1 - edit distance / length) to an expected word marks its line as
#: an attempt at the expected text.
RESEMBLES = 0.5

PromptClass = Literal["latin", "other", "none"]

_QUOTES = re.compile(r'"([^"]+)"|“([^”]+)”|「([^」]+)」|『([^』]+)』|«([^»]+)»')
_OCR_SCRIPTS = ("LATIN", "CJK", "HIRAGANA", "KATAKANA")


def quoted_text(prompt: str) -> str | None:
    """The text a prompt quotes, or None.

    >>> quoted_text('a neon sign that says "OPEN LATE" over a door')
    'OPEN LATE'
    >>> quoted_text("a bakery sign 「欢迎光临」") , quoted_text("a red fox") is None
    ('欢迎光临', True)
    """
    parts = [next(g for g in m.groups() if g is not None).strip() for m in _QUOTES.finditer(prompt)]
    parts = [p for p in parts if p]
    return " ".join(parts) if parts else None


def expected_text(request: ImageRequest) -> str | None:
    """What the image should spell: ``request.expect_text``, else the prompt's quoted text."""
    given = getattr(request, "expect_text", None)
    return given.strip() or None if given else quoted_text(request.prompt)


def _scripts(text: str) -> set[str]:
    """The scripts of the letters in ``text`` (first word of each letter's Unicode name)."""
    out = set()
    for ch in text:
        if unicodedata.category(ch)[0] == "L":
            out.add(unicodedata.name(ch, "UNKNOWN").split()[0])
    return out


def prompt_class(request: ImageRequest) -> PromptClass:
    """The request's class for the observed store: ``"latin"`` text, text in ``"other"``
    scripts, or ``"none"`` (nothing to read)."""
    text = expected_text(request)
    if text is None:
        return "none"
    return "latin" if _scripts(text) <= {"LATIN"} else "other"


def _cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA"))


#: Katakana that are drawn exactly like a hiragana (り/リ, へ/ヘ, べ/ベ, ぺ/ペ): no reader, human or
#: OCR, can tell them apart in most fonts, so both sides compare them as the hiragana.
_SAME_GLYPH = str.maketrans("リヘベペ", "りへべぺ")


def words(text: str) -> list[str]:
    """``text`` normalized and split into words: NFKC, case folded, punctuation dropped, the
    katakana drawn like a hiragana read as it; each Han or kana character is a word of its own.

    >>> words("Open-Late, TONIGHT!") , words("欢迎 光临") , words("ひかリ")
    (['open', 'late', 'tonight'], ['欢', '迎', '光', '临'], ['ひ', 'か', 'り'])
    """
    norm = unicodedata.normalize("NFKC", text).casefold().translate(_SAME_GLYPH)
    out: list[str] = []
    for chunk in "".join(ch if unicodedata.category(ch)[0] in "LN" else " " for ch in norm).split():
        word = ""
        for ch in chunk:
            if _cjk(ch):
                if word:
                    out.append(word)
                out.append(ch)
                word = ""
            else:
                word += ch
        if word:
            out.append(word)
    return out


def _joined(ws: list[str]) -> str:
    """Words back to one string for the edit distance (no spaces around CJK characters)."""
    text = ""
    for w in ws:
        if text and not (_cjk(w[0]) or _cjk(text[-1])):
            text += " "
        text += w
    return text


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions cost 1).

    >>> edit_distance("open", "opfn"), edit_distance("", "abc")
    (1, 3)
    """
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _similar(a: str, b: str) -> float:
    return 1.0 - edit_distance(a, b) / max(len(a), len(b), 1)


@dataclass(frozen=True)
class TextMetrics:
    """What OCR read against what was expected."""

    word_accuracy: float
    ned: float
    observed: str
    confidence: float | None  # lowest confidence among the lines that resemble the text
    lines_read: int


def _split_run_together(word: str, want: list[str]) -> list[str]:
    """``word`` as consecutive expected words when OCR dropped the spaces between them
    (``"butfirst"`` for ``["but", "first"]``, a common PP-OCR reading of tightly set text),
    else ``[word]``. Only a run of expected words *in their expected order* is split, so a
    misspelling is never read as right."""
    if word in want or len(want) < 2:
        return [word]
    for start in range(len(want) - 1):
        joined = want[start]
        for end in range(start + 1, len(want)):
            joined += want[end]
            if len(joined) > len(word):
                break
            if joined == word:
                return want[start:end + 1]
    return [word]


def _read_words(text: str, want: list[str]) -> list[str]:
    return [part for w in words(text) for part in _split_run_together(w, want)]


def text_metrics(expected: str, lines: list[Line]) -> TextMetrics:
    """CVTG-2K's word accuracy and normalized edit distance of ``lines`` against ``expected``.

    A read word that is several consecutive expected words run together counts as those words
    (OCR often drops a narrow space); the edit distance is taken on the same split."""
    want = words(expected)
    read_words = [w for ln in lines for w in _read_words(ln.text, want)]
    pool = list(read_words)
    found = 0
    for w in want:
        if w in pool:
            pool.remove(w)
            found += 1
    relevant = [ln for ln in lines
                if any(_similar(r, w) >= RESEMBLES for r in _read_words(ln.text, want)
                       for w in want)]
    observed = _joined([w for ln in relevant for w in _read_words(ln.text, want)])
    target = _joined(want)
    ned = edit_distance(target, observed) / max(len(target), len(observed), 1)
    confidence = min((ln.confidence for ln in relevant), default=None)
    return TextMetrics(found / len(want) if want else 1.0, ned, observed, confidence, len(lines))


@dataclass(frozen=True)
class TextCheck:
    """Reads the image with OCR and compares it with the quoted (or ``expect_text``) text.

    Applies only when there is text to expect. Needs ``pip install 'modelglass[check]'``.
    """

    min_confidence: float = MIN_CONFIDENCE
    name: str = "text"

    def applies(self, request: ImageRequest) -> bool:
        return expected_text(request) is not None

    def check(self, image: GeneratedImage, request: ImageRequest) -> CheckResult:
        from ._ocr import engine_version, read_text

        t0 = time.perf_counter()
        expected = expected_text(request) or ""
        unread = _scripts(expected) - {s for s in _scripts(expected) if s.startswith(_OCR_SCRIPTS)}
        if unread:
            return CheckResult(self.name, "unknown", None, expected=expected,
                               checker=engine_version(), image=image.index,
                               detail=f"the OCR model does not read {', '.join(sorted(unread))} "
                                      f"script; this text cannot be checked")
        if image.simulated and not _simulator_draws(expected):
            return CheckResult(self.name, "unknown", None, expected=expected,
                               checker=engine_version(), image=image.index,
                               detail="the simulator had no font for this script, so its image "
                                      "has no text to read (install fonts-wqy-microhei or set "
                                      "MODELGLASS_SIM_CJK_FONT)")
        m = text_metrics(expected, read_text(image.data))
        metrics = {"word_accuracy": m.word_accuracy, "ned": m.ned}
        if m.confidence is not None:
            metrics["confidence"] = m.confidence
        verdict, detail = _verdict(m, self.min_confidence)
        return CheckResult(self.name, verdict, round(1.0 - m.ned, 4), expected=expected,
                           observed=m.observed, checker=engine_version(), image=image.index,
                           detail=detail, metrics=metrics, seconds=time.perf_counter() - t0)


def _simulator_draws(text: str) -> bool:
    return can_draw(text)


def _verdict(m: TextMetrics, min_confidence: float) -> tuple[Literal["pass", "fail", "unknown"], str]:
    if m.word_accuracy >= 1.0:
        return "pass", ""
    if m.confidence is not None and m.confidence < min_confidence:
        return "unknown", (f"OCR read {m.observed!r} with confidence {m.confidence:.2f}, under "
                           f"{min_confidence:g}: too unsure to call it wrong")
    if not m.observed:
        return "fail", (f"the text was not found ({m.lines_read} other line(s) read)"
                        if m.lines_read else "no text was found in the image")
    return "fail", f"read {m.observed!r}: {m.word_accuracy:.0%} of the expected words"
