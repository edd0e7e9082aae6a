"""What a call gives back: :class:`Fate`, :class:`GeneratedImage`, :class:`ImageResult`, :class:`Attempt`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from ._provenance import save_image
from ._result_json import result_dict

if TYPE_CHECKING:
    from .checks import CheckResult
    from .plan import ProviderCall
    from .routing import RoutingDecision

__all__ = ["Attempt", "Fate", "FateKind", "GeneratedImage", "ImageResult", "Missing"]


class FateKind(StrEnum):
    """What happened to one requested control on its way to the provider.

    - ``honored``: sent as asked, under the provider's own name for it.
    - ``mapped``: sent in another form with the same effect (size → ``image_size`` preset).
    - ``approximated``: sent, but changed (aspect off by 1.3 %, steps clamped to 50).
    - ``dropped``: not sent; ``reason`` says why.
    """

    honored = "honored"
    mapped = "mapped"
    approximated = "approximated"
    dropped = "dropped"


@dataclass(frozen=True)
class Fate:
    """The fate of one requested control: what was asked, what was sent, and why."""

    control: str
    kind: FateKind
    requested: Any = None
    applied: Any = None
    reason: str = ""
    delta: str | None = None

    @property
    def faithful(self) -> bool:
        """True when the control reached the provider with its meaning intact."""
        return self.kind in (FateKind.honored, FateKind.mapped)

    def __str__(self) -> str:
        text = f"{self.control}: {self.kind.value}"
        if self.kind is not FateKind.dropped and self.applied is not None and self.applied != self.requested:
            text += f" → {self.applied!r}"
        if self.delta:
            text += f" ({self.delta})"
        if self.reason:
            text += f" — {self.reason}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"control": self.control, "kind": self.kind.value, "requested": _plain(self.requested),
                "applied": _plain(self.applied), "reason": self.reason, "delta": self.delta}


def _plain(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, tuple):
        return list(v)
    return v


@dataclass
class GeneratedImage:
    """One image: its bytes and what is known about them.

    ``metadata`` holds the provenance written by :meth:`save` (request, plan, fates, model,
    provider, seed, cost, timings).
    """

    data: bytes
    mime: str
    width: int
    height: int
    seed: int | None = None
    index: int = 0
    sha256: str = ""
    simulated: bool = False
    c2pa: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.data).hexdigest()

    def __repr__(self) -> str:
        return (f"GeneratedImage({self.width}x{self.height} {self.mime}, seed={self.seed}, "
                f"sha256={self.sha256[:12]}…, {len(self.data)} bytes)")

    def save(self, path: Any, *, overwrite: bool = False) -> Any:
        """Write the image as PNG with provenance embedded (see :mod:`modelglass._provenance`).

        Returns the path written. If the provider's bytes carry C2PA credentials, they are kept
        byte for byte and the provenance goes to a ``.json`` sidecar instead. An existing file is
        never replaced unless ``overwrite=True``; a folder as ``path`` saves inside it.
        """
        return save_image(self, path, overwrite=overwrite)

    def to_pil(self) -> Any:
        """Open the bytes with Pillow."""
        import io

        from PIL import Image

        return Image.open(io.BytesIO(self.data))


@dataclass
class Attempt:
    """One provider try: which offer and chunk, how long, what it cost, and its error if it failed.

    ``number`` counts tries of the same provider call (1 = first try, 2 = first retry);
    ``chunk`` says which of the ``chunks`` provider calls of ``n`` it was (0-based), so the calls
    of one ``n`` are not mistaken for retries. ``cost_usd`` is what this try was charged to the
    budget (None: nothing was charged); ``possibly_charged`` marks a try whose outcome is unknown
    (the provider may have billed it). ``request_id`` and ``urls`` name the paid job and its
    images; ``retry_after`` is the wait the provider asked for, in seconds.
    """

    number: int
    model: str
    provider: str
    offer_id: str
    started_at: float
    duration_s: float = 0.0
    error: str | None = None
    error_type: str | None = None
    status: int | None = None
    retryable: bool | None = None
    chunk: int = 0
    chunks: int = 1
    retry_after: float | None = None
    request_id: str | None = None
    urls: tuple[str, ...] = field(default=(), repr=False)  # signed URLs: never in a repr
    cost_usd: float | None = None
    cost_is_estimate: bool = False
    possibly_charged: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view. URLs lose their query string: signed URLs carry tokens there
        (``urls`` on the attempt itself keeps them, to fetch a paid image)."""
        d = dict(self.__dict__)
        d["urls"] = [u.split("?", 1)[0] for u in self.urls]
        return d


@dataclass(frozen=True)
class Missing:
    """Images asked for but not delivered: ``count`` images of provider call ``chunk`` and why.

    ``paid`` says whether the provider was (or may have been) paid for them.
    """

    chunk: int
    count: int
    reason: str
    error_type: str | None = None
    paid: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ImageResult:
    """The outcome of ``generate``: images plus everything needed to explain them."""

    images: list[GeneratedImage]
    model: str
    provider: str
    cost_usd: float | None
    cost_is_estimate: bool
    latency_s: float
    fates: list[Fate]
    decision: RoutingDecision | None = None
    attempts: list[Attempt] = field(default_factory=list)
    plan: ProviderCall | None = None
    simulated: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: True when fewer images came back than asked for; ``missing`` says which and why.
    partial: bool = False
    missing: list[Missing] = field(default_factory=list)
    #: The job's id (``generate(job_id=...)``, else generated), as in its events.
    job_id: str | None = None
    #: The outcome checks of ``images`` (``generate(check=...)``; ``CheckResult.image`` says
    #: which image); empty when no check ran.
    checks: list[CheckResult] = field(default_factory=list)
    #: Images paid for but not returned: earlier tries that failed a check (``on_fail``), each
    #: with its checks in ``metadata["checks"]``.
    rejected: list[GeneratedImage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: model, provider, offer, cost, fates, attempts, timings and each
        image's size, seed (as sent) and sha256 — no image bytes.

        >>> json.dumps(result.to_dict())                  # doctest: +SKIP
        """
        return result_dict(self)

    def __repr__(self) -> str:
        cost = "unknown" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        if self.cost_is_estimate and self.cost_usd is not None:
            cost += " (estimate)"
        more = f", {sum(m.count for m in self.missing)} missing" if self.partial else ""
        decision = self.decision
        quality = (f", quality: {decision.quality} (default)"
                   if decision is not None and decision.quality_defaulted else "")
        return (f"ImageResult({len(self.images)} image(s) from {self.model}@{self.provider}"
                f"{quality}, cost {cost}, {self.latency_s:.2f}s{more})")
