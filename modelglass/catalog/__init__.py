"""The catalog: models, their offers, capability scores with evidence, prices and quality axes.

>>> import modelglass as mg
>>> cat = mg.Catalog.default()
>>> cat.models["flux-schnell"].name
'FLUX.1 [schnell]'
>>> est = cat.estimate_cost("flux-dev", provider="fal", width=1024, height=1024, n=1)
>>> est.offer, est.usd, est.max_usd
('flux-dev@fal', 0.025, 0.025)

The catalog's data model is the bottom layer of modelglass: schema (``_schema``), YAML reading
(``_yaml``, ``_load``, ``_overlay``), prices (``_price``, ``_tokens``, ``_buckets``), scores
(``_scores``, ``_calibrate``), offer views (``_view``), the :class:`Catalog` itself
(``_catalog``) and what was observed (``_observed``, ``_pass_rate``, ``_bills``). It imports
nothing that plans, routes or calls a provider; the tools that do (query, html, plot, sync,
verify) live in :mod:`modelglass.catalog_tools`. See docs/architecture.md.
"""

from __future__ import annotations

from ._catalog import Catalog, Comparison
from ._load import default_catalog_dir
from ._price import CostEstimate, cost_from_usage, estimate_price
from ._schema import (
    AXES,
    LOCAL,
    Controls,
    Evidence,
    Geometry,
    GuidanceKind,
    Licence,
    Lifecycle,
    Model,
    Offer,
    Price,
    PriceKind,
    QualityAxis,
    Settings,
    Status,
)
from ._scores import Score
from ._view import STALE_AFTER_DAYS, OfferView

__all__ = [
    "AXES",
    "LOCAL",
    "STALE_AFTER_DAYS",
    "Catalog",
    "Comparison",
    "Controls",
    "CostEstimate",
    "Evidence",
    "Geometry",
    "GuidanceKind",
    "Licence",
    "Lifecycle",
    "Model",
    "Offer",
    "OfferView",
    "Price",
    "PriceKind",
    "QualityAxis",
    "Score",
    "Settings",
    "Status",
    "cost_from_usage",
    "default_catalog_dir",
    "estimate_price",
]
