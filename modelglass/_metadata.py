"""What a saved image says about itself: the provenance JSON (:func:`build_metadata`), the
AUTOMATIC1111 ``parameters`` line (:func:`parameters_text`) and the scrub that keeps secrets out of
both (:func:`scrub`). ``_provenance.py`` writes them into the PNG or the sidecar; ``_stamp.py``
reads the seed and DPI the call really sent."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._c2pa import has_c2pa
from ._simulated import SIMULATED_MARKER
from ._version import __version__
from .catalog import Catalog

if TYPE_CHECKING:
    from .result import GeneratedImage, ImageResult

__all__ = ["REDACTED", "SIMULATED_NOTE", "build_metadata", "parameters_text", "print_dpi",
           "scrub", "sent_seed"]

REDACTED = "[redacted]"
SIMULATED_NOTE = "made by the modelglass provider simulators; no provider was called"
# Environment variables whose values must never be written anywhere.
_KEY_ENV = ("OPENAI_API_KEY", "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "REPLICATE_API_TOKEN")
_SECRET_NAME = re.compile(
    r"^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api[_-]?key|api[_-]?token|"
    r"access[_-]?token|auth[_-]?token|token|secret|client[_-]?secret|password|key|"
    r"fal[_-]key|.*_api_key|.*_api_token|.*_secret)$", re.IGNORECASE)
_SECRET_SHAPES = re.compile(r"\bsk-[A-Za-z0-9_-]{20,}|\br8_[A-Za-z0-9]{20,}|"
                            r"\bBearer\s+[A-Za-z0-9._~+/=-]{16,}")


# -- metadata -------------------------------------------------------------------------------------
def build_metadata(result: ImageResult, image: GeneratedImage) -> dict[str, Any]:
    """The provenance of ``image`` from ``result``: what :attr:`GeneratedImage.metadata` holds.

    Keys: ``model``, ``provider``, ``offer``, ``seed``, ``simulated``, ``sha256`` (of the
    provider's bytes), ``image`` (index, size, mime), ``request`` (the ``ImageRequest`` as
    JSON), ``planned`` (the provider-independent values sent: steps, guidance, sampler …),
    ``plan`` (``ProviderCall.to_dict()``: endpoint, payload, estimate), ``fates``, ``cost_usd``,
    ``cost_is_estimate``, ``latency_s``, ``timings``, ``attempts`` and, when checks ran,
    ``checks`` (this image's :class:`~modelglass.CheckResult` as JSON).
    """
    call = result.plan
    seed = sent_seed(call, image)
    meta: dict[str, Any] = {
        "model": result.model, "provider": result.provider,
        "offer": call.offer.key if call is not None else f"{result.model}@{result.provider}",
        "seed": seed,
        "simulated": bool(result.simulated or image.simulated),
        "sha256": image.sha256,
        "image": {"index": image.index, "width": image.width, "height": image.height,
                  "mime": image.mime, "c2pa": image.c2pa},
        "fates": [f.to_dict() for f in result.fates],
        "cost_usd": result.cost_usd, "cost_is_estimate": result.cost_is_estimate,
        "latency_s": result.latency_s, "timings": dict(result.timings),
        "attempts": [a.to_dict() for a in result.attempts],
    }
    checks = [c.to_dict() for c in getattr(result, "checks", None) or [] if c.image == image.index]
    if checks:
        meta["checks"] = checks
    if seed is None and image.seed is not None:
        # The provider reported a seed it was never given: keep it, but never as the seed.
        meta["provider_seed"] = image.seed
        meta["seed_note"] = ("no seed was sent (the offer does not take one), so the image cannot "
                             "be reproduced from a seed")
    if call is not None:
        meta["dpi"] = print_dpi(call)
        meta["request"] = call.request.model_dump(mode="json")
        planned = dataclasses.asdict(call.planned)
        guidance = call.offer.controls.guidance
        planned["guidance_kind"] = guidance.kind.value if guidance is not None else None
        meta["planned"] = planned
        meta["plan"] = call.to_dict()
    return meta


def sent_seed(call: Any, image: GeneratedImage) -> int | None:
    """The seed that was sent for ``image`` under ``call`` (a ProviderCall), or None when none was
    (the offer takes no seed, whatever the provider reports back)."""
    if call is None:
        return image.seed
    seeds = call.planned.seeds
    if not seeds:
        return None
    return image.seed if image.seed is not None else seeds[min(image.index, len(seeds) - 1)]


def print_dpi(call: Any) -> int | None:
    """The DPI a print-sized request asked for (or its quality axis's); for the ``print`` axis
    without a print size, that axis's DPI. None otherwise (screen images carry no DPI)."""
    request = call.request
    quality = str(getattr(request.quality, "value", request.quality))
    if not request.print_size and quality != "print":
        return None
    if request.dpi:
        return int(request.dpi)
    axis = call.offer.quality_axes.get(str(getattr(request.quality, "value", request.quality)))
    return int(axis.dpi) if axis is not None else 300


def _request_dpi(request: Any) -> int | None:
    if not isinstance(request, Mapping) or not (request.get("print_size")
                                                or request.get("quality") == "print"):
        return None
    if request.get("dpi"):
        return int(request["dpi"])
    try:
        return int(Catalog.default().quality(str(request.get("quality") or "print")).dpi)
    except Exception:  # noqa: BLE001 - a DPI guess must not stop a save
        return 300


def _full_metadata(image: GeneratedImage) -> dict[str, Any]:
    """``image.metadata`` completed with what the image itself knows, then scrubbed."""
    meta = dict(image.metadata)
    meta.setdefault("seed", image.seed)
    seed_fate = next((f for f in meta.get("fates") or []
                      if isinstance(f, Mapping) and f.get("control") == "seed"), None)
    payload = meta.get("payload")
    unsent = (isinstance(payload, Mapping) and bool(payload)
              and not any("seed" in str(k).lower() for k in payload))
    if meta.get("seed") is not None and (unsent or (seed_fate is not None
                                                    and seed_fate.get("kind") == "dropped")):
        # Whatever the provider reported, the seed asked for was not sent: not reproducible.
        meta["provider_seed"] = meta["seed"]
        meta["seed"] = None
    meta.setdefault("sha256", image.sha256)
    img = dict(meta.get("image") or {})
    img.update({"index": image.index, "width": image.width, "height": image.height,
                "mime": image.mime, "c2pa": image.c2pa or has_c2pa(image.data)})
    meta["image"] = img
    if "dpi" not in meta:
        meta["dpi"] = _request_dpi(meta.get("request"))
    # A simulated image must never pass for a real one, whoever built the metadata.
    simulated = bool(image.simulated or meta.get("simulated") or SIMULATED_MARKER.encode() in image.data)
    meta["simulated"] = simulated
    if simulated:
        meta["simulated_note"] = SIMULATED_NOTE
    meta["saved_by"] = f"modelglass {__version__}"
    return scrub(meta)


def _secret_values() -> list[str]:
    values: set[str] = set()
    for name in _KEY_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 6:
            values.add(value)
            # FAL_KEY is "id:secret": either half alone is still a credential.
            values.update(part for part in value.split(":") if len(part) >= 6)
    return sorted(values, key=len, reverse=True)


def scrub(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of ``obj`` with credentials replaced by ``[redacted]``.

    Values under credential-like names (``authorization``, ``api_key``, ``token`` …) go, and so
    does any string holding a provider key from the environment or a key-shaped token.
    """
    secrets = _secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_NAME.match(k) and v
                    else scrub(v, secrets)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str):
        for value in secrets:
            obj = obj.replace(value, REDACTED)
        return _SECRET_SHAPES.sub(REDACTED, obj)
    return obj


# -- A1111 parameters -----------------------------------------------------------------------------
def _quote(value: Any) -> str:
    # A1111's rule: a value with a comma, colon or newline is written as a JSON string.
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parameters_text(meta: dict[str, Any]) -> str:
    """The AUTOMATIC1111 ``parameters`` text for ``meta`` (the shape :func:`build_metadata` makes).

    Values are what was *sent* (after planning), so the text reproduces the image; what happened
    to each requested control is in the JSON's ``fates``.

    >>> print(parameters_text({"request": {"prompt": "a fox", "negative_prompt": "blurry"},
    ...                        "planned": {"steps": 30, "guidance": 6.5}, "seed": 42,
    ...                        "image": {"width": 1024, "height": 1024},
    ...                        "model": "sdxl", "provider": "fal"}))
    a fox
    Negative prompt: blurry
    Steps: 30, CFG scale: 6.5, Seed: 42, Size: 1024x1024, Model: sdxl, Provider: fal
    """
    request = meta.get("request") or {}
    planned = meta.get("planned") or {}
    image = meta.get("image") or {}

    fates = {f.get("control"): f for f in meta.get("fates") or [] if isinstance(f, Mapping)}

    def sent(name: str, request_name: str | None = None) -> Any:
        if name in planned:
            return planned[name]
        # No planned values recorded: the fates say what became of each requested control.
        fate = fates.get(request_name or name)
        if fate is not None:
            if fate.get("kind") == "dropped":
                return None
            if fate.get("applied") is not None:
                return fate["applied"]
        return request.get(request_name or name)

    prompt = sent("prompt") or meta.get("prompt") or ""
    lines = [str(prompt)]
    negative = sent("negative_prompt")
    if negative:
        lines.append(f"Negative prompt: {negative}")
    fields: list[tuple[str, Any]] = [("Steps", sent("steps")), ("Sampler", sent("sampler"))]
    guidance = sent("guidance", "cfg")
    if planned.get("guidance_kind") == "distilled":
        fields += [("CFG scale", planned.get("true_cfg")), ("Distilled CFG Scale", guidance)]
    else:
        fields.append(("CFG scale", guidance))
    # Only a seed that was sent: a dropped one would claim a reproducibility the image lacks.
    seed = meta.get("seed")
    if seed is None and "planned" not in meta and (fates.get("seed") or {}).get("kind") != "dropped":
        seed = request.get("seed")
    fields.append(("Seed", seed))
    width = image.get("width") or planned.get("width")
    height = image.get("height") or planned.get("height")
    fields.append(("Size", f"{width}x{height}" if width and height else None))
    fields += [("Model", meta.get("model")), ("Provider", meta.get("provider")),
               ("Quality", sent("quality")), ("Tier", planned.get("tier"))]
    cost = meta.get("cost_usd")
    if cost is not None:
        fields.append(("Cost", f"${cost:.4f}" + (" estimate" if meta.get("cost_is_estimate") else "")))
    if meta.get("simulated"):
        fields.append(("Simulated", "true"))
    if meta.get("saved_by"):
        fields.append(("Version", meta["saved_by"]))
    line = ", ".join(f"{k}: {_quote(_num(v))}" for k, v in fields if v is not None and v != "")
    if line:
        lines.append(line)
    return "\n".join(lines)
