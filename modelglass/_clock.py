"""Today, read from one place.

Lifecycles (which deprecated models have shut down) and price staleness depend on the date. Every
part of modelglass asks :func:`today`, which returns, in order: the date a caller pinned
(``Client(today=...)``, ``route(today=...)``), ``$MODELGLASS_TODAY`` (``YYYY-MM-DD``; the CLI
and the test suite pin the clock with it), else the system date.

>>> import datetime as dt
>>> today(dt.date(2027, 1, 1))
datetime.date(2027, 1, 1)
"""

from __future__ import annotations

import datetime as dt
import os

from .errors import InvalidRequest

ENV = "MODELGLASS_TODAY"


def today(pinned: dt.date | None = None) -> dt.date:
    """The date lifecycle and staleness are judged on: ``pinned``, else ``$MODELGLASS_TODAY``,
    else the system date. A malformed ``$MODELGLASS_TODAY`` is an :class:`InvalidRequest`."""
    if pinned is not None:
        return pinned
    raw = os.environ.get(ENV, "").strip()
    if raw:
        return parse_date(raw, field=ENV)
    return dt.date.today()


def parse_date(value: object, *, field: str = "today") -> dt.date:
    """A ``datetime.date`` from a date, a datetime or ``YYYY-MM-DD`` text; else InvalidRequest."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidRequest(f"{field} must be a date as YYYY-MM-DD, got {value!r}", field=field)
