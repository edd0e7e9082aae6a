"""The catalog's typed schema (pydantic v2). YAML files are validated against these classes.

Shape of a catalog directory::

    catalog/
      settings.yaml     formula version, $/GPU-hour for local offers, the provider list
      quality.yaml      the four quality axes: weights, minimums, target size, cost trade
      models/*.yaml     ``models: {id: Model}``; each model lists its offers

Unknown is a value: prices, scores, latencies and licence facts may be ``null`` and stay so.
"""

from __future__ import annotations

import datetime as dt
import math
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import _clock
from ._buckets import bucket_long_side

AXES = ("prompt_adherence", "photorealism", "text_rendering", "style_range", "composition",
        "speed", "resolution")

Axis = Literal["prompt_adherence", "photorealism", "text_rendering", "style_range", "composition",
               "speed", "resolution"]


class _Strict(BaseModel):
    # NaN and infinities are refused everywhere: a `.nan` price would switch budget limits off.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Status(str, Enum):
    active = "active"
    deprecated = "deprecated"
    retired = "retired"


class GuidanceKind(str, Enum):
    """How a model takes guidance: classifier-free (``true-cfg``), an embedded scale learned by
    guidance distillation (``distilled``), or not at all (``none``)."""

    true_cfg = "true-cfg"
    distilled = "distilled"
    none = "none"


class Evidence(_Strict):
    """One raw measurement behind a score. ``metric`` names what the formula reads."""

    metric: str
    value: float
    source: str
    date: str | None = None
    confidence: Literal["P", "S", "E", "K"] = "S"
    note: str | None = None


class Prior(_Strict):
    """A stated estimate for an axis with no evidence. Shown as *estimated*, never silently."""

    value: float = Field(ge=0, le=10)
    reason: str


class Lifecycle(_Strict):
    status: Status = Status.active
    released: dt.date | None = None
    deprecated_on: dt.date | None = None
    shutdown_on: dt.date | None = None
    replacement: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _retired_needs_replacement_or_reason(self) -> Lifecycle:
        if self.status is Status.deprecated and self.shutdown_on is None:
            # Allowed (some deprecations are open-ended), but keep the field explicit.
            pass
        return self

    def status_on(self, today: dt.date | None = None) -> Status:
        """The status on ``today`` (default: :func:`modelglass._clock.today`): a deprecated model
        whose ``shutdown_on`` has come is retired. Routing, ``catalog list``/``show`` and the HTML
        page all judge by this one status."""
        if (self.status is Status.deprecated and self.shutdown_on is not None
                and self.shutdown_on <= _clock.today(today)):
            return Status.retired
        return self.status


class Licence(_Strict):
    id: str
    open_weights: bool | None = None
    commercial_use: bool | None = None  # None = not verified; never passes commercial=True
    notes: str | None = None
    source: str | None = None


class Range(_Strict):
    min: float | None = None
    max: float | None = None
    default: float | None = None

    @model_validator(mode="after")
    def _order(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.default is not None:
            if self.min is not None and self.default < self.min:
                raise ValueError(f"default {self.default} is below min {self.min}")
            if self.max is not None and self.default > self.max:
                raise ValueError(f"default {self.default} is above max {self.max}")
        return self


class Guidance(Range):
    kind: GuidanceKind = GuidanceKind.none


class Controls(_Strict):
    """What a model (or an offer, where it differs) lets the caller set.

    ``negative_prompt``: "native" (true CFG), "true-cfg-extra" (honoured only by enabling a second
    pass that doubles cost, e.g. FLUX ``true_cfg_scale``), "none".
    """

    negative_prompt: Literal["native", "true-cfg-extra", "none"] | None = None
    guidance: Guidance | None = None
    steps: Range | None = None
    seed: bool | None = None
    samplers: list[str] | None = None
    max_prompt_chars: int | None = Field(default=None, gt=0)
    max_images_per_call: int | None = Field(default=None, ge=1)

    def merged(self, override: Controls | None) -> Controls:
        """These controls with every field the override sets replacing ours.

        Nested ranges merge field by field: an offer that sets ``guidance: {min: 0, max: 10}``
        keeps the model's guidance ``kind`` (and ``default`` unless it sets one).
        """
        if override is None:
            return self
        data = self.model_dump()
        for key, val in override.model_dump(exclude_unset=True).items():
            if val is None:
                continue
            if isinstance(val, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **val}
            else:
                data[key] = val
        return Controls.model_validate(data)


class Geometry(_Strict):
    """Which output sizes are possible.

    Either a fixed list (``sizes``), a fixed aspect-ratio table (``aspect_ratios``: ratio → the
    size it produces), or a free range (``multiple_of``, ``min_side``/``max_side``,
    ``min_megapixels``/``max_megapixels``, ``max_aspect``). ``default_size`` is what the
    provider does when told nothing.
    """

    sizes: list[str] | None = None
    aspect_ratios: dict[str, str] | None = None
    multiple_of: int | None = Field(default=None, ge=1)
    min_side: int | None = Field(default=None, ge=1)
    max_side: int | None = Field(default=None, ge=1)
    min_megapixels: float | None = Field(default=None, gt=0)
    max_megapixels: float | None = Field(default=None, gt=0)
    max_aspect: float | None = Field(default=None, ge=1)
    default_size: str | None = None
    native_megapixels: float | None = Field(default=None, gt=0)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            for s in v:
                _check_size(s)
        return v

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None:
            for ratio, size in v.items():
                if ":" not in ratio:
                    raise ValueError(f"aspect ratio key {ratio!r} must be W:H")
                _check_size(size)
        return v

    @model_validator(mode="after")
    def _sane(self) -> Geometry:
        if self.min_side and self.max_side and self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} is greater than max_side {self.max_side}")
        if self.min_megapixels and self.max_megapixels and self.min_megapixels > self.max_megapixels:
            raise ValueError("min_megapixels is greater than max_megapixels")
        if self.default_size:
            _check_size(self.default_size)
        return self

    def merged(self, override: Geometry | None) -> Geometry:
        if override is None:
            return self
        data = self.model_dump()
        set_fields = override.model_dump(exclude_unset=True)
        # A fixed list in the override replaces the model's free range entirely (the override
        # may still give its own range, e.g. an aspect table plus custom sizes).
        if set_fields.get("sizes") or set_fields.get("aspect_ratios"):
            data.update({k: None for k in ("sizes", "aspect_ratios", "multiple_of", "min_side",
                                           "max_side", "min_megapixels", "max_megapixels",
                                           "max_aspect")})
        data.update({k: v for k, v in set_fields.items() if v is not None})
        return Geometry.model_validate(data)

    def max_mp(self) -> float | None:
        """The largest output this geometry allows, in megapixels (10^6 pixels)."""
        cands: list[float] = []
        if self.sizes:
            cands += [_mp(s) for s in self.sizes]
        if self.aspect_ratios:
            cands += [_mp(s) for s in self.aspect_ratios.values()]
        if cands:
            return max(cands)
        if self.max_megapixels:
            return self.max_megapixels
        if self.max_side:
            return self.max_side * self.max_side / 1e6
        return None


def _check_size(s: str) -> None:
    parts = str(s).lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"size {s!r} must be WIDTHxHEIGHT, e.g. 1024x1024")


def _mp(s: str) -> float:
    w, h = (int(p) for p in s.lower().split("x"))
    return w * h / 1e6


class PriceKind(str, Enum):
    per_image = "per_image"
    per_megapixel = "per_megapixel"
    first_megapixel = "first_megapixel"
    per_image_resolution = "per_image_resolution"
    per_tier = "per_tier"
    per_token = "per_token"
    gpu_seconds = "gpu_seconds"
    unknown = "unknown"


class Price(_Strict):
    """How an offer is billed. One ``kind`` and the fields it needs; every number finite and ≥ 0.

    A billed megapixel (MP) is 1024×1024 pixels, as fal and Replicate bill it: a 1024² image is
    1 MP, 1536×1024 is 1.5 MP, 2048² is 4 MP. Each kind in YAML (``docs/catalog.md`` has more)::

        # per_image: usd per image, whatever the size
        price: {kind: per_image, usd: 0.003}

        # per_megapixel: usd_per_megapixel × output MP per image; whole MP (at least 1) when
        # round_up_megapixels is true, proportional otherwise
        price: {kind: per_megapixel, usd_per_megapixel: 0.025, round_up_megapixels: true}

        # first_megapixel: usd for the first MP + usd_per_extra_megapixel × each further MP
        # (FLUX.2 [pro] on fal: 2048² = 0.03 + 3 × 0.015 = 0.075). The extra MP are rounded up
        # to whole MP unless round_up_megapixels: false.
        price: {kind: first_megapixel, usd: 0.03, usd_per_extra_megapixel: 0.015}

        # per_image_resolution: usd × the multiplier of the output's resolution bucket (Gemini
        # image models). The bucket is the smallest whose long side holds the output's long
        # side: bucket "nK" holds up to n × 1584 px (1K: 1024², 1376×768 … 1584×672 at 21:9;
        # 2K: 2048²; 4K: 4096²), or give resolution_long_side: {1K: 1600, ...} explicitly.
        price: {kind: per_image_resolution, usd: 0.134,
                resolution_multipliers: {1K: 1.0, 2K: 1.0, 4K: 1.79}}

        # per_tier: tiers[tier][size] usd per image for a provider quality tier; a size missing
        # from the table is priced from the nearest listed size scaled by area (approximate).
        # tier_for_quality picks the tier from the job's quality axis; default_tier otherwise.
        price: {kind: per_tier, tiers: {low: {1024x1024: 0.011}, high: {1024x1024: 0.167}},
                tier_for_quality: {draft: low, hero: high}, default_tier: low}

        # per_token: token-priced (gpt-image-2). usd per 1M tokens for image output, text
        # input and image input; output_tokens[tier][size] = image-output tokens per image.
        # Estimate: n × output tokens × rate + prompt text tokens (ceil(chars / 4), once per
        # call) × text rate. A size missing from the table uses the nearest listed size's
        # count (counts do not follow area), flagged approximate. The actual cost of a result
        # comes from the reply's `usage` (see modelglass.catalog.cost_from_usage).
        price: {kind: per_token, usd_per_1m_image_output_tokens: 30,
                usd_per_1m_text_input_tokens: 5, usd_per_1m_image_input_tokens: 8,
                output_tokens: {low: {1024x1024: 200, 1536x1024: 167},
                                medium: {1024x1024: 1767, 1536x1024: 1367},
                                high: {1024x1024: 7033, 1536x1024: 5500}},
                tier_for_quality: {draft: low, thumbnail: low, hero: medium, print: high},
                default_tier: medium}

        # gpu_seconds: seconds of GPU time per image at at_megapixels (10^6 px) and at_steps,
        # scaled linearly in megapixels and steps, × the catalog's $/GPU-hour (settings.yaml)
        price: {kind: gpu_seconds, seconds: 23.0, at_megapixels: 1.048576, at_steps: 50}

        # free: true marks a $0 price as intended (catalog sync refuses $0 for any other offer)
        price: {kind: per_image, usd: 0, free: true}

        # unknown: no price is known. Never treated as free; say why in note
        price: {kind: unknown, note: "not published"}

    Every estimate also carries ``max_usd``, an upper bound for budget reservations (see
    :class:`~modelglass.catalog.CostEstimate`).
    """

    kind: PriceKind
    usd: float | None = Field(default=None, ge=0)
    usd_per_megapixel: float | None = Field(default=None, ge=0)
    usd_per_extra_megapixel: float | None = Field(default=None, ge=0)
    round_up_megapixels: bool | None = None
    resolution_multipliers: dict[str, float] | None = None
    resolution_long_side: dict[str, int] | None = None
    tiers: dict[str, dict[str, float]] | None = None
    output_tokens: dict[str, dict[str, int]] | None = None
    usd_per_1m_image_output_tokens: float | None = Field(default=None, ge=0)
    usd_per_1m_text_input_tokens: float | None = Field(default=None, ge=0)
    usd_per_1m_image_input_tokens: float | None = Field(default=None, ge=0)
    #: text the model writes besides the image (a reply's ``output_tokens_details.text_tokens``);
    #: unset: those tokens are priced at the image-output rate (never lower than the bill)
    usd_per_1m_text_output_tokens: float | None = Field(default=None, ge=0)
    tier_for_quality: dict[str, str] | None = None
    default_tier: str | None = None
    seconds: float | None = Field(default=None, gt=0)
    at_megapixels: float = Field(default=1.048576, gt=0)
    at_steps: int | None = Field(default=None, ge=1)
    #: true: the offer is free by design ($0 is its real price); ``catalog sync`` writes a $0
    #: price only for such an offer
    free: bool | None = None
    #: what the provider bills per second of run time, for an offer billed by time (a Replicate
    #: community model: its hardware's price); the price above estimates it per image, and
    #: ``catalog verify`` checks that estimate against ``metrics.predict_time`` × this rate
    usd_per_second: float | None = Field(default=None, gt=0)
    note: str | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Price:
        need = {
            PriceKind.per_image: ["usd"],
            PriceKind.per_megapixel: ["usd_per_megapixel"],
            PriceKind.first_megapixel: ["usd", "usd_per_extra_megapixel"],
            PriceKind.per_image_resolution: ["usd", "resolution_multipliers"],
            PriceKind.per_tier: ["tiers"],
            PriceKind.per_token: ["usd_per_1m_image_output_tokens", "output_tokens"],
            PriceKind.gpu_seconds: ["seconds"],
            PriceKind.unknown: [],
        }[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"price kind {self.kind.value} needs {', '.join(missing)}")
        tables = self.tiers if self.kind is PriceKind.per_tier else \
            self.output_tokens if self.kind is PriceKind.per_token else None
        what = "tiers" if self.kind is PriceKind.per_tier else "output_tokens"
        if tables is not None:
            if not tables:
                raise ValueError(f"{what} must list at least one tier")
            for tier, table in tables.items():
                if not table:
                    raise ValueError(f"{what}.{tier}: list at least one size")
                for size, value in table.items():
                    _check_size(size)
                    if value < 0:
                        raise ValueError(f"{what}.{tier}.{size}: must be ≥ 0")
            for q, tier in (self.tier_for_quality or {}).items():
                if tier not in tables:
                    raise ValueError(f"tier_for_quality.{q}: tier {tier!r} is not in {what}")
            if self.default_tier and self.default_tier not in tables:
                raise ValueError(f"default_tier {self.default_tier!r} is not in {what}")
        if self.resolution_multipliers is not None:
            if not self.resolution_multipliers:
                raise ValueError("resolution_multipliers must list at least one bucket")
            for name, mult in self.resolution_multipliers.items():
                if mult < 0:
                    raise ValueError(f"resolution_multipliers.{name}: must be ≥ 0")
                bucket_long_side(name, self.resolution_long_side)
        for name, side in (self.resolution_long_side or {}).items():
            if side < 1:
                raise ValueError(f"resolution_long_side.{name}: must be ≥ 1")
        return self


class Latency(_Strict):
    p50_s: float | None = Field(default=None, gt=0)
    p95_s: float | None = Field(default=None, gt=0)
    source: str | None = None
    note: str | None = None


#: The provider whose offers run their weights in this process (Hugging Face diffusers on this
#: machine's GPU): a kind of offer as much as a name. Code outside ``providers/`` asks
#: :attr:`Offer.runs_here` (or compares a user's provider name with this), never the literal.
LOCAL = "local"


class Offer(_Strict):
    """A model served by a provider, with the provider's own limits and price."""

    provider: str
    endpoint: str
    id: str | None = None  # defaults to "model@provider"; set it when one provider has two offers
    price: Price
    as_of: dt.date
    source: str
    latency: Latency | None = None
    controls: Controls | None = None
    geometry: Geometry | None = None
    wire: dict[str, str] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    pipeline: str | None = None  # local only: the diffusers pipeline class
    notes: str | None = None

    def key(self, model_id: str) -> str:
        return self.id or f"{model_id}@{self.provider}"

    @property
    def runs_here(self) -> bool:
        """True for an offer whose weights run in this process (:data:`LOCAL`): it names a
        diffusers ``pipeline`` and a Hugging Face repo as its endpoint, and costs GPU time, not
        a provider's bill."""
        return self.provider == LOCAL


class Model(_Strict):
    """One image model: who made it, what it can do (with evidence), and who serves it."""

    name: str
    family: str
    architecture: str | None = None
    training: str | None = None
    licence: Licence
    lifecycle: Lifecycle = Lifecycle()
    evidence: list[Evidence] = Field(default_factory=list)
    priors: dict[Axis, Prior] = Field(default_factory=dict)
    controls: Controls
    geometry: Geometry
    offers: list[Offer] = Field(default_factory=list)
    notes: str | None = None


class QualityAxis(_Strict):
    """One quality axis as data: what matters for this kind of job and what it may cost.

    - ``weights``: capability axis → weight (normalised when used).
    - ``minimums``: capability axis → hard minimum score (an unknown score fails it).
    - ``target_size``: the size asked of the provider when the request gives no geometry.
    - ``min_megapixels``: hard floor on the offer's largest output.
    - ``cost_weight``: 0 = quality only, 1 = cost only; ``cost_reference_usd`` is the per-image
      price that scores 0.5 on the cost scale.
    - ``max_cost_usd``: a default per-image ceiling when the request gives none (None = no ceiling).
    - ``unknown_score``: what an unknown capability counts as in the weighted sum (shown in the
      explanation, never silent).
    """

    description: str
    weights: dict[Axis, float]
    minimums: dict[Axis, float] = Field(default_factory=dict)
    target_size: str = "1024x1024"
    min_megapixels: float | None = None
    cost_weight: float = Field(ge=0, le=1)
    cost_reference_usd: float = Field(gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    unknown_score: float = Field(default=3.0, ge=0, le=10)
    dpi: int = 300

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if not v or any(w < 0 for w in v.values()) or not math.isfinite(sum(v.values())) or sum(v.values()) <= 0:
            raise ValueError("weights must be ≥ 0 and not all zero")
        return v

    @field_validator("target_size")
    @classmethod
    def _target(cls, v: str) -> str:
        _check_size(v)
        return v


class Settings(_Strict):
    formula_version: int = 1
    gpu_hour_usd: float = Field(default=2.0, gt=0)
    providers: dict[str, str] = Field(default_factory=dict)  # id → description
    sources: dict[str, str] = Field(default_factory=dict)  # source id → citation
    as_of: dt.date | None = None
