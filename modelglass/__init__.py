"""modelglass: one call to generate images, whatever serves the model.

>>> import modelglass as mg
>>> client = mg.Client()                                          # doctest: +SKIP
>>> r = client.generate("a lighthouse at dusk", quality="hero")   # doctest: +SKIP
>>> r.images[0].save("out.png")                                   # doctest: +SKIP

The public surface is what this module exports; everything else is private. Heavy dependencies
(torch, diffusers, the provider clients) are imported lazily, where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import catalog_tools as _catalog_tools  # noqa: F401  (registers Catalog.query, plot, write_html)
from ._version import __version__
from .catalog import Catalog, CostEstimate, OfferView, Score
from .checks import Checker, CheckResult
from .errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    CatalogError,
    ContentRejected,
    DownloadFailed,
    EmptyResult,
    GenerationTimeout,
    InvalidRequest,
    JournalError,
    ModelglassError,
    NoEligibleModel,
    OutcomeUnknown,
    PayloadInvalid,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StorageError,
)
from .plan import Planned, ProviderCall, plan_call
from .request import ImageRequest, Quality, Sampler
from .result import Attempt, Fate, FateKind, GeneratedImage, ImageResult

if TYPE_CHECKING:
    from ._compare import compare_models as compare
    from ._eval import evaluate
    from ._provenance import read_metadata
    from .budget import Budget
    from .catalog._observed import ObservedStore
    from .client import AsyncClient, Client
    from .providers.local import LocalBackend
    from .routing import Policy, RoutingDecision


__all__ = [
    "AllAttemptsFailed",
    "AsyncClient",
    "Attempt",
    "Budget",
    "BudgetExceeded",
    "Catalog",
    "CatalogError",
    "CheckResult",
    "Checker",
    "Client",
    "ContentRejected",
    "CostEstimate",
    "DownloadFailed",
    "EmptyResult",
    "Fate",
    "FateKind",
    "GeneratedImage",
    "GenerationTimeout",
    "ImageRequest",
    "ImageResult",
    "InvalidRequest",
    "JournalError",
    "LocalBackend",
    "ModelglassError",
    "NoEligibleModel",
    "ObservedStore",
    "OfferView",
    "OutcomeUnknown",
    "PayloadInvalid",
    "Planned",
    "Policy",
    "ProviderCall",
    "ProviderError",
    "ProviderUnavailable",
    "Quality",
    "RateLimited",
    "RoutingDecision",
    "Sampler",
    "Score",
    "StorageError",
    "__version__",
    "compare",
    "evaluate",
    "plan_call",
    "read_metadata",
]

_LAZY = {
    "Client": ("modelglass.client", "Client"),
    "AsyncClient": ("modelglass.client", "AsyncClient"),
    "Budget": ("modelglass.budget", "Budget"),
    "ObservedStore": ("modelglass.catalog._observed", "ObservedStore"),
    "LocalBackend": ("modelglass.providers.local", "LocalBackend"),
    "RoutingDecision": ("modelglass.routing", "RoutingDecision"),
    "Policy": ("modelglass.routing", "Policy"),
    "compare": ("modelglass._compare", "compare_models"),
    "read_metadata": ("modelglass._provenance", "read_metadata"),
    "evaluate": ("modelglass._eval", "evaluate"),
}


def __getattr__(name: str) -> Any:
    # Lazy so `import modelglass` stays fast; none of these import torch or a provider client.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelglass' has no attribute {name!r}")
