"""A progress line for the CLI while a job runs: which offer, which step, and any wait with its
reason and the seconds left (a Retry-After counts down). Fed by the job's events
(:class:`~modelglass.jobs.JobEvent`); shown on stderr, only on a terminal.

>>> with Progress(console) as progress:                                  # doctest: +SKIP
...     client.generate("a fox", events=progress)
"""

from __future__ import annotations

import time
from typing import Any, Self

from rich.console import Console
from rich.text import Text

__all__ = ["Progress", "describe"]


def describe(event: Any, now: float | None = None) -> str:
    """One line for one event; a ``waiting`` event counts down from its ``wait_s``."""
    who = event.offer_key or "routing"
    chunk = f" (call {event.chunk + 1})" if event.chunk else ""
    state = event.state
    if state == "pending":
        return f"{who}: starting{chunk}"
    if state == "submitted":
        rid = f", request {event.request_id}" if event.request_id else ""
        return f"{who}: submitted{chunk}{rid}; generating"
    if state == "waiting":
        wait = event.wait_s or 0.0
        left = max(0.0, wait - ((now if now is not None else time.time()) - event.at))
        why = f" — {event.message}" if event.message else ""
        return f"{who}: waiting {left:.0f} s of {wait:.0f} s{why}"
    if state == "generated":
        return f"{who}: generated{chunk}; downloading"
    if state == "downloaded":
        return f"{who}: downloaded {len(event.sha256) or ''} image(s){chunk}; verifying".replace(
            "  ", " ")
    if state == "done":
        return f"{who}: done"
    if state == "failed":
        err = (event.error or {}).get("type", "error")
        return f"{who}: failed ({err}); trying the next offer if there is one"
    return f"{who}: {state}"


class _Line:
    """The status renderable: re-read at every refresh, so a wait counts down by itself."""

    def __init__(self) -> None:
        self.event: Any = None
        self.started = time.monotonic()

    def __rich__(self) -> Text:
        took = time.monotonic() - self.started
        text = describe(self.event) if self.event is not None else "routing"
        return Text(f"{text}  [{took:.0f} s]")


class Progress:
    """An event sink that shows a spinner and one line on ``console`` (stderr) while a job runs.

    On a console that is not a terminal it records the events and shows nothing.
    """

    def __init__(self, console: Console, *, enabled: bool | None = None) -> None:
        self.console = console
        self.enabled = console.is_terminal if enabled is None else enabled
        self.events: list[Any] = []
        self._line = _Line()
        self._status: Any = None

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        self._line.event = event

    def __enter__(self) -> Self:
        if self.enabled:
            self._status = self.console.status(self._line, spinner="dots")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)
            self._status = None
