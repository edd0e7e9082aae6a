"""How much of a prompt a model's text encoder reads.

Diffusion models read the prompt through a text encoder with a fixed window: CLIP takes 77
tokens (75 of them text, between the start and end tokens), T5 as FLUX.1 uses it 512 (256 for
[schnell]), Stable Diffusion 3 feeds T5 256, PixArt-Σ 300. Whatever lies past the window never
reaches the model, even though the provider accepts the whole prompt. The planner calls that
``approximated`` and says where the cut falls.

The count here is an approximation (no tokenizer is loaded): words and punctuation marks are
tokens, and a long word counts one token per ~6 characters, as byte-pair and sentencepiece
vocabularies split rare words. It errs on the side of more tokens, so a cut it reports is real.

>>> window_for("sdxl", "stable-diffusion")
TextWindow(encoder='CLIP', tokens=75)
>>> cut = prompt_cut("word " * 100, window_for("sdxl", "stable-diffusion"))
>>> cut.kept_tokens, cut.total_tokens
(75, 100)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["SHORTEST_WINDOW", "PromptCut", "TextWindow", "count_tokens", "prompt_cut", "window_for"]


@dataclass(frozen=True)
class TextWindow:
    """A text encoder's window: its name and how many text tokens it reads."""

    encoder: str
    tokens: int


# By model id first (where one model differs from its family), then by family. Sources: the
# diffusers pipelines' defaults (max_sequence_length; CLIP's model_max_length 77) and the model
# cards. Families not listed (gpt-image, imagen, ideogram, qwen-image, FLUX.2 …) read long
# prompts through a language model, or do not say: no cut is claimed for them.
_BY_MODEL: dict[str, TextWindow] = {
    "flux-schnell": TextWindow("T5-XXL", 256),
}
_BY_FAMILY: dict[str, TextWindow] = {
    "flux": TextWindow("T5-XXL", 512),
    "stable-diffusion": TextWindow("CLIP", 75),
    "playground": TextWindow("CLIP", 75),
    "stable-diffusion-3": TextWindow("T5-XXL", 256),
    "pixart": TextWindow("T5", 300),
}

#: No prompt shorter than this (in characters) can pass any known window: a token is ≥ 1 character.
SHORTEST_WINDOW = min(w.tokens for w in (*_BY_MODEL.values(), *_BY_FAMILY.values()))

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_CHARS_PER_PIECE = 6


def window_for(model_id: str, family: str) -> TextWindow | None:
    """The text window of this model, or None when none is known."""
    return _BY_MODEL.get(model_id) or _BY_FAMILY.get(family)


def _cost(word: str) -> int:
    return max(1, math.ceil(len(word) / _CHARS_PER_PIECE))


def count_tokens(text: str) -> int:
    """Approximate token count of ``text`` (see the module docstring)."""
    return sum(_cost(m.group()) for m in _TOKEN.finditer(text))


@dataclass(frozen=True)
class PromptCut:
    """Where a window cuts a prompt: tokens kept and in all, and the character where the cut
    falls (the encoder reads ``prompt[:at_char]``)."""

    kept_tokens: int
    total_tokens: int
    at_char: int

    @property
    def cut(self) -> bool:
        return self.total_tokens > self.kept_tokens


def prompt_cut(prompt: str, window: TextWindow) -> PromptCut:
    """How much of ``prompt`` fits in ``window``."""
    used = 0
    at = len(prompt)
    total = 0
    for m in _TOKEN.finditer(prompt):
        cost = _cost(m.group())
        if used + cost > window.tokens and at == len(prompt):
            at = m.start()
        if at == len(prompt):
            used += cost
        total += cost
    return PromptCut(kept_tokens=min(used, window.tokens), total_tokens=total, at_char=at)
