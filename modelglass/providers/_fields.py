"""The provider-independent part of a payload: each requested control written into the offer's
own field names (``wire:`` map, else the provider's defaults), with the fates that writing implies.

Beside the payload helpers (``_payload``); the provider modules import it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog._wire_schema import FAL_PRESETS
from ._payload import format_for_offer, nearest_ratio, ratio_for, wire_name

if TYPE_CHECKING:
    from ..catalog import OfferView

__all__ = ["FAL_PRESETS", "WireDefaults", "build_fields"]

# -- the payload core -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WireDefaults:
    """A provider's field names when an offer's ``wire:`` map does not say otherwise."""

    size: str
    names: Mapping[str, str | None]
    output_formats: tuple[str, ...]
    #: Unified sampler name → the provider's spelling, for offers whose ``wire:`` map names a
    #: ``sampler`` field (e.g. Replicate SDXL's ``scheduler``). A sampler missing here is dropped.
    samplers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Fields:
    """The payload being written, with each field's control and the fates of controls left out."""

    offer: OfferView
    defaults: WireDefaults
    payload: dict[str, Any]
    fates: dict[str, Any] = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)

    def name(self, control: str) -> str | None:
        return wire_name(self.offer, control, self.defaults.names.get(control))

    def put(self, control: str, field_name: str, value: Any) -> None:
        self.payload[field_name] = value
        self.reserved[field_name] = control

    def no_field(self, control: str, requested: Any) -> None:
        from ..result import Fate, FateKind

        self.fates[control] = Fate(control, FateKind.dropped, requested, None,
                                   f"{self.offer.key} ({self.offer.endpoint}) has no request "
                                   "field for it")


def build_fields(planned: Any, offer: OfferView, defaults: WireDefaults, *,
                 provider: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """The provider-independent part of a payload, in the offer's field names.

    Returns ``(payload, fate_overrides, reserved)``: ``reserved`` maps each field written from a
    request control to that control's name (so ``provider_options`` cannot overwrite it).
    Fixed ``defaults:`` of the offer come first; controls override them. A control is written only
    when the plan carries it, the catalog says the offer supports it, and the offer has a field
    for it; a planned value with nowhere to go gets a ``dropped`` fate.
    """
    f = _Fields(offer, defaults, dict(offer.offer.defaults))
    f.put("prompt", f.name("prompt") or "prompt", planned.prompt)
    _put_steps_and_guidance(f, planned)
    _put_negative_prompt(f, planned)
    _put_seed_and_sampler(f, planned)
    _put_n_size_tier(f, planned)
    _put_output_format(f, planned)
    return f.payload, f.fates, f.reserved


def _put_steps_and_guidance(f: _Fields, planned: Any) -> None:
    from ..catalog._schema import GuidanceKind

    c = f.offer.controls
    if planned.steps is not None and c.steps is not None:
        if (field_name := f.name("steps")) is not None:
            f.put("steps", field_name, int(planned.steps))
        else:
            f.no_field("steps", planned.steps)

    guidance_ok = c.guidance is not None and c.guidance.kind is not GuidanceKind.none
    if planned.guidance is not None and guidance_ok:
        if (field_name := f.name("guidance")) is not None:
            f.put("cfg", field_name, float(planned.guidance))
        else:
            f.no_field("cfg", planned.guidance)


def _put_negative_prompt(f: _Fields, planned: Any) -> None:
    c = f.offer.controls
    if planned.negative_prompt is not None and c.negative_prompt in ("native", "true-cfg-extra"):
        field_name = f.name("negative_prompt")
        true_cfg_field = f.name("true_cfg")
        if field_name is None:
            f.no_field("negative_prompt", planned.negative_prompt)
        elif c.negative_prompt == "true-cfg-extra" and planned.true_cfg is not None:
            if true_cfg_field is None:
                f.no_field("negative_prompt", planned.negative_prompt)
            else:
                f.put("negative_prompt", field_name, planned.negative_prompt)
                f.put("negative_prompt", true_cfg_field, float(planned.true_cfg))
        else:
            f.put("negative_prompt", field_name, planned.negative_prompt)


def _put_seed_and_sampler(f: _Fields, planned: Any) -> None:
    from ..result import Fate, FateKind

    c, offer = f.offer.controls, f.offer
    if planned.seeds and c.seed:
        if (field_name := f.name("seed")) is not None:
            f.put("seed", field_name, int(planned.seeds[0]))
        else:
            f.no_field("seed", planned.seeds[0])

    if planned.sampler is not None and c.samplers:
        # Hosted offers take a sampler only where the wire map names the field.
        field_name = f.name("sampler")
        value = f.defaults.samplers.get(str(planned.sampler))
        if field_name is None:
            f.no_field("sampler", planned.sampler)
        elif value is None:
            f.fates["sampler"] = Fate("sampler", FateKind.dropped, planned.sampler, None,
                                      f"{offer.key} ({offer.endpoint}) has no {planned.sampler} "
                                      f"for its {field_name} field")
        else:
            f.put("sampler", field_name, value)


def _put_n_size_tier(f: _Fields, planned: Any) -> None:
    offer = f.offer
    if (field_name := f.name("n")) is not None:
        f.put("n", field_name, int(planned.n))
    elif planned.n > 1:
        f.no_field("n", planned.n)

    size_fields, size_fate = _size_fields(planned, offer,
                                          offer.offer.wire.get("size", f.defaults.size))
    for k, v in size_fields.items():
        f.put("size", k, v)
    if size_fate is not None:
        f.fates["size"] = size_fate

    if planned.tier is not None and (field_name := f.name("tier")) is not None:
        f.put("quality", field_name, planned.tier)


def _put_output_format(f: _Fields, planned: Any) -> None:
    # The output format is no request control: an offer whose wire map lists its fields but not
    # this one gets none (e.g. Replicate SDXL has no output_format input).
    offer, defaults = f.offer, f.defaults
    wire = offer.offer.wire
    fmt_default = defaults.names.get("output_format") if not wire else None
    if (field_name := wire_name(offer, "output_format", fmt_default)) is not None:
        listed = offer.offer.wire.get("output_format_values")
        allowed = ([v.strip() for v in listed.split(",") if v.strip()] if listed
                   else list(defaults.output_formats))
        f.payload[field_name] = format_for_offer(planned.output_format, allowed)
        f.reserved[field_name] = "output_format"


def _size_fields(planned: Any, offer: OfferView, kind: str) -> tuple[dict[str, Any], Any]:
    from ..result import Fate, FateKind

    w, h = int(planned.width), int(planned.height)
    size = f"{w}x{h}"
    table = offer.geometry.aspect_ratios
    if kind in ("none", ""):
        return {}, None
    if kind == "openai_size":
        return {"size": size}, None
    if kind == "width_height":
        return {"width": w, "height": h}, None
    if kind == "image_size":
        for preset, dims in FAL_PRESETS.items():
            if dims == (w, h):
                return {"image_size": preset}, Fate("size", FateKind.mapped, size, preset,
                                                    f"sent as the image_size preset {preset}")
        return {"image_size": {"width": w, "height": h}}, None
    if kind == "image_size_wxh":  # an image_size enum of "WxH" strings (fal gpt-image-1.x)
        return {"image_size": size}, None
    if kind == "aspect_ratio":
        ratio = planned.aspect_ratio or ratio_for(w, h, table)
        if ratio is None:
            ratio = nearest_ratio(w, h, list(table or {"1:1": "1024x1024"}))
            return {"aspect_ratio": ratio}, Fate(
                "size", FateKind.approximated, size, ratio,
                f"{offer.key} takes only aspect ratios; {size} is not one of its sizes")
        return {"aspect_ratio": ratio}, Fate("size", FateKind.mapped, size, ratio,
                                             f"sent as aspect ratio {ratio}")
    if kind == "aspect_ratio_custom":
        ratio = planned.aspect_ratio
        if ratio is None or (table and table.get(ratio) != size):
            ratio = next((r for r, s in (table or {}).items() if s == size), None)
        if ratio is not None:
            return {"aspect_ratio": ratio}, Fate("size", FateKind.mapped, size, ratio,
                                                 f"sent as aspect ratio {ratio}")
        return {"aspect_ratio": "custom", "width": w, "height": h}, None
    from ..errors import CatalogError

    raise CatalogError(f"offer {offer.key}: unknown wire size kind {kind!r}; use one of "
                       "openai_size, image_size, image_size_wxh, aspect_ratio, width_height, "
                       "aspect_ratio_custom, none")
