"""The provider interface. A provider turns a planned call into images, and nothing else.

A provider is, as the AI SDK's image model: build the payload without I/O
(:meth:`Provider.build_payload`) → its job, a generator of :mod:`~modelglass.jobs._steps`
(:meth:`Provider.job`: one :class:`~modelglass.jobs._steps.Wire` call and a parse for OpenAI and
local; submit, poll and fetch for fal and Replicate) → :class:`ProviderOutput`. The job is pure:
its only I/O is the wire object it names (:meth:`Provider.wire` blocking, :meth:`Provider.awire`
awaiting), so the sync and async clients share every decision. Routing, planning, budgets,
retries, downloads and metadata live outside ``providers/``. Provider modules import their
official client lazily, inside the methods that build it, so ``import modelglass`` stays light.

The contract (what a subclass writes): :attr:`name`, :meth:`build_payload`, :meth:`job`,
:meth:`wire` / :meth:`awire`, and where a job has an id: :attr:`resumable` and
:meth:`cancel_job`. Keys and availability come from class data (:attr:`env_keys`,
:attr:`key_pairs`, :attr:`key_help`, :attr:`client_package`, ...). :meth:`generate` /
:meth:`agenerate` drive the job alone, outside a client.

Errors: a provider raises modelglass errors only — ``ContentRejected``, ``RateLimited``,
``ProviderError(retryable=...)``, ``GenerationTimeout``, ``EmptyResult``, ``ProviderUnavailable`` —
translated from its client's exceptions at this boundary (never by matching message text when a
status or code is available).
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import (
    ContentRejected,
    ModelglassError,
    OutcomeUnknown,
    ProviderError,
    ProviderUnavailable,
)
from ..jobs._drive import arun, run
from ._errors import (
    connection_error,
    content_rejected,
    detach,
    http_error,
    outcome_unknown,
    wrong_shape,
)

if TYPE_CHECKING:
    from ..catalog import CostEstimate, OfferView
    from ..catalog._bills import BillLine
    from ..jobs._steps import Step
    from ..plan import Planned, ProviderCall
    from ..result import Fate

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

    Subclasses set :attr:`name` and implement :meth:`build_payload`, :meth:`job` and
    :meth:`wire` / :meth:`awire`.
    """

    name: ClassVar[str]
    #: Environment variables that hold this provider's key (or a part of it), in order of
    #: preference; a single one is the key.
    env_keys: ClassVar[tuple[str, ...]] = ()
    #: Pairs of those whose values joined by ``:`` make a key (fal's ``FAL_KEY_ID`` and
    #: ``FAL_KEY_SECRET``); the second of each is a secret too.
    key_pairs: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: What to do without a key, for messages (``"no fal key: set FAL_KEY"``).
    key_help: ClassVar[str] = ""
    #: The constructor argument that takes the key (``api_key``, ``api_token``).
    key_arg: ClassVar[str] = "api_key"
    #: The Python package its official client lives in (for "pip install modelglass[...]" hints).
    client_package: ClassVar[str | None] = None
    #: Its distribution name, as availability reports it (``fal-client``).
    client_dist: ClassVar[str | None] = None
    extra: ClassVar[str | None] = None
    #: True when availability differs per offer (the local backend: weights present or not).
    per_offer_availability: ClassVar[bool] = False
    #: True when a job has an id that can be polled, resumed and cancelled (fal, Replicate).
    resumable: ClassVar[bool] = False

    _explicit_key: str | None = None

    def __repr__(self) -> str:
        word = self.key_arg.removeprefix("api_")
        return f"{type(self).__name__}({word}={'set' if self._key() else 'missing'})"

    # -- keys and availability (class data) -------------------------------------------------------
    def _key(self) -> str | None:
        """The key given to the constructor, else :meth:`key_in` the environment."""
        return self._explicit_key or self.key_in(os.environ)

    @classmethod
    def key_in(cls, env: Mapping[str, str]) -> str | None:
        """The first of :attr:`env_keys` set in ``env``, else the first of :attr:`key_pairs`
        whose two parts are set, joined by ``:``; None without one."""
        paired = {name for pair in cls.key_pairs for name in pair}
        for name in cls.env_keys:
            if name not in paired and (value := env.get(name)):
                return value
        for first, second in cls.key_pairs:
            a, b = env.get(first), env.get(second)
            if a and b:
                return f"{a}:{b}"
        return None

    def _secrets(self) -> tuple[str | None, ...]:
        """Every value that must never reach a message, a log line or a repr."""
        return (self._key(), *(os.environ.get(second) for _, second in self.key_pairs))

    def _install_hint(self) -> str:
        return f"the {self.name} client is not installed: pip install 'modelglass[{self.extra}]'"

    def availability(self) -> Availability:
        """Can this provider be called here (key present, client installed, GPU present)?"""
        if self.client_package and importlib.util.find_spec(self.client_package) is None:
            return Availability(False, self._install_hint())
        if self.env_keys and not self._key():
            return Availability(False, f"{self.key_help}, or pass {self.key_arg}=")
        return Availability(True, f"{self.env_keys[0]} set; {self.client_dist} installed"
                            if self.env_keys else "available")

    def _require_key(self) -> str:
        """The key, for building a client; :class:`ProviderUnavailable` without one (or
        without the client package)."""
        key = self._key()
        if not key:
            raise ProviderUnavailable(self.key_help, provider=self.name)
        if self.client_package and importlib.util.find_spec(self.client_package) is None:
            raise ProviderUnavailable(self._install_hint(), provider=self.name)
        return key

    def offer_availability(self, offer: OfferView) -> Availability:
        """Can this particular offer run here? Default: whatever :meth:`availability` says.

        The local backend overrides it: an offer is eligible only where its weights are present.
        """
        return self.availability()

    # -- what it says about itself, for the catalog tools (class data; no client, no I/O) ---------
    #: Why an offer of this provider has no bill yet (``catalog verify``).
    no_bill: ClassVar[str] = "no bill recorded"

    @classmethod
    def bill_line(cls, result: Any) -> BillLine | None:
        """What this provider says a delivered ``result`` was billed: (USD, or None until it can
        be read; where the figure comes from; the provider's request ids to read it by, or
        None). None (the default): no bill. Recorded next to the quote by the observed store
        (:mod:`modelglass.catalog._bills`)."""
        return None

    @classmethod
    def schema_api(cls, env: Mapping[str, str]) -> tuple[str, dict[str, str]] | None:
        """The base URL and headers of the API that publishes this provider's input schemas,
        read from ``env`` (``catalog sync``); None (the default) where there is none, or it
        cannot be asked (no key)."""
        return None

    @classmethod
    def published_input(cls, api: Any, endpoint: str, version: str | None
                        ) -> tuple[dict[str, Any] | None, str]:
        """The input schema the :meth:`schema_api` publishes for ``endpoint`` (``version``: a
        pinned one) as stored (:func:`~modelglass.catalog._wire_schema.closed_schema`), or None,
        and where it was read (the stored ``source``). ``api.get(path, params)`` answers
        ``(status, body)`` and raises on a failure."""
        return None, ""

    # -- errors, bound to this provider's name and secrets (see ._errors) --------------------------
    def _wrong_shape(self, what: str, problem: str, body: Any = None) -> ProviderError:
        return wrong_shape(self.name, what, problem, body, self._secrets())

    def _refused(self, message: str, code: str | None) -> ContentRejected:
        return content_rejected(self.name, message, code)

    def _unknown(self, what: str, reason: str, **kw: Any) -> OutcomeUnknown:
        return outcome_unknown(self.name, what, reason, secrets=self._secrets(), **kw)

    def _http(self, status: int, **kw: Any) -> ProviderError:
        """:func:`~._errors.http_error` naming this provider's key variable."""
        return http_error(self.name, status, key_env=self.env_keys[0], secrets=self._secrets(),
                          **kw)

    def _unreachable(self, what: str, exc: BaseException) -> ProviderError:
        return connection_error(self.name, what, exc, self._secrets())

    # -- the contract -----------------------------------------------------------------------------
    @abstractmethod
    def build_payload(self, planned: Planned, offer: OfferView) -> tuple[dict[str, Any], dict[str, Fate]]:
        """The request body in the provider's own field names, for one call of ``planned``.

        Pure: no I/O. Returns the payload and any fates this provider changes from the planner's
        (e.g. size ``mapped`` to an ``image_size`` preset). Controls the offer cannot take must
        not appear in the payload.
        """

    @abstractmethod
    def job(self, call: ProviderCall, *, timeout_s: float, resume: str | None = None,
            on_submitted: Callable[[str], None] | None = None
            ) -> Generator[Step, Any, ProviderOutput]:
        """One planned call as a sans-I/O job: a generator of steps (:class:`Wire` calls on
        :meth:`wire` / :meth:`awire`, :class:`Wait`) that returns the :class:`ProviderOutput`
        and raises modelglass errors. ``timeout_s`` bounds the whole job. For :attr:`resumable`
        providers: ``resume`` polls the job with that id instead of submitting a new one, and
        ``on_submitted(request_id)`` is called as soon as the provider's id is known."""

    def cancel_job(self, call: ProviderCall, request_id: str) -> Generator[Step, Any, bool] | None:
        """Steps that cancel the job ``request_id`` (best effort), returning whether the provider
        confirmed it; None where nothing can be cancelled."""
        return None

    @abstractmethod
    def wire(self) -> Any:
        """The blocking object the :class:`Wire` steps of :meth:`job` run on."""

    @abstractmethod
    def awire(self) -> Any:
        """The awaiting object the :class:`Wire` steps of :meth:`job` run on (one per event
        loop where its client is bound to one)."""

    def cost_estimate(self, offer: OfferView, width: int, height: int, n: int,
                      steps: int | None) -> CostEstimate | None:
        """A provider-specific estimate (e.g. measured GPU-seconds), or None for the catalog's."""
        return None

    def close(self) -> None:
        """Release clients and connections."""

    async def aclose(self) -> None:
        """Release async clients and connections."""

    # -- outside a client: the job driven alone ---------------------------------------------------
    def generate(self, call: ProviderCall, *, timeout_s: float) -> ProviderOutput:
        """Run one planned call blocking: :meth:`job` driven step by step (no retries, no
        download; the client adds those)."""
        try:
            return run(self.job(call, timeout_s=timeout_s), None)
        except ModelglassError as err:
            raise detach(err)  # the client exception it replaced holds the request and its key

    async def agenerate(self, call: ProviderCall, *, timeout_s: float) -> ProviderOutput:
        """:meth:`generate`, awaiting each step."""
        try:
            return await arun(self.job(call, timeout_s=timeout_s), None)
        except ModelglassError as err:
            raise detach(err)
