"""Keys: no key value ever reaches a message, a log line or a repr.

Which key a provider uses is class data on :class:`~modelglass.providers.base.Provider`
(``env_keys``, ``key_pairs``); this module only hides the values.
"""

from __future__ import annotations

__all__ = ["scrub"]


def scrub(text: str, secrets: tuple[str | None, ...]) -> str:
    """``text`` with every secret (and each ``:``-separated half of one) replaced by ``***``."""
    for secret in secrets:
        if not secret:
            continue
        parts = {secret, *(p for p in secret.split(":") if len(p) >= 8)}
        for part in sorted(parts, key=len, reverse=True):
            text = text.replace(part, "***")
    return text
