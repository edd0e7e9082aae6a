"""Planning: request × offer → :class:`ProviderCall` (payload, fates, cost estimate). No I/O.

(The planner implementation is being written; the data shapes below are fixed.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import CostEstimate, OfferView
    from .request import ImageRequest
    from .result import Fate


@dataclass(frozen=True)
class Planned:
    """The request normalised for one offer, provider-independent. Providers read only this.

    A field that is None must not be sent. ``seeds[i]`` is image i's seed (seed + i);
    ``width``/``height`` are already snapped to what the offer allows.
    """

    prompt: str
    width: int
    height: int
    n: int
    negative_prompt: str | None = None
    guidance: float | None = None          # true-cfg scale or distilled embedded guidance
    true_cfg: float | None = None          # FLUX-style true CFG second pass (negative prompt)
    steps: int | None = None
    seeds: tuple[int, ...] | None = None   # None: the offer does not honour seeds
    sampler: str | None = None             # unified sampler name (local backend)
    aspect_ratio: str | None = None        # set when the offer takes a ratio, e.g. "16:9"
    tier: str | None = None                # provider quality tier (gpt-image "low"/"medium"/"high")
    output_format: str = "png"
    options: dict[str, Any] = field(default_factory=dict)  # request.provider_options[provider]
    quality: str = "hero"


@dataclass
class ProviderCall:
    """One planned provider call: what will be sent, what happened to each control, and the cost.

    ``payload`` is the body in the provider's own field names for the first chunk of images;
    ``chunks`` splits ``n`` by the offer's ``max_images_per_call`` (the client loops, not the
    provider).
    """

    request: ImageRequest
    offer: OfferView
    planned: Planned
    payload: dict[str, Any]
    fates: list[Fate]
    estimate: CostEstimate
    seed_drawn: bool = False
    chunks: list[int] = field(default_factory=lambda: [1])
    upscale: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.offer.model_id

    @property
    def provider(self) -> str:
        return self.offer.provider
