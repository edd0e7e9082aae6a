"""Small hand-built catalogs for unit tests that must not depend on the shipped YAML."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelglass.catalog import Catalog
from modelglass.catalog._schema import Lifecycle, Model, QualityAxis, Settings

AS_OF = dt.date(2026, 11, 1)


def axis(**kw: Any) -> QualityAxis:
    base: dict[str, Any] = {"description": "test", "weights": {"prompt_adherence": 1.0},
                                "cost_weight": 0.5, "cost_reference_usd": 0.02}
    base.update(kw)
    return QualityAxis.model_validate(base)


AXES = {
    "draft": axis(weights={"prompt_adherence": 1, "speed": 1}, target_size="1024x1024", cost_weight=0.8,
                  cost_reference_usd=0.005),
    "thumbnail": axis(target_size="512x512", cost_weight=0.7),
    "hero": axis(weights={"prompt_adherence": 2, "photorealism": 1}, target_size="1024x1024",
                 cost_weight=0.1),
    "print": axis(target_size="2048x2048", cost_weight=0.1, min_megapixels=3.5),
}


def model(**kw: Any) -> Model:
    base: dict[str, Any] = {
        "name": "Test", "family": "test",
        "licence": {"id": "apache-2.0", "open_weights": True, "commercial_use": True},
        "controls": {"negative_prompt": "native", "guidance": {"kind": "true-cfg", "min": 1, "max": 20, "default": 7},
                     "steps": {"min": 1, "max": 50, "default": 30}, "seed": True,
                     "samplers": ["euler", "dpmpp_2m"], "max_images_per_call": 4},
        "geometry": {"multiple_of": 8, "min_side": 256, "max_side": 2048, "max_megapixels": 4.2},
        "offers": [{"provider": "fal", "endpoint": "fal-ai/test", "as_of": AS_OF, "source": "T",
                    "price": {"kind": "per_image", "usd": 0.01}}],
    }
    for k, v in kw.items():
        base[k] = v
    return Model.model_validate(base)


def catalog(models: dict[str, Model] | None = None) -> Catalog:
    settings = Settings(providers={"openai": "", "fal": "", "replicate": "", "local": ""},
                        sources={"T": "test"})
    return Catalog(settings, AXES, models or {"test-sd": model()})


def active_forever(*model_ids: str, base: Catalog | None = None) -> Catalog:
    """The shipped catalog (or ``base``) with ``model_ids`` active and no shutdown date, whatever
    the date: for tests that need "some model of this provider", not a lifecycle."""
    base = base or Catalog.default()
    models = dict(base.models)
    for mid in model_ids:
        models[mid] = models[mid].model_copy(update={"lifecycle": Lifecycle()})
    return Catalog(base.settings, base.quality_axes, models, base.sources)
