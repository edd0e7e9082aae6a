"""The capability matrix: for every offer in the shipped catalog, each control the catalog calls
supported really changes the payload the provider module sends, and each unsupported control
gets a ``dropped`` fate and leaves the payload alone.

For every offer and control, a base request and a request that changes only that control are
planned with ``plan_call(request, offer, provider=<the offer's provider module>)``; the payload is
what that module's ``build_payload`` writes, i.e. what goes on the wire (the provider tests check
``submit.json == call.payload``). Local offers are covered for payload building only (no pipeline).

A second part sends the planned payloads of offers whose endpoint the simulators validate
(the schemas of ``research/wire-formats.md``) through the provider modules, including every
aspect ratio and output format the catalog lists and the ends of every control range, so a
catalog claim that the real API would reject fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import _sim_fixtures
import pytest

import modelglass as mg
from modelglass.catalog import OfferView
from modelglass.catalog._schema import GuidanceKind, PriceKind, Status
from modelglass.plan import ProviderCall, plan_call
from modelglass.providers import create_provider
from modelglass.providers.base import Provider
from modelglass.testing import Simulator
from modelglass.testing._fal import ENDPOINTS as FAL_SIMULATED
from modelglass.testing._replicate import MODELS as REPLICATE_SIMULATED

CAT = mg.Catalog.default()
OFFERS = CAT.offers()
LIVE = [v for v in OFFERS if v.status is not Status.retired]  # judged on the pinned clock
CONTROLS = ["negative_prompt", "cfg", "steps", "seed", "n", "size", "sampler", "tier"]
PROVIDERS: dict[str, Provider] = {}

def provider_for(view: OfferView) -> Provider:
    if view.provider not in PROVIDERS:
        PROVIDERS[view.provider] = create_provider(view.provider)
    return PROVIDERS[view.provider]


# -- what the catalog claims ----------------------------------------------------------------------

def supported(view: OfferView, control: str) -> bool:
    """Whether the catalog says ``view`` takes ``control`` (and it can take two values)."""
    c = view.controls
    if control == "negative_prompt":
        return c.negative_prompt in ("native", "true-cfg-extra")
    if control == "cfg":
        g = c.guidance
        return (g is not None and g.kind is not GuidanceKind.none
                and (g.min is not None or g.max is not None or g.default is not None))
    if control == "steps":
        s = c.steps
        return s is not None and (s.min is not None or s.max is not None or s.default is not None)
    if control == "seed":
        return c.seed is True
    if control == "n":
        return (c.max_images_per_call or 1) >= 2
    if control == "size":
        return True
    if control == "sampler":
        return bool(c.samplers)
    if control == "tier":
        price = view.offer.price
        # per-tier and token-priced offers both send a provider tier (gpt-image-2's quality)
        tables = price.tiers if price.kind is PriceKind.per_tier else \
            price.output_tokens if price.kind is PriceKind.per_token else None
        return len(tables or {}) >= 2
    raise AssertionError(control)


def fixed(view: OfferView, control: str) -> bool:
    """A range of one value (e.g. SDXL-Lightning's 4 steps): supported, but nothing to change."""
    rng = view.controls.steps if control == "steps" else view.controls.guidance
    return rng is not None and rng.min is not None and rng.min == rng.max


def other_value(lo: float | None, hi: float | None, default: float | None,
                integer: bool) -> float:
    """A value inside [lo, hi] that is not the default."""
    lo = 0.0 if lo is None else lo
    hi = (max(default or 0, lo) * 2 + 10) if hi is None else hi
    for frac in (0.37, 0.63, 0.0, 1.0):
        v = lo + (hi - lo) * frac
        v = float(round(v)) if integer else round(v, 2)
        if lo <= v <= hi and v != default:
            return v
    raise AssertionError(f"no second value in [{lo}, {hi}]")


def two_sizes(view: OfferView) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two different sizes the offer can make, as request fields."""
    geo = view.geometry
    if geo.sizes:
        a = geo.sizes[0]
        b = next(s for s in geo.sizes if s != a)
        return {"size": a}, {"size": b}
    if geo.aspect_ratios:
        items = list(geo.aspect_ratios.items())
        a = dict(items).get("1:1", items[0][1])
        b = next(s for _, s in items if s != a)
        return {"size": a}, {"size": b}
    return {"aspect_ratio": "1:1"}, {"aspect_ratio": "16:9"}


def change(view: OfferView, control: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Request fields of the base and of the request that changes only ``control``."""
    c = view.controls
    is_supported = supported(view, control)
    if control == "negative_prompt":
        g = c.guidance
        if (is_supported and g is not None and g.kind.value == "true-cfg" and g.max is not None
                and (g.default is None or g.default <= 1)):
            # A negative prompt works through CFG; at a default scale of 1 (LCM) CFG is off and
            # the planner drops it, so the base turns CFG on.
            return {"cfg": g.max}, {"negative_prompt": "blurry, watermark"}
        return {}, {"negative_prompt": "blurry, watermark"}
    if control == "cfg":
        g = c.guidance
        if not is_supported or g is None:
            return {}, {"cfg": 5.5}
        return {}, {"cfg": other_value(g.min, g.max, g.default, integer=False)}
    if control == "steps":
        s = c.steps
        if not is_supported or s is None:
            return {}, {"steps": 13}
        if fixed(view, "steps"):
            return {}, {"steps": int(s.min or 1) + 1}
        return {}, {"steps": int(other_value(s.min, s.max, s.default, integer=True))}
    if control == "seed":
        return {"seed": 1}, {"seed": 2}
    if control == "n":
        return {}, {"n": 2}
    if control == "size":
        return two_sizes(view)
    if control == "sampler":
        return {}, {"sampler": c.samplers[-1] if c.samplers else "dpmpp_2m"}
    if control == "tier":
        price = view.offer.price
        tiers = list(price.tiers or price.output_tokens or {})
        name = view.provider
        return ({"provider_options": {name: {"quality": tiers[0]}}},
                {"provider_options": {name: {"quality": tiers[-1]}}})
    raise AssertionError(control)


def plan(view: OfferView, **fields: Any) -> ProviderCall:
    fields.setdefault("prompt", "a red bicycle against a brick wall")
    fields.setdefault("seed", 1)  # a drawn seed would make every payload differ
    fields.setdefault("quality", "hero")
    return plan_call(mg.ImageRequest(**fields), view, provider=provider_for(view))


def matrix() -> Iterator[Any]:
    for view in LIVE:
        for control in CONTROLS:
            if control == "tier" and not supported(view, "tier"):
                continue  # a tier is no request control: nothing to drop
            yield pytest.param(view, control, id=f"{view.key}-{control}")


# -- the matrix -----------------------------------------------------------------------------------

@pytest.mark.parametrize("view,control", list(matrix()))
def test_supported_controls_change_the_payload_and_unsupported_ones_are_dropped(
        view: OfferView, control: str) -> None:
    base_fields, changed_fields = change(view, control)
    base = plan(view, **base_fields)
    changed = plan(view, **{**base_fields, **changed_fields})
    fate = changed.fate(control)

    if control == "n" and not supported(view, "n"):
        # One image per call: the client makes two calls; each payload asks for one image.
        assert changed.payload == base.payload and changed.chunks == [1, 1]
        assert fate is not None and fate.kind is mg.FateKind.mapped
    elif control in ("steps", "cfg") and supported(view, control) and fixed(view, control):
        assert changed.payload == base.payload
        assert fate is not None and fate.kind is mg.FateKind.approximated
    elif supported(view, control):
        assert changed.payload != base.payload, (
            f"{view.key}: the catalog says {control} is supported, but changing it does not "
            f"change the payload {base.payload}")
        if fate is not None:
            assert fate.kind is not mg.FateKind.dropped, f"{view.key}: {fate}"
    else:
        assert fate is not None and fate.kind is mg.FateKind.dropped, (
            f"{view.key}: {control} is unsupported in the catalog but its fate is {fate}")
        assert changed.payload == base.payload, (
            f"{view.key}: unsupported {control} still changed the payload: "
            f"{base.payload} -> {changed.payload}")


@pytest.mark.parametrize("view", [v for v in LIVE if supported(v, "tier")], ids=lambda v: v.key)
def test_the_quality_axis_picks_the_price_tier_sent(view: OfferView) -> None:
    size = two_sizes(view)[0]
    draft, print_ = plan(view, quality="draft", **size), plan(view, quality="print", **size)
    mapping = view.offer.price.tier_for_quality or {}
    assert draft.planned.tier == mapping.get("draft") and print_.planned.tier == mapping.get("print")
    if mapping.get("draft") != mapping.get("print"):
        assert draft.payload != print_.payload


@pytest.mark.parametrize("view", [v for v in OFFERS if v.status is Status.retired],
                         ids=lambda v: v.key)
def test_retired_offers_cannot_be_planned(view: OfferView) -> None:
    with pytest.raises(mg.InvalidRequest, match="retired"):
        plan(view)


def test_every_offer_is_in_the_matrix() -> None:
    keys = {v.key for v in LIVE}
    assert len(keys) == len(LIVE) and len(OFFERS) >= 60
    assert {v.provider for v in LIVE} == {"openai", "fal", "replicate", "local"}


# -- what the simulated APIs accept ---------------------------------------------------------------

def simulated(view: OfferView) -> bool:
    """Offers whose endpoint the simulators validate field by field (wire-formats.md)."""
    if view.provider == "fal":
        return view.endpoint in FAL_SIMULATED
    if view.provider == "replicate":
        return view.endpoint.partition(":")[0] in REPLICATE_SIMULATED
    return view.provider == "openai"


ACCEPT = [v for v in LIVE if simulated(v)]


def extremes(view: OfferView) -> Iterator[tuple[str, dict[str, Any]]]:
    """Requests at the edges of what the catalog claims for ``view``."""
    c = view.controls
    yield "base", {}
    for control in CONTROLS:
        if supported(view, control) and control != "tier":
            yield control, change(view, control)[1]
    if supported(view, "steps") and c.steps is not None:
        yield "steps-min", {"steps": int(c.steps.min or 1)}
        if c.steps.max is not None:
            yield "steps-max", {"steps": int(c.steps.max)}
    if supported(view, "cfg") and c.guidance is not None:
        for end in (c.guidance.min, c.guidance.max):
            if end is not None:
                yield f"cfg-{end:g}", {"cfg": end}
    if supported(view, "n"):
        yield "n-max", {"n": int(c.max_images_per_call or 1)}
    for ratio, size in (view.geometry.aspect_ratios or {}).items():
        yield f"ratio-{ratio}", {"size": size}
    for size in view.geometry.sizes or []:
        yield f"size-{size}", {"size": size}
    for fmt in (view.offer.wire.get("output_format_values") or "").split(","):
        if fmt:
            yield f"format-{fmt}", {"provider_options": {view.provider: {"output_format": fmt}}}
    for tier in view.offer.price.tiers or {}:
        yield f"tier-{tier}", {"provider_options": {view.provider: {"quality": tier}}}


sim = _sim_fixtures.sim_fixture(poll_interval=0.01)  # one simulator for the module


@pytest.mark.parametrize("view", ACCEPT, ids=lambda v: v.key)
def test_the_simulated_api_accepts_every_payload_the_catalog_allows(sim: Simulator,
                                                                   view: OfferView) -> None:
    kwargs = {"poll_interval_s": 0.01} if view.provider in ("fal", "replicate") else {}
    prov = create_provider(view.provider, **kwargs)
    failures = []
    try:
        for label, fields in extremes(view):
            call = plan(view, **fields)
            try:
                out = prov.generate(call, timeout_s=5)
            except mg.ModelglassError as exc:
                failures.append(f"{label}: {call.payload} -> {exc}")
                continue
            assert len(out.images) == call.chunks[0], label
    finally:
        prov.close()
    assert not failures, f"{view.key}: the API rejects payloads the catalog allows:\n" + \
        "\n".join(failures)
