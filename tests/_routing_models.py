"""Tiny hand-built models and catalogs for the policy, health, size and replay tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from _catalogs import AS_OF, axis

from modelglass.catalog import Catalog
from modelglass.catalog._schema import Model, QualityAxis, Settings

TODAY = dt.date(2026, 11, 1)

AXES: dict[str, QualityAxis] = {
    "draft": axis(weights={"prompt_adherence": 1, "speed": 1}, cost_weight=0.8,
                  cost_reference_usd=0.005, max_cost_usd=0.05),
    "thumbnail": axis(weights={"speed": 1, "prompt_adherence": 1}, target_size="512x512",
                      cost_weight=0.6, cost_reference_usd=0.005),
    "hero": axis(weights={"prompt_adherence": 2, "photorealism": 1},
                 minimums={"prompt_adherence": 6}, target_size="1024x1024", cost_weight=0.1,
                 cost_reference_usd=0.05),
    "print": axis(weights={"resolution": 1, "photorealism": 1}, target_size="2048x2048",
                  cost_weight=0.1, cost_reference_usd=0.08, min_megapixels=3.5),
}

FREE = {"multiple_of": 16, "min_side": 256, "max_side": 2048, "max_megapixels": 4.2}


def offer(provider: str = "fal", usd: float | None = 0.01, **kw: Any) -> dict[str, Any]:
    price = {"kind": "per_image", "usd": usd} if usd is not None else {"kind": "unknown"}
    return {"provider": provider, "endpoint": f"{provider}/test", "as_of": AS_OF, "source": "T",
            "price": price, **kw}


def model(scores: dict[str, float] | None = None, offers: list[dict[str, Any]] | None = None,
          *, commercial: bool | None = True, open_weights: bool | None = True,
          geometry: dict[str, Any] | None = None) -> Model:
    """A model whose capability scores are stated priors."""
    return Model.model_validate({
        "name": "Test", "family": "test",
        "licence": {"id": "test-licence", "open_weights": open_weights,
                    "commercial_use": commercial},
        "priors": {ax: {"value": v, "reason": "test"} for ax, v in (scores or {}).items()},
        "controls": {"negative_prompt": "native",
                     "guidance": {"kind": "true-cfg", "min": 1, "max": 20, "default": 7},
                     "steps": {"min": 1, "max": 50, "default": 30}, "seed": True,
                     "max_images_per_call": 4},
        "geometry": geometry or FREE,
        "offers": offers if offers is not None else [offer()],
    })


def catalog(**models: Model) -> Catalog:
    settings = Settings(providers={"openai": "", "fal": "", "replicate": "", "local": ""},
                        sources={"T": "test"})
    return Catalog(settings, AXES, {k.replace("_", "-"): v for k, v in models.items()})


GOOD = {"prompt_adherence": 8.0, "photorealism": 8.0, "speed": 8.0, "resolution": 7.0,
        "text_rendering": 5.0, "composition": 5.0, "style_range": 5.0}


def good(**over: float) -> dict[str, float]:
    return {**GOOD, **over}
