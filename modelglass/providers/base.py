"""The provider interface. A provider turns a planned call into images, and nothing else.

A provider module is: build the payload without I/O (:meth:`Provider.build_payload`) → one call
through the official client (:meth:`Provider.generate` / :meth:`Provider.agenerate`) → parse the
answer into :class:`ProviderOutput`. Routing, planning, budgets, retries, downloads and metadata
live outside ``providers/``. Provider modules import their official client lazily, inside the
methods that call it, so ``import modelglass`` stays light.

Errors: a provider raises modelglass errors only — ``ContentRejected``, ``RateLimited``,
``ProviderError(retryable=...)``, ``GenerationTimeout``, ``EmptyResult``, ``ProviderUnavailable`` —
translated from its client's exceptions at this boundary (never by matching message text when a
status or code is available).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..catalog import CostEstimate, OfferView
    from ..plan import Planned, ProviderCall
    from ..result import Fate
    from ._common import Deadline

__all__ = ["Availability", "Provider", "ProviderOutput", "RawImage"]


@dataclass(frozen=True)
class Availability:
    """Whether a provider can be used here, and if not, what to do about it."""

    ok: bool
    reason: str


@dataclass
class RawImage:
    """One image as the provider delivered it: inline bytes, or a URL to download.

    Exactly one of ``data`` / ``url`` is set. ``width``/``height``/``mime`` are what the provider
    claims; the downloader verifies them.
    """

    data: bytes | None = None
    url: str | None = None
    mime: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    nsfw: bool = False


@dataclass
class ProviderOutput:
    """What one provider call produced, before download and verification.

    ``cost_usd`` is set only when the provider's reply states the cost (e.g. OpenAI ``usage``);
    otherwise the client uses the plan's estimate and flags it. ``request_id`` is the provider's id
    for the job (fal request id, Replicate prediction id) so a failure can be reported and resumed.
    """

    images: list[RawImage]
    cost_usd: float | None = None
    request_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """One serving provider: ``openai``, ``fal``, ``replicate`` or ``local``.

    Subclasses set :attr:`name` and implement :meth:`availability`, :meth:`build_payload`,
    :meth:`generate` and :meth:`agenerate`.
    """

    name: ClassVar[str]
    #: Environment variables that hold this provider's key, in order of preference.
    env_keys: ClassVar[tuple[str, ...]] = ()
    #: The Python package its official client lives in (for "pip install modelglass[...]" hints).
    client_package: ClassVar[str | None] = None
    extra: ClassVar[str | None] = None
    #: True when availability differs per offer (the local backend: weights present or not).
    per_offer_availability: ClassVar[bool] = False

    @abstractmethod
    def availability(self) -> Availability:
        """Can this provider be called here (key present, client installed, GPU present)?"""

    @abstractmethod
    def build_payload(self, planned: Planned, offer: OfferView) -> tuple[dict[str, Any], dict[str, Fate]]:
        """The request body in the provider's own field names, for one call of ``planned``.

        Pure: no I/O. Returns the payload and any fates this provider changes from the planner's
        (e.g. size ``mapped`` to an ``image_size`` preset). Controls the offer cannot take must
        not appear in the payload.
        """

    @abstractmethod
    def generate(self, call: ProviderCall, *, timeout_s: float) -> ProviderOutput:
        """Run one planned call (synchronously) through the official client."""

    @abstractmethod
    async def agenerate(self, call: ProviderCall, *, timeout_s: float) -> ProviderOutput:
        """Run one planned call (asynchronously) through the official client."""

    # -- resumable jobs (optional) ------------------------------------------------------------------
    def job(self, call: ProviderCall, *, timeout_s: float, resume: str | None = None,
            on_submitted: Callable[[str], None] | None = None) -> tuple[Generator[Any, Any, ProviderOutput], Deadline] | None:
        """The call as a sans-I/O job (a generator of ``Op`` / ``Sleep`` steps, run on
        :meth:`wire` / :meth:`awire`) and its deadline, for providers whose jobs have an id that
        can be polled and cancelled (fal, Replicate). ``resume``: poll the job with that id
        instead of submitting a new one. ``on_submitted(request_id)`` is called as soon as the
        provider's id is known, before polling. None (the default): the provider has no such
        job; the engine calls :meth:`generate` / :meth:`agenerate` instead."""
        return None

    def cancel_job(self, call: ProviderCall, request_id: str) -> Generator[Any, Any, bool] | None:
        """Steps that cancel the job ``request_id`` (best effort), returning whether the provider
        confirmed it; None where nothing can be cancelled."""
        return None

    def wire(self) -> Any:
        """The blocking object the steps of :meth:`job` run on."""
        raise NotImplementedError(f"{type(self).__name__} has no resumable jobs")

    def awire(self) -> Any:
        """The awaiting object the steps of :meth:`job` run on (one per event loop)."""
        raise NotImplementedError(f"{type(self).__name__} has no resumable jobs")

    def offer_availability(self, offer: OfferView) -> Availability:
        """Can this particular offer run here? Default: whatever :meth:`availability` says.

        The local backend overrides it: an offer is eligible only where its weights are present.
        """
        return self.availability()

    def cost_estimate(self, offer: OfferView, width: int, height: int, n: int,
                      steps: int | None) -> CostEstimate | None:
        """A provider-specific estimate (e.g. measured GPU-seconds), or None for the catalog's."""
        return None

    def close(self) -> None:
        """Release clients and connections."""

    async def aclose(self) -> None:
        """Release async clients and connections."""
