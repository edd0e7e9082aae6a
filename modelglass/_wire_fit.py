"""Fit a built payload to the endpoint's published input schema, then check it.

The planner has already snapped geometry and clamped controls to the catalog; this step reads
the limits the provider itself publishes (``catalog/schemas``) and applies them to the payload
in the provider's own field names:

- a field the endpoint does not have is never sent (a requested control loses it: ``dropped``);
- a number outside the field's range is clamped (a requested control: ``approximated``);
- a ratio the endpoint does not list snaps to the nearest listed ratio, with the aspect delta;
- a size the endpoint does not take (``image_size`` enum, ``width``/``height`` maximum, the
  file's ``size_rules``: pixel count and aspect) is mapped to the nearest one it does.

Then :func:`check_payload` validates the result with ``jsonschema``; a payload that still breaks
the schema is modelglass's bug, raised as :class:`~modelglass.errors.PayloadInvalid` naming the
field, and nothing is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog._wire_schema import input_schema
from .errors import InvalidRequest, PayloadInvalid
from .providers._fields import FAL_PRESETS
from .result import Fate, FateKind

if TYPE_CHECKING:
    from .catalog import OfferView
    from .catalog._wire_schema import InputSchema
    from .plan import Planned
    from .providers.base import Provider
    from .request import ImageRequest

__all__ = [
    "Fitted",
    "check_payload",
    "chunk_payload",
    "fit_call",
    "fit_payload",
    "images_per_call",
    "nearest_listed_ratio",
    "schema_of",
    "seed_max",
]

#: A payload field → the request control it carries (for fates).
_CONTROL_OF = {"seed": "seed", "negative_prompt": "negative_prompt", "num_images": "n",
               "num_outputs": "n", "n": "n", "num_inference_steps": "steps", "steps": "steps",
               "guidance_scale": "cfg", "guidance": "cfg", "scheduler": "sampler",
               "sampler": "sampler", "image_size": "size", "aspect_ratio": "size", "size": "size",
               "width": "size", "height": "size", "true_cfg_scale": "negative_prompt"}


@dataclass
class Fitted:
    """The payload after fitting, the fates it changed and the size it now asks for."""

    payload: dict[str, Any]
    fates: dict[str, Fate] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None  # set when the fit changed the output size


def fit_payload(payload: dict[str, Any], schema: InputSchema, offer: OfferView, *,
                requested: dict[str, Any], size: tuple[int, int]) -> Fitted:
    """``payload`` fitted to ``schema``. ``requested`` maps each control the request set to the
    value asked for (a fate is written only for those); ``size`` is the planned output size."""
    out = Fitted(dict(payload))
    _drop_unknown(out, schema, offer, requested)
    _clamp_numbers(out, schema, offer, requested)
    _fit_ratio(out, schema, offer, requested, size)
    _fit_image_size(out, schema, offer, requested, size)
    _fit_width_height(out, schema, offer, requested, size)
    _fit_size_rules(out, schema, offer, requested, size)
    return out


def check_payload(payload: dict[str, Any], schema: InputSchema, offer: OfferView, *,
                  options: dict[str, Any] | None = None) -> None:
    """Raise when ``payload`` breaks ``schema`` (nothing is sent): :class:`InvalidRequest` when
    the field at fault came from ``provider_options``, else :class:`PayloadInvalid` (our bug)."""
    bad = schema.violations(payload)
    if not bad:
        return
    for v in bad:
        if options and v.field in options:
            raise InvalidRequest(
                f"provider_options[{offer.provider!r}][{v.field!r}]: {v.message} "
                f"({offer.endpoint}, {offer.provider}'s published schema)",
                field=f"provider_options.{offer.provider}.{v.field}")

    first = bad[0]
    raise PayloadInvalid(
        f"{offer.key}: the payload for {offer.endpoint} breaks {offer.provider}'s published "
        f"schema at {first.field!r}: {first.message}"
        + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        + ". This is a modelglass bug, not yours: nothing was sent. Please report it with the "
        f"request; pick another offer meanwhile. (schema: {schema.source}, as of {schema.as_of})",
        field=first.field, offer=offer.key, problems=[f"{v.field}: {v.message}" for v in bad])


def schema_of(offer: OfferView) -> InputSchema | None:
    """The stored input schema of an offer's endpoint; None when none is stored (an offer run
    in-process, such as a local diffusers pipeline, has none)."""
    return input_schema(offer.provider, offer.endpoint)


def seed_max(schema: InputSchema | None, default: int) -> int:
    """The largest seed an endpoint takes: its published schema's, else ``default``."""
    hi = schema.range("seed")[1] if schema is not None else None
    return int(hi) if hi is not None and hi < default else default


_COUNT_FIELDS = {"fal": "num_images", "replicate": "num_outputs", "openai": "n"}


def images_per_call(offer: OfferView, schema: InputSchema | None, default: int) -> int:
    """How many images one call may ask for: the catalog's limit, capped by the maximum of the
    endpoint's count field in its published schema."""
    if schema is None:
        return default
    name = offer.offer.wire.get("n") or _COUNT_FIELDS.get(offer.provider)
    if not name or name == "none" or name not in schema.properties:
        return default
    hi = schema.range(name)[1]
    return max(1, min(default, int(hi))) if hi is not None else default


def fit_call(request: ImageRequest, offer: OfferView, schema: InputSchema | None,
             planned: Planned, payload: dict[str, Any], fates: dict[str, Fate],
             notes: list[str]) -> tuple[dict[str, Any], Planned]:
    """Fit a planned call's payload to its endpoint's schema, merge the fates that changes
    into ``fates`` and check the result (raises :class:`InvalidRequest` for a
    ``provider_options`` key or value the endpoint refuses, :class:`PayloadInvalid` for ours)."""
    from dataclasses import replace

    if schema is None:
        return payload, planned
    _check_options(planned.options, schema, offer)
    wanted = request.requested_controls()
    requested = {k: f.requested for k, f in fates.items() if k in wanted}
    fitted = fit_payload(payload, schema, offer, requested=requested,
                         size=(planned.width, planned.height))
    rank = {FateKind.honored: 0, FateKind.mapped: 1, FateKind.approximated: 2,
            FateKind.dropped: 3}
    for control, fate in fitted.fates.items():
        if control not in fates or rank[fate.kind] >= rank[fates[control].kind]:
            fates[control] = fate
    notes.extend(fitted.notes)
    if fitted.size is not None and fitted.size != (planned.width, planned.height):
        planned = replace(planned, width=fitted.size[0], height=fitted.size[1])
    check_payload(fitted.payload, schema, offer, options=planned.options)
    return fitted.payload, planned


def chunk_payload(provider: Provider, planned: Planned, offer: OfferView) -> dict[str, Any]:
    """The payload of a later chunk of a planned call, fitted and checked as the first was."""
    payload, _ = provider.build_payload(planned, offer)
    schema = schema_of(offer)
    if schema is None:
        return payload
    fitted = fit_payload(payload, schema, offer, requested={},
                         size=(planned.width, planned.height))
    check_payload(fitted.payload, schema, offer, options=planned.options)
    return fitted.payload


def _check_options(options: dict[str, Any], schema: InputSchema, offer: OfferView) -> None:
    """A ``provider_options`` key the endpoint does not have is the caller's mistake: refuse it
    before anything is sent, listing the fields the endpoint does take."""
    unknown = [k for k in options if not schema.has(k)]
    if not unknown:
        return
    key = unknown[0]
    raise InvalidRequest(
        f"provider_options[{offer.provider!r}][{key!r}]: {offer.endpoint} has no such field "
        f"({offer.provider}'s published schema); it takes {', '.join(sorted(schema.properties))}",
        field=f"provider_options.{offer.provider}.{key}")


# -- steps ----------------------------------------------------------------------------------------
def _drop_unknown(out: Fitted, schema: InputSchema, offer: OfferView,
                  requested: dict[str, Any]) -> None:
    if not schema.closed:
        return
    for name in [k for k in out.payload if not schema.has(k)]:
        out.payload.pop(name)
        control = _CONTROL_OF.get(name)
        if control in requested and control not in out.fates:
            out.fates[control] = Fate(control, FateKind.dropped, requested[control], None,
                                      f"{offer.endpoint} has no {name!r} field "
                                      f"({offer.provider}'s published schema)")
        else:
            out.notes.append(f"{name!r} not sent: {offer.endpoint} has no such field")


def _clamp_numbers(out: Fitted, schema: InputSchema, offer: OfferView,
                   requested: dict[str, Any]) -> None:
    for name, value in list(out.payload.items()):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or name in ("width",
                                                                                     "height"):
            continue  # sides are scaled together (_fit_width_height)
        lo, hi = schema.range(name)
        new = value
        if name == "seed" and hi is not None and value > hi:
            new = int(value) % (int(hi) + 1)  # a seed is a label: wrap it into the range
        elif lo is not None and value < lo:
            new = type(value)(lo)
        elif hi is not None and value > hi:
            new = type(value)(hi)
        if new == value:
            continue
        out.payload[name] = new
        control = _CONTROL_OF.get(name)
        if control in requested:
            kind = FateKind.mapped if name == "seed" else FateKind.approximated
            out.fates[control] = Fate(
                control, kind, requested[control], new,
                f"{offer.endpoint} takes {name} {_span(lo, hi)}",
                f"{'wrapped' if name == 'seed' else 'clamped'} from {value} to {new}")
        else:
            out.notes.append(f"{name} {value} is outside {offer.endpoint}'s {_span(lo, hi)}; "
                             f"sent {new}")


def _span(lo: float | None, hi: float | None) -> str:
    return f"{'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"


def _ratio_of(text: str) -> float | None:
    try:
        a, b = (float(p) for p in text.split(":"))
    except ValueError:
        return None
    return a / b if a > 0 and b > 0 else None


def nearest_listed_ratio(width: float, height: float, listed: list[Any]) -> str | None:
    """The listed ``W:H`` ratio nearest (in log aspect) to ``width``×``height``."""
    want = width / height
    cands = [(abs(math.log(r / want)), str(v)) for v in listed
             if isinstance(v, str) and (r := _ratio_of(v)) is not None]
    return min(cands)[1] if cands else None


def _fit_ratio(out: Fitted, schema: InputSchema, offer: OfferView, requested: dict[str, Any],
               size: tuple[int, int]) -> None:
    value = out.payload.get("aspect_ratio")
    listed = schema.enum("aspect_ratio")
    if not isinstance(value, str) or listed is None or value in listed:
        return
    want = _ratio_of(value) or size[0] / size[1]
    ratio = nearest_listed_ratio(want, 1.0, listed)
    if ratio is None:
        return
    out.payload["aspect_ratio"] = ratio
    got = _ratio_of(ratio) or 1.0
    table = offer.geometry.aspect_ratios or {}
    if ratio in table:
        w, h = (int(p) for p in table[ratio].split("x"))
    else:
        area = size[0] * size[1]
        w, h = round(math.sqrt(area * got) / 16) * 16, round(math.sqrt(area / got) / 16) * 16
    out.size = (w, h)
    delta = abs(got / want - 1) * 100
    out.fates["size"] = Fate("size", FateKind.approximated, requested.get("size", value), ratio,
                             f"{offer.endpoint} takes only the aspect ratios "
                             f"{', '.join(str(x) for x in listed)}",
                             f"nearest listed ratio; aspect off by {delta:.1f} %")


def _fit_image_size(out: Fitted, schema: InputSchema, offer: OfferView,
                    requested: dict[str, Any], size: tuple[int, int]) -> None:
    value = out.payload.get("image_size")
    if value is None or "image_size" not in schema.properties:
        return
    listed = schema.enum("image_size") or []
    obj = schema.object_branch("image_size")
    if isinstance(value, str) and value in listed:
        return
    if isinstance(value, dict) and obj is not None:
        w, h = int(value.get("width", size[0])), int(value.get("height", size[1]))
        props = obj["properties"]
        hi = min(props.get(k, {}).get("maximum", 1 << 30) for k in ("width", "height"))
        lo = max(props.get(k, {}).get("minimum", 1) for k in ("width", "height"))
        m = int(props.get("width", {}).get("multipleOf", 1))
        if lo <= min(w, h) and max(w, h) <= hi and not (w % m or h % m):
            return
        w, h = _scale_into(w, h, hi, m, lo)
        out.payload["image_size"] = {"width": w, "height": h}
        _size_fate(out, offer, requested, size, (w, h), _sides(lo, hi))
        return
    dims = FAL_PRESETS.get(value) if isinstance(value, str) else (
        (int(value.get("width", size[0])), int(value.get("height", size[1])))
        if isinstance(value, dict) else None)
    sizes = [s for s in listed if isinstance(s, str) and "x" in s and s[0].isdigit()]
    if dims is None or not sizes:
        return
    best = min(sizes, key=lambda s: _size_distance(s, dims))
    out.payload["image_size"] = best
    bw, bh = (int(p) for p in best.split("x"))
    if (bw, bh) != tuple(size):
        _size_fate(out, offer, requested, size, (bw, bh), "the sizes " + ", ".join(sizes))
    out.size = (bw, bh)


def _size_distance(s: str, dims: tuple[int, int]) -> tuple[float, float]:
    w, h = (int(p) for p in s.split("x"))
    return (round(abs(math.log((w / h) / (dims[0] / dims[1]))), 3),
            abs(math.log((w * h) / (dims[0] * dims[1]))))


def _fit_width_height(out: Fitted, schema: InputSchema, offer: OfferView,
                      requested: dict[str, Any], size: tuple[int, int]) -> None:
    w, h = out.payload.get("width"), out.payload.get("height")
    if not isinstance(w, int) or not isinstance(h, int):
        return
    hi = min(schema.range("width")[1] or 1 << 30, schema.range("height")[1] or 1 << 30)
    lo = max(schema.range("width")[0] or 1, schema.range("height")[0] or 1)
    outside = max(w, h) > hi or min(w, h) < lo
    m = int(schema.spec("width").get("multipleOf", 8 if outside else 1))
    if not outside and not (w % m or h % m):
        return
    nw, nh = _scale_into(w, h, int(hi), m, int(lo))
    out.payload["width"], out.payload["height"] = nw, nh
    _size_fate(out, offer, requested, size, (nw, nh), _sides(lo, hi))


def _fit_size_rules(out: Fitted, schema: InputSchema, offer: OfferView,
                    requested: dict[str, Any], size: tuple[int, int]) -> None:
    """A size the schema's ``size_rules`` refuse (gpt-image-2: 655,360..8,294,400 pixels,
    aspect ≤ 3:1) becomes the nearest allowed one, in the field's own form."""
    found = schema.ruled_size(out.payload)
    if found is None or not schema.size_rule_problems(found[1], found[2]):
        return
    name, w, h = found
    nw, nh = schema.nearest_ruled_size(w, h)
    out.payload[name] = f"{nw}x{nh}" if name == "size" else {"width": nw, "height": nh}
    rules = schema.size_rules or {}
    _size_fate(out, offer, requested, size, (nw, nh),
               f"{rules.get('min_pixels', 0):,}..{rules.get('max_pixels', 0):,} pixels, aspect "
               f"up to {rules.get('max_aspect', 0):g}:1")


def _sides(lo: float, hi: float) -> str:
    return f"sides from {int(lo)} to {int(hi)} px" if lo > 1 else f"sides up to {int(hi)} px"


def _scale_into(w: int, h: int, hi: int, m: int, lo: int = 1) -> tuple[int, int]:
    """Scale (w, h) keeping its aspect so both sides fall in lo..hi on multiples of m; where the
    aspect cannot fit (too extreme for the range), each side is clamped instead."""
    s = min(hi / max(w, h), max(1.0, lo / min(w, h)))
    s = min(s, 1.0) if max(w, h) > hi else s

    def side(x: int) -> int:
        v = int(x * s) // m * m
        up = -(-lo // m) * m  # the smallest multiple of m not below lo
        return min(max(v, up, m), hi // m * m)
    return side(w), side(h)


def _size_fate(out: Fitted, offer: OfferView, requested: dict[str, Any],
               size: tuple[int, int], got: tuple[int, int], allowed: str) -> None:
    out.size = got
    want = requested.get("size", f"{size[0]}x{size[1]}")
    a_err = abs((got[0] / got[1]) / (size[0] / size[1]) - 1) * 100
    area = (got[0] * got[1]) / (size[0] * size[1]) - 1
    out.fates["size"] = Fate("size", FateKind.approximated, want, f"{got[0]}x{got[1]}",
                             f"{offer.endpoint} takes {allowed} ({offer.provider}'s schema)",
                             f"aspect off by {a_err:.1f} %, area {area * 100:+.1f} %")
