"""Prompt text tokens by script, without a tokenizer download.

OpenAI bills gpt-image prompts in text tokens of its byte-level BPE (o200k). That tokenizer's
merge table is not shipped with any package that installs without a download at run time (tiktoken
fetches its BPE files on first use), so the expected count is estimated from the prompt's scripts:

========================================  ================  =====================================
characters                                tokens per char   why
========================================  ================  =====================================
ASCII and Latin (U+0000–U+024F, U+1E00–)  1/4               OpenAI: "1 token ≈ 4 characters" of
                                                            English text
Han, kana, Hangul, CJK punctuation and     1                 a CJK character is usually one token
full-width forms                                            (often a whole word), rarely merged;
                                                            issue 17 measured 4,300 billed tokens
                                                            for a 4,200-character Chinese prompt
other scripts (Greek, Cyrillic, Arabic,   1/2               fewer merges than English in the BPE
Hebrew, Indic, Thai, …)
outside the BMP (emoji, CJK ext. B–)      1 (CJK), 2 other  4 UTF-8 bytes, seldom merged
========================================  ================  =====================================

The sum is rounded up. This is an estimate, not a bound: the budget bound stays one token per
UTF-8 byte (:func:`~modelglass.catalog._price.prompt_tokens`), which no byte-level BPE can exceed.
"""

from __future__ import annotations

import math

__all__ = ["estimate_text_tokens"]

#: (first, last code point, tokens per character), checked in order; the rest count 1/2.
_RANGES: tuple[tuple[int, int, float], ...] = (
    (0x0000, 0x024F, 0.25),   # ASCII, Latin-1, Latin Extended-A/B
    (0x1E00, 0x1EFF, 0.25),   # Latin Extended Additional (Vietnamese)
    (0x2000, 0x206F, 0.25),   # general punctuation
    (0x1100, 0x11FF, 1.0),    # Hangul Jamo
    (0x2E80, 0x2FDF, 1.0),    # CJK radicals, Kangxi radicals
    (0x3000, 0x33FF, 1.0),    # CJK symbols and punctuation, kana, Hangul compat, CJK compat
    (0x3400, 0x4DBF, 1.0),    # CJK Extension A
    (0x4E00, 0x9FFF, 1.0),    # CJK Unified Ideographs
    (0xA960, 0xA97F, 1.0),    # Hangul Jamo Extended-A
    (0xAC00, 0xD7FF, 1.0),    # Hangul syllables, Jamo Extended-B
    (0xF900, 0xFAFF, 1.0),    # CJK compatibility ideographs
    (0xFE30, 0xFE4F, 1.0),    # CJK compatibility forms
    (0xFF00, 0xFFEF, 1.0),    # half- and full-width forms
    (0x20000, 0x3FFFF, 1.0),  # CJK Extensions B–H
    (0x10000, 0x10FFFF, 2.0),  # other supplementary planes: emoji, historic scripts
)
_OTHER = 0.5


def _weight(cp: int) -> float:
    for lo, hi, w in _RANGES:
        if lo <= cp <= hi:
            return w
    return _OTHER


def estimate_text_tokens(text: str) -> int:
    """Expected text tokens for ``text`` by script (see the module docstring).

    >>> estimate_text_tokens("a red bicycle"), estimate_text_tokens("一辆红色的自行车")
    (4, 8)
    >>> estimate_text_tokens("красный велосипед")
    9
    """
    if text.isascii():
        return math.ceil(len(text) / 4)
    total = 0.0
    for ch in text:
        total += _weight(ord(ch))
    return math.ceil(total - 1e-9)
