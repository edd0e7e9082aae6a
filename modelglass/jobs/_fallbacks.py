"""A decision's fallback order, read lazily (see :class:`Fallbacks`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..plan import ProviderCall
    from ..routing import RoutingDecision

__all__ = ["Fallbacks"]


def _call_of(candidate: Any) -> tuple[str, Callable[[], ProviderCall]]:
    return candidate.key, functools.partial(getattr, candidate, "call")


class Fallbacks(Sequence[tuple[str, Callable[[], "ProviderCall"]]]):
    """``decision.ranked`` as (key, plan) pairs, ranked only when more than the choice is read.

    Bound-first routing proves the choice without ranking every offer; reading ``ranked`` ranks
    (and plans) all of them. The first pair comes from ``decision.choice``; any other read
    ranks the rest. Same pairs, same order as ``decision.ranked``."""

    def __init__(self, decision: RoutingDecision) -> None:
        self._decision = decision
        self._all: list[tuple[str, Callable[[], ProviderCall]]] | None = None

    def _ranked(self) -> list[tuple[str, Callable[[], ProviderCall]]]:
        if self._all is None:
            self._all = [_call_of(c) for c in self._decision.ranked]
        return self._all

    def _first(self) -> tuple[str, Callable[[], ProviderCall]] | None:
        choice = getattr(self._decision, "choice", None)
        return _call_of(choice) if choice is not None else None

    def __iter__(self) -> Iterator[tuple[str, Callable[[], ProviderCall]]]:
        first = self._first() if self._all is None else None
        if first is None:
            yield from self._ranked()
            return
        yield first
        yield from self._ranked()[1:]

    def __getitem__(self, i):  # type: ignore[no-untyped-def,override]
        if i == 0 and self._all is None and (first := self._first()) is not None:
            return first
        return self._ranked()[i]

    def __len__(self) -> int:
        return len(self._ranked())
