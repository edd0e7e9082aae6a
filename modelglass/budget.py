"""``Budget``: a spending limit shared across calls, clients, threads and tasks.

A call reserves its estimated cost *before* anything is sent, and settles the reservation with
the actual cost once it knows it (or releases it when nothing was billed). The limit is checked
against ``spent + reserved``, so concurrent calls cannot overshoot it together.

>>> budget = Budget(1.00)
>>> r = budget.reserve(0.04)
>>> budget.settle(r, 0.035)
>>> round(budget.remaining, 3)
0.965

An unknown price cannot be reserved: ``reserve(None)`` raises :class:`BudgetExceeded` saying so,
because modelglass never treats an unknown price as $0.

Every number that enters a budget is checked: a limit or a reservation that is not a finite
number ≥ 0 is a typed error (a NaN would switch every later check off); an actual cost that is
not one is not trusted, and the amount held is spent instead. A reservation should be the upper
bound of what the call can cost (:func:`amount_to_hold`), so settling never passes the limit;
when a provider still bills more than was held, the spending is recorded as it is, the overrun
is logged and kept in :attr:`Budget.overruns`, and every later reservation is refused while
the budget stands over its limit.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import BudgetExceeded, InvalidRequest

__all__ = ["Budget", "Lease", "Reservation", "amount_to_hold", "settle_or_release"]

log = logging.getLogger("modelglass")

_ids = itertools.count(1)
# A hair of tolerance so that a limit met exactly by float sums is not refused.
_EPS = 1e-12


def _finite_usd(value: Any) -> float | None:
    """``value`` as a float when it is a finite number >= 0 (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) and v >= 0 else None


def amount_to_hold(estimate: Any) -> float | None:
    """What to reserve for a call: the estimate's upper bound (``max_usd``) when it has one,
    else its ``usd``; a plain number is taken as it is. None when the price is unknown.

    >>> from types import SimpleNamespace
    >>> amount_to_hold(SimpleNamespace(usd=0.04, max_usd=0.06))
    0.06
    >>> amount_to_hold(0.04)
    0.04
    """
    if estimate is None or isinstance(estimate, (int, float)):
        return None if estimate is None else float(estimate)
    upper = getattr(estimate, "max_usd", None)
    usd = getattr(estimate, "usd", None)
    if upper is not None and usd is not None and _finite_usd(upper) is not None:
        return max(float(upper), float(usd)) if _finite_usd(usd) is not None else float(upper)
    return None if usd is None else float(usd)


@dataclass(frozen=True)
class Reservation:
    """Money held for one call until it is settled or released. ``label`` names the call."""

    id: int
    amount: float
    label: str = ""


@dataclass(frozen=True)
class Overrun:
    """A settlement that cost more than its reservation held."""

    label: str
    held_usd: float
    actual_usd: float


class Budget:
    """A spending limit in USD, safe to share between threads, event loops and clients.

    ``spent`` is what settled calls cost, ``reserved`` what running calls hold, ``remaining``
    what is left for new reservations. One :class:`threading.Lock` guards the arithmetic: every
    operation is a few additions, never I/O and never an ``await``, so it is as safe between
    asyncio tasks as between threads and never blocks an event loop for long.

    >>> import modelglass as mg
    >>> budget = mg.Budget(5.0)
    >>> client_a = mg.Client(budget=budget)        # doctest: +SKIP
    >>> client_b = mg.AsyncClient(budget=budget)   # doctest: +SKIP
    """

    def __init__(self, limit_usd: float) -> None:
        limit = _finite_usd(limit_usd)
        if limit is None:
            raise InvalidRequest(
                f"Budget(limit_usd={limit_usd!r}): the limit must be a finite number of USD >= 0 "
                f"(for no limit, pass budget=None)", field="limit_usd")
        self.limit_usd = limit
        self._spent = 0.0
        self._held: dict[int, Reservation] = {}
        self._overruns: list[Overrun] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Budget(limit=${self.limit_usd:.4f}, spent=${self.spent:.4f}, "
                f"reserved=${self.reserved:.4f})")

    @property
    def spent(self) -> float:
        """USD of settled calls."""
        with self._lock:
            return self._spent

    @property
    def reserved(self) -> float:
        """USD held by calls in flight."""
        with self._lock:
            return sum(r.amount for r in self._held.values())

    @property
    def remaining(self) -> float:
        """USD still free for new reservations (never negative)."""
        with self._lock:
            return max(0.0, self.limit_usd - self._spent - sum(r.amount for r in self._held.values()))

    @property
    def overruns(self) -> list[Overrun]:
        """Every settlement whose actual cost passed what its reservation held."""
        with self._lock:
            return list(self._overruns)

    @property
    def over_limit(self) -> bool:
        """True when spending passed the limit (only an overrun can do that)."""
        with self._lock:
            return self._spent > self.limit_usd + _EPS

    def reserve(self, amount: float | None, *, label: str = "") -> Reservation:
        """Hold ``amount`` USD for a call, or raise :class:`BudgetExceeded` (nothing is held).

        ``amount`` should be the call's upper bound (:func:`amount_to_hold`). None means the
        price is unknown: it cannot be reserved against a limit. An amount that is not a finite
        number >= 0 is refused the same way: nothing is sent on a poisoned estimate.
        """
        value = _finite_usd(amount)
        if value is None:
            what = f" for {label}" if label else ""
            why = (f"the price{what} is unknown, so it cannot be reserved against the budget of "
                   f"${self.limit_usd:.4f}. Pick a model with a known price (see "
                   f"`client.route(...).explain()`), or call without a budget." if amount is None
                   else f"the estimate{what} is {amount!r}, not a finite number of USD >= 0, so "
                   f"it cannot be reserved; nothing was sent. This is a catalog price or "
                   f"estimate fault: check the offer's price with `modelglass catalog show`.")
            raise BudgetExceeded(why, estimate_usd=None, limit_usd=self.limit_usd)
        with self._lock:
            held = sum(r.amount for r in self._held.values())
            free = self.limit_usd - self._spent - held
            if value > free + _EPS:
                what = f" for {label}" if label else ""
                over = (f" Spending already passed the limit by ${self._spent - self.limit_usd:.4f}"
                        f" (a call cost more than it reserved)." if self._spent > self.limit_usd
                        + _EPS else "")
                raise BudgetExceeded(
                    f"the estimate{what} is ${value:.4f} but the budget has ${max(free, 0):.4f} "
                    f"left (limit ${self.limit_usd:.4f}, spent ${self._spent:.4f}, reserved by "
                    f"calls in flight ${held:.4f}).{over} Nothing was sent. Raise the limit, wait "
                    f"for calls in flight, or ask for a cheaper quality axis.",
                    estimate_usd=value, limit_usd=self.limit_usd)
            reservation = Reservation(next(_ids), value, label)
            self._held[reservation.id] = reservation
            return reservation

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Turn a reservation into spending: ``actual_usd`` when known, else the amount held.

        An ``actual_usd`` that is not a finite number >= 0 is not trusted: the amount held is
        spent instead (and a warning logged). An actual cost above what was held is recorded
        as spent all the same, logged, and kept in :attr:`overruns`; if it takes spending past
        the limit, every later reservation is refused. Settling twice, or after a release, is
        an error.
        """
        with self._lock:
            self._pop(reservation)
            actual = reservation.amount if actual_usd is None else _finite_usd(actual_usd)
            if actual is None:
                log.warning("budget: the actual cost %r of %s is not a number of USD >= 0; "
                            "counting the $%.4f held instead", actual_usd,
                            reservation.label or f"reservation {reservation.id}",
                            reservation.amount)
                actual = reservation.amount
            if actual > reservation.amount + _EPS:
                self._overruns.append(Overrun(reservation.label, reservation.amount, actual))
                log.warning("budget: %s cost $%.4f, more than the $%.4f it reserved%s",
                            reservation.label or f"reservation {reservation.id}", actual,
                            reservation.amount,
                            "; spending now passes the limit, so new reservations are refused"
                            if self._spent + actual > self.limit_usd + _EPS else "")
            self._spent += actual

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the call failed before anything was billed)."""
        with self._lock:
            self._pop(reservation)

    def _pop(self, reservation: Reservation) -> None:
        if self._held.pop(reservation.id, None) is None:
            raise ValueError(f"reservation {reservation.id} is not held by this budget "
                             f"(already settled or released, or from another budget)")


class Lease:
    """The budget one job of a batch spends from: the hold taken when the job was admitted
    becomes the job's first reservation (so no other job can take that money between
    admission and the job's reserve); later reservations (a pricier fallback) come from the
    batch's budget. :meth:`close` gives the hold back if the job never took it.
    """

    def __init__(self, budget: Budget, hold: Reservation | None) -> None:
        self._budget, self._hold = budget, hold
        self.limit_usd = budget.limit_usd

    def __repr__(self) -> str:
        return f"Lease({self._budget!r}, hold={self._hold!r})"

    def reserve(self, amount: float | None, *, label: str = "") -> Reservation:
        """The admission hold when ``amount`` fits in it, else a new reservation."""
        hold, self._hold = self._hold, None
        if hold is not None:
            if amount is not None and amount <= hold.amount + _EPS:
                return hold
            self._budget.release(hold)
        return self._budget.reserve(amount, label=label)

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """As :meth:`Budget.settle`."""
        self._budget.settle(reservation, actual_usd)

    def release(self, reservation: Reservation) -> None:
        """As :meth:`Budget.release`."""
        self._budget.release(reservation)

    def close(self) -> None:
        """Give back the hold if the job never took it."""
        hold, self._hold = self._hold, None
        settle_or_release(self._budget, hold, ())


def settle_or_release(budget: Budget | Lease | None, reservation: Reservation | None,
                      charges: Iterable[float | None]) -> None:
    """Close ``reservation``: the one settlement rule of the engine, the batch and Ray.

    ``charges`` are what the call was charged, one entry per provider call that went out (None:
    it may have been billed at a price nobody knows). No charge: the reservation is released
    (nothing was billed). Every charge known: it is settled at their sum. Any unknown: the
    whole amount held is kept as spent. A None ``budget`` or ``reservation`` is a no-op.

    >>> b = Budget(1.0)
    >>> settle_or_release(b, b.reserve(0.5), [0.1, 0.2]); round(b.spent, 2)
    0.3
    >>> settle_or_release(b, b.reserve(0.5), [None]); round(b.spent, 2)
    0.8
    >>> settle_or_release(b, b.reserve(0.1), []); round(b.spent, 2), b.reserved
    (0.8, 0)
    """
    if budget is None or reservation is None:
        return
    spent = list(charges)
    if not spent:
        budget.release(reservation)
        return
    known = [usd for usd in spent if usd is not None]
    budget.settle(reservation, sum(known) if len(known) == len(spent) else None)
