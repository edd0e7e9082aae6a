"""Prompt signals: what the prompt itself says about which capabilities matter.

Three signals, each a plain reading of the text, never a model call:

- **quoted text** (``“GRAND OPENING”``, ``"SALE"``, ``'Café'``): the image must render those letters,
  so ``text_rendering`` matters;
- **counts and spatial relations** ("three cats", "2 dogs", "a lamp left of the sofa"): the layout
  must come out right, so ``composition`` matters;
- **a negative prompt**: offers that honour it are preferred over offers that would drop it.

>>> s = prompt_signals("a storefront sign that says 'GRAND OPENING', two cats left of the door")
>>> s.quoted_text, s.counts, s.spatial
(('GRAND OPENING',), ('two cats',), ('left of',))
>>> s.text_matters, s.composition_matters
(True, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Signals", "prompt_signals"]

# An opening quote must start the text or follow a space or an opening bracket, and its closing
# twin must end the text or precede a space or punctuation: that keeps apostrophes ("don't",
# "the cat's toy") from pairing up into fake quoted text; single quotes need two characters
# inside ("rock 'n' roll" quotes nothing). A curly closing quote that is really an apostrophe
# (‘World’s Best’) does not end the quote, because a letter follows it.
_QUOTED = re.compile(
    r"“([^”]{1,200})”"
    r"|(?:^|(?<=[\s(\[{:=]))‘([^‘\n]{2,200}?)’(?=$|[\s.,;:!?)\]}])"
    r"|«([^»]{1,200})»"
    r"|(?:^|(?<=[\s(\[{:=]))\"([^\"\n]{1,200})\"(?=$|[\s.,;:!?)\]}])"
    r"|(?:^|(?<=[\s(\[{:=]))'([^'\n]{2,200})'(?=$|[\s.,;:!?)\]}])"
)

_NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "a dozen", "dozen", "a pair of", "a couple of", "several", "both")
# A count is a number (digits or a word) followed by a plural-looking noun. Digits followed by a
# unit ("35mm", "4k", "8 bit", "1990s") are not counts of things.
_UNITS = {"mm", "cm", "in", "inch", "inches", "k", "px", "pixels", "mp", "bit", "fps", "dpi", "x",
          "percent", "degrees", "am", "pm", "s", "th", "st", "nd", "rd", "years", "year"}
_COUNT = re.compile(
    r"\b(?:(\d{1,3})|(" + "|".join(re.escape(w) for w in _NUMBER_WORDS) + r"))\s+"
    r"(?:[a-z]+\s+){0,2}?([a-z]{2,}s|people|children|men|women|mice|geese|sheep|fish|deer)\b",
    re.IGNORECASE,
)
_QUOTE_HINT = re.compile("[“‘«\"']")
# Every number word contains one of these; a prompt with none of them and no digit has no count.
_COUNT_HINT = re.compile(r"\d|two|thre|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|pair"
                         r"|couple|several|both", re.IGNORECASE)
_SPATIAL_PHRASES = ("left of", "right of", "to the left", "to the right", "on the left",
                    "on the right", "above", "below", "beneath", "underneath", "behind",
                    "in front of", "between", "next to", "beside", "on top of", "under",
                    "across from", "opposite", "in the foreground", "in the background")
_SPATIAL = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted(_SPATIAL_PHRASES, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Signals:
    """What the prompt says about which capabilities matter, with the words that said it."""

    quoted_text: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    spatial: tuple[str, ...] = ()
    negative_prompt: bool = False

    @property
    def text_matters(self) -> bool:
        """The prompt asks for legible text (it quotes some)."""
        return bool(self.quoted_text)

    @property
    def composition_matters(self) -> bool:
        """The prompt counts things or places them relative to each other."""
        return bool(self.counts or self.spatial)

    @property
    def key(self) -> tuple[bool, bool, bool]:
        """What routing depends on: the signals' effect, not their words (a cache key)."""
        return (self.text_matters, self.composition_matters, self.negative_prompt)

    def describe(self) -> list[str]:
        """One line per signal that fired, quoting the words that fired it."""
        lines = []
        if self.quoted_text:
            shown = ", ".join(f"“{_short(t)}”" for t in self.quoted_text[:3])
            more = f" (+{len(self.quoted_text) - 3} more)" if len(self.quoted_text) > 3 else ""
            lines.append(f"quoted text {shown}{more} → text_rendering matters")
        if self.composition_matters:
            words = [*self.counts, *self.spatial]
            lines.append(f"counts/placement ({', '.join(repr(w) for w in words[:4])}"
                         f"{', …' if len(words) > 4 else ''}) → composition matters")
        if self.negative_prompt:
            lines.append("negative prompt given → offers that honour it are preferred")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"quoted_text": list(self.quoted_text), "counts": list(self.counts),
                "spatial": list(self.spatial), "negative_prompt": self.negative_prompt,
                "text_matters": self.text_matters,
                "composition_matters": self.composition_matters}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prompt_signals(prompt: str, negative_prompt: str | None = None) -> Signals:
    """Read the routing signals out of a prompt (and whether a negative prompt was given).

    >>> prompt_signals('a poster reading "SUMMER SALE"').text_matters
    True
    >>> prompt_signals("3 red apples on top of a wooden table").counts
    ('3 red apples',)
    >>> prompt_signals("don't forget the cat's toy").quoted_text
    ()
    """
    # Cheap pre-checks keep the common prompt (no quotes, no numbers) off the slower regexes.
    quoted: tuple[str, ...] = ()
    if _QUOTE_HINT.search(prompt):
        quoted = tuple(t.strip() for m in _QUOTED.finditer(prompt)
                       for t in m.groups() if t is not None and t.strip())
    counts = []
    if _COUNT_HINT.search(prompt):
        for m in _COUNT.finditer(prompt):
            if m.group(1) is not None and m.group(3).lower() in _UNITS:
                continue
            counts.append(m.group(0))
    spatial = tuple(dict.fromkeys(m.group(1).lower() for m in _SPATIAL.finditer(prompt)))
    return Signals(quoted_text=quoted, counts=tuple(counts), spatial=spatial,
                   negative_prompt=bool(negative_prompt and negative_prompt.strip()))
