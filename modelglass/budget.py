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
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from .errors import BudgetExceeded

__all__ = ["Budget", "Reservation"]

_ids = itertools.count(1)


@dataclass(frozen=True)
class Reservation:
    """Money held for one call until it is settled or released. ``label`` names the call."""

    id: int
    amount: float
    label: str = ""


class Budget:
    """A spending limit in USD, safe to share between threads, event loops and clients.

    ``spent`` is what settled calls cost, ``reserved`` what running calls hold, ``remaining``
    what is left for new reservations. One :class:`threading.Lock` guards the arithmetic: every
    operation is a few additions, never I/O, so it never blocks an event loop for long.

    >>> import modelglass as mg
    >>> budget = mg.Budget(5.0)
    >>> client_a = mg.Client(budget=budget)        # doctest: +SKIP
    >>> client_b = mg.AsyncClient(budget=budget)   # doctest: +SKIP
    """

    def __init__(self, limit_usd: float) -> None:
        if not limit_usd >= 0:  # also refuses NaN
            raise ValueError(f"limit_usd must be a number >= 0, got {limit_usd!r}")
        self.limit_usd = float(limit_usd)
        self._spent = 0.0
        self._held: dict[int, Reservation] = {}
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

    def reserve(self, amount: float | None, *, label: str = "") -> Reservation:
        """Hold ``amount`` USD for a call, or raise :class:`BudgetExceeded` (nothing is held).

        ``amount`` None means the price is unknown: it cannot be reserved against a limit.
        """
        what = f" for {label}" if label else ""
        if amount is None:
            raise BudgetExceeded(
                f"the price{what} is unknown, so it cannot be reserved against the budget of "
                f"${self.limit_usd:.4f}. Pick a model with a known price (see "
                f"`client.route(...).explain()`), or call without a budget.",
                estimate_usd=None, limit_usd=self.limit_usd)
        if not amount >= 0:
            raise ValueError(f"a reservation must be >= 0 USD, got {amount!r}")
        with self._lock:
            held = sum(r.amount for r in self._held.values())
            free = self.limit_usd - self._spent - held
            # A hair of tolerance so that a limit met exactly by float sums is not refused.
            if amount > free + 1e-12:
                raise BudgetExceeded(
                    f"the estimate{what} is ${amount:.4f} but the budget has ${max(free, 0):.4f} "
                    f"left (limit ${self.limit_usd:.4f}, spent ${self._spent:.4f}, reserved by "
                    f"calls in flight ${held:.4f}). Nothing was sent. Raise the limit, wait for "
                    f"calls in flight, or ask for a cheaper quality axis.",
                    estimate_usd=amount, limit_usd=self.limit_usd)
            reservation = Reservation(next(_ids), float(amount), label)
            self._held[reservation.id] = reservation
            return reservation

    def settle(self, reservation: Reservation, actual_usd: float | None) -> None:
        """Turn a reservation into spending: ``actual_usd`` when known, else the amount held.

        The actual cost may exceed what was held (the provider billed more than estimated); it is
        recorded as spent all the same. Settling twice, or after a release, is an error.
        """
        with self._lock:
            self._pop(reservation)
            self._spent += reservation.amount if actual_usd is None else float(actual_usd)

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (the call failed before anything was billed)."""
        with self._lock:
            self._pop(reservation)

    def _pop(self, reservation: Reservation) -> None:
        if self._held.pop(reservation.id, None) is None:
            raise ValueError(f"reservation {reservation.id} is not held by this budget "
                             f"(already settled or released, or from another budget)")
