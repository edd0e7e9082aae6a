"""Planning: request × offer → :class:`ProviderCall` (payload, fates, cost estimate). No I/O.

The planner is provider-independent. It reads the offer's controls and geometry from the catalog,
decides what happens to every control the request sets (one :class:`~modelglass.result.Fate`
each), snaps the geometry, draws a seed when none was given, and estimates the cost. The provider
module then writes the payload in its own field names (``Provider.build_payload``) and may refine
a fate (e.g. size ``mapped`` to an ``image_size`` preset).

>>> import modelglass as mg
>>> req = mg.ImageRequest(prompt="a fox", size="1536x1024", seed=7)
>>> call = mg.Catalog.default().offer("flux-dev@fal")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._encoders import prompt_cut, window_for
from ._plan_geometry import SizeChoice, geometry_fits, plan_geometry, snap_size
from ._wire_fit import fit_call, images_per_call, schema_of
from ._wire_fit import seed_max as _seed_max
from .catalog import CostEstimate
from .catalog._schema import GuidanceKind, PriceKind
from .catalog._view import OfferNamed
from .errors import InvalidRequest
from .providers import create_provider
from .request import SEED_MAX
from .result import Fate, FateKind

if TYPE_CHECKING:
    from .catalog import OfferView
    from .providers.base import Provider
    from .request import ImageRequest

__all__ = ["TRUE_CFG_DEFAULT", "Planned", "ProviderCall", "SizeChoice", "estimate_unfitted",
           "geometry_fits", "plan_call", "snap_size"]

#: The true-CFG scale used when a negative prompt needs a second pass (FLUX ``true_cfg_scale``).
TRUE_CFG_DEFAULT = 4.0


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

    def chunk(self, start: int, count: int) -> Planned:
        """The same plan for images ``start .. start+count-1`` (one provider call)."""
        if start == 0 and count == self.n:
            return self  # frozen: the whole plan is its own first chunk
        seeds = self.seeds[start:start + count] if self.seeds else None
        return replace(self, n=count, seeds=seeds)


@dataclass
class ProviderCall(OfferNamed):
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

    def fate(self, control: str) -> Fate | None:
        return next((f for f in self.fates if f.control == control), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: what a dry run shows."""
        return {
            "model": self.model, "provider": self.provider, "offer": self.offer.key,
            "endpoint": self.offer.endpoint, "payload": self.payload,
            "size": f"{self.planned.width}x{self.planned.height}", "n": self.planned.n,
            "chunks": self.chunks, "seeds": list(self.planned.seeds) if self.planned.seeds else None,
            "seed_drawn": self.seed_drawn,
            "fates": [f.to_dict() for f in self.fates],
            "estimate": {"usd": self.estimate.usd, "per_image_usd": self.estimate.per_image_usd,
                         "basis": self.estimate.basis, "approximate": self.estimate.approximate,
                         "tier": self.estimate.tier},
            "upscale": self.upscale, "notes": self.notes,
        }


# -- geometry -------------------------------------------------------------------------------------
# -- the planner ----------------------------------------------------------------------------------
_PAYLOAD_PROVIDERS: dict[str, Provider] = {}


def _payload_provider(name: str) -> Provider | None:
    """A provider instance used only to build payloads (pure; needs no key)."""
    if name not in _PAYLOAD_PROVIDERS:
        try:
            _PAYLOAD_PROVIDERS[name] = create_provider(name)
        except Exception:  # noqa: BLE001 - a provider module that cannot be built still gets a generic payload
            return None
    return _PAYLOAD_PROVIDERS[name]


def plan_call(request: ImageRequest, offer: OfferView, *, provider: Provider | None = None,
              rng: random.Random | None = None, today: dt.date | None = None) -> ProviderCall:
    """Plan ``request`` on ``offer``: one fate per requested control, snapped geometry, seeds and
    the cost estimate; the payload in the provider's own field names.

    A model retired on ``today`` (default: :func:`modelglass._clock.today`; a deprecated model
    past its shutdown date is retired) is refused, as routing refuses it.

    Raises :class:`InvalidRequest` when ``request.strict`` and a control would be approximated
    or dropped, naming each one and what the offer allows instead.
    """
    _refuse_retired(offer, today)
    schema = schema_of(offer)  # the endpoint's published input schema (catalog/schemas)
    c = offer.controls
    fates: dict[str, Fate] = {}
    notes: list[str] = []
    quality = str(request.quality)
    options = dict(request.provider_options.get(offer.provider, {}))

    prompt = _plan_prompt(request, offer, fates)
    guidance, kind = _plan_cfg(request, offer, fates)
    negative, true_cfg = _plan_negative(request, offer, fates, guidance, kind)
    steps = _plan_steps(request, offer, fates)
    n = request.n
    seeds, seed_drawn = _plan_seeds(request, offer, schema, fates, rng)

    # geometry
    width, height, ratio, upscale = plan_geometry(request, offer, fates, quality)

    # n: split by the offer's images-per-call limit; the client loops over the chunks
    per_call = images_per_call(offer, schema, c.max_images_per_call or 1)
    chunks = [min(per_call, n - i) for i in range(0, n, per_call)]
    if request.n != 1:
        if len(chunks) == 1:
            fates["n"] = Fate("n", FateKind.honored, n, n)
        else:
            fates["n"] = Fate("n", FateKind.mapped, n, chunks,
                              f"{offer.key} makes at most {per_call} per call; split into "
                              f"{len(chunks)} calls")

    sampler = _plan_sampler(request, offer, fates)

    # provider quality tier (priced per tier)
    tier = _plan_tier(offer, options, quality)
    output_format = str(options.pop("output_format", "png"))

    planned = Planned(prompt=prompt, width=width, height=height, n=n, negative_prompt=negative,
                      guidance=guidance, true_cfg=true_cfg, steps=steps, seeds=seeds,
                      sampler=sampler, aspect_ratio=ratio, tier=tier, output_format=output_format,
                      options=options, quality=quality)
    estimate = _plan_estimate(offer, planned, provider)
    payload, planned, estimate = _plan_payload(request, offer, schema, planned, chunks, fates,
                                               notes, estimate, provider)

    ordered = [fates[k] for k in request.requested_controls() if k in fates]
    if request.strict:
        _refuse_unfaithful(offer, ordered)
    return ProviderCall(request=request, offer=offer, planned=planned, payload=payload,
                        fates=ordered, estimate=estimate, seed_drawn=seed_drawn, chunks=chunks,
                        upscale=upscale, notes=notes)


def estimate_unfitted(request: ImageRequest, offer: OfferView, *,
                      provider: Provider | None = None) -> CostEstimate | None:
    """The estimate :func:`plan_call` gives ``request`` on ``offer``, or less, without building
    the payload: the same prompt, steps, geometry and tier, before the true-CFG doubling (which
    only adds). None where the payload step may still move the size (the endpoint publishes an
    input schema) or planning refuses. Routing bounds an offer's cost score with it."""
    if schema_of(offer) is not None:
        return None
    try:
        fates: dict[str, Fate] = {}
        prompt = _plan_prompt(request, offer, fates)
        steps = _plan_steps(request, offer, fates)
        quality = str(request.quality)
        width, height, _, _ = plan_geometry(request, offer, fates, quality)
        tier = _plan_tier(offer, dict(request.provider_options.get(offer.provider, {})), quality)
        estimate = provider.cost_estimate(offer, width, height, request.n, steps) \
            if provider else None
        if estimate is None:
            estimate = offer.estimate_cost(width, height, request.n, steps=steps,
                                           quality=quality, tier=tier, prompt=prompt)
    except Exception:  # noqa: BLE001 - no bound then: the planner says what is wrong
        return None
    per = estimate.per_image_usd
    return None if per is not None and per < 0 else estimate  # doubling a credit lowers it


def _plan_tier(offer: OfferView, options: dict[str, Any], quality: str) -> str | None:
    """The provider quality tier (priced per tier or token); pops ``quality`` from ``options``."""
    price = offer.offer.price
    if price.kind in (PriceKind.per_tier, PriceKind.per_token):
        return options.pop("quality", None) or (price.tier_for_quality or {}).get(quality) \
            or price.default_tier or next(iter(price.tiers or price.output_tokens or {"": {}}))
    return None


def _plan_prompt(request: ImageRequest, offer: OfferView, fates: dict[str, Fate]) -> str:
    """The prompt, cut to the offer's character limit (approximated) or checked against its
    text encoder's window."""
    c = offer.controls
    prompt = request.prompt
    if c.max_prompt_chars and len(prompt) > c.max_prompt_chars:
        fates["prompt"] = Fate("prompt", FateKind.approximated, len(prompt), c.max_prompt_chars,
                               f"{offer.key} takes at most {c.max_prompt_chars} characters",
                               f"truncated from {len(prompt)} to {c.max_prompt_chars} characters")
        prompt = prompt[: c.max_prompt_chars]
    else:
        fates["prompt"] = (_encoder_fate(prompt, offer)
                           or Fate("prompt", FateKind.honored, None, None))
    return prompt


def _plan_cfg(request: ImageRequest, offer: OfferView,
              fates: dict[str, Fate]) -> tuple[float | None, GuidanceKind]:
    """The guidance scale to send (the offer's default, or ``cfg`` clamped) and its kind."""
    c = offer.controls
    g = c.guidance
    kind = g.kind if g else GuidanceKind.none
    guidance: float | None = None
    if g is not None and kind is not GuidanceKind.none and (g.min is not None or g.max is not None
                                                            or g.default is not None):
        guidance = g.default
    if request.cfg is not None:
        if g is None or kind is GuidanceKind.none or (g.min is None and g.max is None
                                                       and g.default is None):
            why = ("the model takes no guidance (it is distilled to run without it)"
                   if g is not None and kind is GuidanceKind.none else
                   f"{offer.key} does not expose guidance")
            fates["cfg"] = Fate("cfg", FateKind.dropped, request.cfg, None, why)
        else:
            value = _clamp(request.cfg, g.min, g.max)
            if kind is GuidanceKind.distilled:
                fates["cfg"] = Fate("cfg", FateKind.mapped if value == request.cfg else FateKind.approximated,
                                    request.cfg, value,
                                    "sent as the embedded (distilled) guidance scale, not classifier-free guidance",
                                    None if value == request.cfg else f"clamped to {g.min:g}..{g.max:g}")
            else:
                fates["cfg"] = _clamp_fate("cfg", request.cfg, value, "g", lambda: (
                    f"{offer.key} takes guidance {g.min:g}..{g.max:g}"))
            guidance = value
    return guidance, kind


def _plan_negative(request: ImageRequest, offer: OfferView, fates: dict[str, Fate],
                   guidance: float | None,
                   kind: GuidanceKind) -> tuple[str | None, float | None]:
    """The negative prompt to send, and the true-CFG scale when the offer needs a second pass."""
    c = offer.controls
    negative: str | None = None
    true_cfg: float | None = None
    if request.negative_prompt is not None:
        mode = c.negative_prompt
        if mode == "native":
            if kind is GuidanceKind.true_cfg and guidance is not None and guidance <= 1:
                fates["negative_prompt"] = Fate(
                    "negative_prompt", FateKind.dropped, request.negative_prompt, None,
                    f"guidance {guidance:g} ≤ 1 turns classifier-free guidance off, so a negative "
                    "prompt has no effect; raise cfg above 1 to use it")
            else:
                negative = request.negative_prompt
                fates["negative_prompt"] = Fate("negative_prompt", FateKind.honored,
                                                request.negative_prompt, request.negative_prompt)
        elif mode == "true-cfg-extra":
            negative = request.negative_prompt
            true_cfg = TRUE_CFG_DEFAULT
            fates["negative_prompt"] = Fate(
                "negative_prompt", FateKind.mapped, request.negative_prompt, request.negative_prompt,
                f"honoured through true CFG (true_cfg_scale={TRUE_CFG_DEFAULT:g}): a second "
                "denoiser pass per step, so it costs about twice as much")
        else:
            why = ("the model has no negative prompt" if mode == "none"
                   else f"{offer.key} is not known to accept a negative prompt")
            fates["negative_prompt"] = Fate("negative_prompt", FateKind.dropped,
                                            request.negative_prompt, None, why)
    return negative, true_cfg


def _plan_steps(request: ImageRequest, offer: OfferView, fates: dict[str, Fate]) -> int | None:
    """The number of steps to send: the offer's default, or ``steps`` clamped to its range."""
    steps: int | None = None
    s = offer.controls.steps
    if s is not None and s.default is not None:
        steps = int(s.default)
    if request.steps is not None:
        if s is None or (s.min is None and s.max is None and s.default is None):
            fates["steps"] = Fate("steps", FateKind.dropped, request.steps, None,
                                  f"{offer.key} does not expose the number of steps")
            steps = None
        else:
            value = int(_clamp(request.steps, s.min, s.max))
            fates["steps"] = _clamp_fate("steps", request.steps, value, "", lambda: (
                f"{offer.key} takes {s.min:g}..{s.max:g} steps"))
            steps = value
    return steps


def _plan_seeds(request: ImageRequest, offer: OfferView, schema: Any, fates: dict[str, Fate],
                rng: random.Random | None) -> tuple[tuple[int, ...] | None, bool]:
    """Image i's seed is seed + i (drawn when not given, wrapped to the schema's range); and
    whether the seed was drawn."""
    c = offer.controls
    seeds: tuple[int, ...] | None = None
    seed_drawn = False
    n = request.n
    if c.seed:
        seed_max = _seed_max(schema, SEED_MAX)
        base = request.seed
        if base is None:
            base = (rng or random.SystemRandom()).randrange(0, seed_max + 1)
            seed_drawn = True
        elif base > seed_max:
            base %= seed_max + 1
            fates["seed"] = Fate("seed", FateKind.mapped, request.seed, base,
                                 f"{offer.endpoint} takes seeds 0..{seed_max} ({offer.provider}'s "
                                 "published schema)", f"wrapped to {request.seed} mod {seed_max + 1}")
        seeds = tuple((base + i) % (seed_max + 1) for i in range(n))
        if request.seed is not None and "seed" not in fates:
            fates["seed"] = Fate("seed", FateKind.honored, request.seed, request.seed)
    elif request.seed is not None:
        why = ("the provider has no seed parameter, so results are not reproducible"
               if c.seed is False else "seed support on this offer is unverified; not sent")
        fates["seed"] = Fate("seed", FateKind.dropped, request.seed, None, why)
    return seeds, seed_drawn


def _plan_sampler(request: ImageRequest, offer: OfferView, fates: dict[str, Fate]) -> str | None:
    """The unified sampler name, when the offer lists it."""
    c = offer.controls
    sampler: str | None = None
    if request.sampler is not None:
        wanted = request.sampler.value
        if c.samplers and wanted in c.samplers:
            sampler = wanted
            fates["sampler"] = Fate("sampler", FateKind.honored, wanted, wanted)
        else:
            why = (f"not available on {offer.key} (available: {', '.join(c.samplers)})" if c.samplers
                   else f"{offer.key} does not let the caller choose a sampler")
            fates["sampler"] = Fate("sampler", FateKind.dropped, wanted, None, why)
    return sampler


def _plan_estimate(offer: OfferView, planned: Planned, provider: Provider | None) -> CostEstimate:
    """The cost of the whole call (the provider's estimate first), doubled for a true-CFG pass
    on GPU-second prices."""
    width, height, n, steps = planned.width, planned.height, planned.n, planned.steps
    price = offer.offer.price
    estimate = provider.cost_estimate(offer, width, height, n, steps) if provider else None
    if estimate is None:
        estimate = offer.estimate_cost(width, height, n, steps=steps, quality=planned.quality,
                                       tier=planned.tier, prompt=planned.prompt)
    if planned.true_cfg is not None and estimate.usd is not None \
            and price.kind is PriceKind.gpu_seconds:
        estimate = CostEstimate(estimate.usd * 2, (estimate.per_image_usd or 0) * 2,
                                estimate.basis + " × 2 (true-CFG second pass)", estimate.approximate,
                                estimate.tier, max_usd=(estimate.max_usd or estimate.usd) * 2,
                                offer=estimate.offer)
    return estimate


def _plan_payload(request: ImageRequest, offer: OfferView, schema: Any, planned: Planned,
                  chunks: list[int], fates: dict[str, Fate], notes: list[str],
                  estimate: CostEstimate,
                  provider: Provider | None) -> tuple[dict[str, Any], Planned, CostEstimate]:
    """The payload, in the provider's own names, for the first chunk; fitted to the endpoint's
    schema (which may move the size, and so the estimate)."""
    width, height, n, steps = planned.width, planned.height, planned.n, planned.steps
    quality, tier, prompt = planned.quality, planned.tier, planned.prompt
    builder = provider or _payload_provider(offer.provider)
    if builder is not None:
        payload, overrides = builder.build_payload(planned.chunk(0, chunks[0]), offer)
        for control, fate in overrides.items():
            # A provider's word replaces the planner's only when it is no more faithful: a size
            # already approximated stays approximated even if the provider sends it as a preset.
            if control in fates and _SEVERITY[fate.kind] >= _SEVERITY[fates[control].kind]:
                fates[control] = fate
        payload, planned = fit_call(request, offer, schema, planned, payload, fates, notes)
        if (planned.width, planned.height) != (width, height):  # the schema moved the size
            refit = (provider.cost_estimate(offer, planned.width, planned.height, n, steps)
                     if provider else None)
            estimate = refit or offer.estimate_cost(planned.width, planned.height, n,
                                                    steps=steps, quality=quality, tier=tier,
                                                    prompt=prompt)
    else:
        payload = {"prompt": prompt, "width": width, "height": height, "n": chunks[0]}
        notes.append(f"provider module {offer.provider!r} unavailable; payload is generic")
    return payload, planned, estimate


def _refuse_unfaithful(offer: OfferView, ordered: list[Fate]) -> None:
    """strict=True: refuse when any control would be approximated or dropped."""
    bad = [f for f in ordered if not f.faithful]
    if bad:
        raise InvalidRequest(
            f"strict=True: {offer.key} cannot take this request as asked: "
            + "; ".join(str(f) for f in bad)
            + ". Change those controls, pick another model, or set strict=False to accept.",
            field=bad[0].control)


def _refuse_retired(offer: OfferView, today: dt.date | None = None) -> None:
    """A retired model is served by no provider any more (catalog lifecycle, judged on
    ``today``): refuse to plan it, naming the replacement, before anything is sent."""
    life = offer.model.lifecycle
    if life.status_on(today).value != "retired":
        return
    when = f" on {life.shutdown_on}" if life.shutdown_on else ""
    repl = (f" Use {life.replacement!r} instead (model={life.replacement!r})."
            if life.replacement else " Pick a current model.")
    raise InvalidRequest(f"{offer.model_id} ({offer.key}) was retired{when}; {offer.provider} no "
                         f"longer serves it, so nothing was sent.{repl}", field="model")


def _encoder_fate(prompt: str, offer: OfferView) -> Fate | None:
    """``approximated`` when the model's text encoder reads only the start of the prompt: the
    provider takes it whole, but the words past the encoder's window never reach the model."""
    window = window_for(offer.model_id, offer.model.family)
    if window is None or len(prompt) <= window.tokens:  # a token is at least one character
        return None
    cut = prompt_cut(prompt, window)
    if not cut.cut:
        return None
    last = prompt[max(0, cut.at_char - 24):cut.at_char].strip()
    return Fate("prompt", FateKind.approximated, f"{len(prompt)} characters",
                f"the first {cut.at_char} characters",
                f"{offer.model_id}'s text encoder ({window.encoder}) reads about {window.tokens} "
                "tokens; the rest is sent but never reaches the model",
                f"cut after …{last!r}: about {cut.total_tokens - cut.kept_tokens} of "
                f"{cut.total_tokens} tokens ignored (approximate count)")


_SEVERITY = {FateKind.honored: 0, FateKind.mapped: 1, FateKind.approximated: 2, FateKind.dropped: 3}


def _clamp(v: float, lo: float | None, hi: float | None) -> float:
    if lo is not None and v < lo:
        return lo
    if hi is not None and v > hi:
        return hi
    return v


def _clamp_fate(control: str, requested: float, value: float, fmt: str,
                why: Callable[[], str]) -> Fate:
    """``honored`` when the value sent is the one asked for, else ``approximated``: clamped into
    the offer's range (``why()`` names it; numbers shown with format ``fmt``)."""
    if value == requested:
        return Fate(control, FateKind.honored, requested, value)
    return Fate(control, FateKind.approximated, requested, value, why(),
                f"clamped from {requested:{fmt}} to {value:{fmt}}")
