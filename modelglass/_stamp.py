"""Stamping provenance onto generated images: what :meth:`GeneratedImage.save` later embeds.

The writing side of :mod:`modelglass._provenance` (which reads and saves it). The job engine
calls :func:`stamp` once per result. No keys end up here: the request and payloads come from the
plan, which never holds one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import ProviderCall
    from .providers.base import ProviderOutput
    from .result import Fate, ImageResult

__all__ = ["planned_meta", "stamp"]

#: Keys in ``ProviderOutput.extra`` that describe the software that made the image.
VERSION_KEYS = ("torch", "diffusers", "transformers", "python", "cuda", "cudnn", "device",
                "dtype", "threads", "stack", "pipeline", "scheduler")

_PLANNED_CONTROLS = {"negative_prompt": "negative_prompt", "guidance": "cfg", "true_cfg": "cfg",
                     "steps": "steps", "sampler": "sampler"}


def stamp(result: ImageResult, call: ProviderCall,
          sources: Sequence[tuple[ProviderCall, ProviderOutput]], cost_usd: float | None) -> None:
    """Fill each image's ``metadata``. ``sources[i]`` is the provider call (chunk) and output
    image ``i`` came from; ``cost_usd`` is what the offer that made them was charged."""
    from ._provenance import print_dpi, sent_seed
    from ._version import __version__

    versions: dict[str, Any] = {}
    seen: set[int] = set()
    for _, out in sources:
        if id(out) not in seen:
            seen.add(id(out))
            versions.update({k: out.extra[k] for k in VERSION_KEYS if k in out.extra})
    per_image = None if cost_usd is None or not result.images else cost_usd / len(result.images)
    base = {
        "generator": f"modelglass {__version__}",
        "request": call.request.model_dump(mode="json"),
        "model": result.model, "provider": result.provider, "offer": call.offer.key,
        "endpoint": call.offer.endpoint,
        "fates": [f.to_dict() for f in result.fates],
        "cost_usd": per_image, "cost_is_estimate": result.cost_is_estimate,
        "timings": result.timings, "simulated": result.simulated,
    }
    if versions:
        base["versions"] = versions
    base["planned"] = planned_meta(call, result.fates)
    base["dpi"] = print_dpi(call)  # print sizes: written into the PNG (pHYs) and JPEG
    for img, (chunk, out) in zip(result.images, sources, strict=False):
        img.metadata = {**base, "seed": sent_seed(chunk, img), "index": img.index,
                        "sha256": img.sha256,
                        "simulated": img.simulated, "payload": chunk.payload,
                        "request_id": out.request_id}


def planned_meta(call: ProviderCall, fates: Sequence[Fate]) -> dict[str, Any]:
    """What was actually sent for each control (for the A1111 ``parameters`` line): planned
    values, minus any the provider dropped."""
    p = call.planned
    dropped = {f.control for f in fates if f.kind.value == "dropped"}
    g = call.offer.controls.guidance
    out: dict[str, Any] = {"width": p.width, "height": p.height, "tier": p.tier,
                           "guidance_kind": g.kind.value if g is not None else None}
    for name, control in _PLANNED_CONTROLS.items():
        value = getattr(p, name)
        if value is not None and control not in dropped:
            out[name] = value
    return out
