"""Scripted faults: what each simulator does wrong, where, and how many times.

A :class:`Fault` names a *kind* of misbehaviour and the *stage* (request type) it hits. Each
request that matches consumes one of its ``times``; after that normal service resumes.

Kinds and the stages they may hit (the first stage listed is the default):

==================  ======================================  =================================
kind                openai                                  fal / replicate
==================  ======================================  =================================
status              generate, download                      any stage
gateway_html        generate, download                      any stage
content             generate                                fal: result, submit, run;
                                                            replicate: poll
malformed           generate                                fal: result, …; replicate: create, …
wrong_shape         generate                                as malformed
drop, hang          generate, download                      any stage
processed_drop      generate, download                      any stage (default: the create)
processed_hang      generate, download                      any stage (default: the create)
truncated           generate, download                      any stage (default: the create)
expired             download                                download
slow                —                                       fal: status; replicate: poll
failed              —                                       fal: result, run; replicate: poll
canceled            —                                       replicate: poll
unknown_status      —                                       fal: status; replicate: poll
==================  ======================================  =================================

``drop`` and ``hang`` strike *before* the request is processed: nothing was created or billed.
The ``processed_*`` kinds and ``truncated`` strike *after*: the request was processed (a create
made its job, which :meth:`Simulator.billed` counts) and then the connection closes without an
answer (``processed_drop``), stays silent for ``delay`` seconds and closes (``processed_hang``),
or the answer is cut off after half its body while ``Content-Length`` promises all of it
(``truncated``). They show lost creates: a client that re-sends after one pays twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "PROCESSED_KINDS", "STAGES", "Fault", "FaultBook"]

FAULT_KINDS = ("status", "gateway_html", "slow", "failed", "canceled", "expired", "content",
               "malformed", "wrong_shape", "drop", "hang", "unknown_status",
               "processed_drop", "processed_hang", "truncated")

STAGES: dict[str, tuple[str, ...]] = {
    "openai": ("generate", "edit", "download"),
    "fal": ("submit", "status", "result", "cancel", "run", "download"),
    "replicate": ("create", "poll", "cancel", "version", "list", "download"),
}
#: Kinds that hit after the request was processed (its job exists and is billed).
PROCESSED_KINDS = ("processed_drop", "processed_hang", "truncated")

_ANY = "*"
# provider -> kind -> allowed stages (first is the default). "*" means every stage.
_ALLOWED: dict[str, dict[str, tuple[str, ...]]] = {
    "openai": {
        "status": ("generate", _ANY), "gateway_html": ("generate", _ANY),
        "content": ("generate", "edit"), "malformed": ("generate", "edit"),
        "wrong_shape": ("generate", "edit"), "drop": ("generate", _ANY),
        "hang": ("generate", _ANY), "expired": ("download",),
        **{k: ("generate", _ANY) for k in PROCESSED_KINDS},
    },
    "fal": {
        "status": ("submit", _ANY), "gateway_html": ("submit", _ANY),
        "slow": ("status",), "failed": ("result", "run"),
        "content": ("result", "submit", "run"), "expired": ("download",),
        "malformed": ("result", "submit", "status", "run"),
        "wrong_shape": ("result", "submit", "status", "run"),
        "drop": ("submit", _ANY), "hang": ("submit", _ANY), "unknown_status": ("status",),
        **{k: ("submit", _ANY) for k in PROCESSED_KINDS},
    },
    "replicate": {
        "status": ("create", _ANY), "gateway_html": ("create", _ANY),
        "slow": ("poll",), "failed": ("poll",), "canceled": ("poll",), "content": ("poll",),
        "expired": ("download",), "malformed": ("create", "poll", "cancel", "version"),
        "wrong_shape": ("create", "poll", "cancel", "version"),
        "drop": ("create", _ANY), "hang": ("create", _ANY), "unknown_status": ("poll",),
        **{k: ("create", _ANY) for k in PROCESSED_KINDS},
    },
}

_DEFAULT_STATUS = {"status": 500, "gateway_html": 502}
DEFAULT_HANG_S = 30.0


@dataclass
class Fault:
    """One scripted fault. ``remaining`` counts down as matching requests consume it."""

    provider: str
    kind: str
    stage: str
    times: int = 1
    status: int | None = None
    retry_after: float | None = None
    body: Any = None
    delay: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    remaining: int = 0

    def __post_init__(self) -> None:
        self.remaining = self.times

    @property
    def exhausted(self) -> bool:
        """True once every scripted occurrence has been served."""
        return self.remaining <= 0


def make_fault(provider: str, kind: str, *, status: int | None, times: int,
               retry_after: float | None, at: str | None, body: Any, delay: float | None,
               headers: Mapping[str, str] | None) -> Fault:
    """Validate the arguments of ``Simulator.fail`` and build the :class:`Fault`."""
    if provider not in _ALLOWED:
        raise ValueError(f"unknown provider {provider!r}; use one of {sorted(_ALLOWED)}")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    allowed = _ALLOWED[provider].get(kind)
    if allowed is None:
        raise ValueError(f"fault kind {kind!r} does not apply to {provider}; "
                         f"it supports {', '.join(sorted(_ALLOWED[provider]))}")
    stage = at or allowed[0]
    if stage not in STAGES[provider]:
        raise ValueError(f"unknown {provider} stage {stage!r}; use one of "
                         f"{', '.join(STAGES[provider])}")
    if _ANY not in allowed and stage not in allowed:
        raise ValueError(f"fault kind {kind!r} cannot happen at {provider} stage {stage!r}; "
                         f"allowed: {', '.join(allowed)}")
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    if status is None:
        status = _DEFAULT_STATUS.get(kind)
    if kind == "failed" and provider == "fal" and status is None:
        status = 500
    if status is not None and not 100 <= status <= 599:
        raise ValueError(f"status must be an HTTP status code, got {status}")
    if kind in ("hang", "processed_hang") and delay is None:
        delay = DEFAULT_HANG_S
    return Fault(provider=provider, kind=kind, stage=stage, times=times, status=status,
                 retry_after=retry_after, body=body, delay=delay, headers=dict(headers or {}))


class FaultBook:
    """The pending faults of one provider; thread-safe."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, stage: str, kinds: Iterable[str]) -> Fault | None:
        """Consume one occurrence of the first pending fault at ``stage`` of one of ``kinds``.

        Returns the fault (its ``remaining`` already decremented) or None.
        """
        wanted = set(kinds)
        with self._lock:
            for fault in self._faults:
                if fault.stage == stage and fault.kind in wanted and fault.remaining > 0:
                    fault.remaining -= 1
                    return fault
        return None

    def pending(self, stage: str, kinds: Iterable[str]) -> bool:
        """True when a fault of one of ``kinds`` waits at ``stage`` (nothing is consumed)."""
        wanted = set(kinds)
        with self._lock:
            return any(f.stage == stage and f.kind in wanted and f.remaining > 0
                       for f in self._faults)

    def all(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
