"""What a job needs from the client that runs it: :class:`Owner` (providers, plans, timeouts,
the retry policy) and :class:`Hooks` (what the job tells the client, and how the client's keys
are kept out of text). The job's budget comes to it apart (:class:`~._engine.Job`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..plan import ProviderCall
    from ..providers.base import Provider
    from ..request import ImageRequest
    from ..result import Attempt, ImageResult
    from ._retry import RetryPolicy

__all__ = ["Hooks", "Owner"]


class Owner(Protocol):
    """What a job needs from the client that runs it (``Client`` and ``AsyncClient`` are one);
    its budget and its :class:`Hooks` come to the job apart."""

    timeout_s: float
    max_download_bytes: int

    @property
    def retry_policy(self) -> RetryPolicy: ...

    def provider(self, name: str) -> Provider: ...
    def plan_offer(self, request: ImageRequest, offer_key: str) -> ProviderCall: ...


def _ignore(*args: Any) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """What a job tells the client that runs it, and how it hides the client's keys in text.

    ``scrub`` removes every key the client knows from a message; ``attempt_ended`` hears each
    attempt's end (its error, or None); ``result_ready`` each delivered result;
    ``checks_done`` each try's outcome checks (offer key, request, check results). By default
    the text is kept and nothing listens.
    """

    scrub: Callable[[str], str] = str
    attempt_ended: Callable[[Attempt, BaseException | None], None] = _ignore
    result_ready: Callable[[ImageResult], None] = _ignore
    checks_done: Callable[[str, ImageRequest, list[Any]], None] = _ignore
