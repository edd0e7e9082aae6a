"""Provider modules, loaded lazily by name. Nothing here imports an official client.

``PROVIDER_CLASSES`` maps a provider id (as used in catalog offers) to ``module:Class``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Availability, Provider, ProviderOutput, RawImage

__all__ = [
    "PROVIDER_CLASSES",
    "Availability",
    "Provider",
    "ProviderOutput",
    "RawImage",
    "create_provider",
    "provider_class",
]

PROVIDER_CLASSES: dict[str, str] = {
    "openai": "modelglass.providers.openai:OpenAIProvider",
    "fal": "modelglass.providers.fal:FalProvider",
    "replicate": "modelglass.providers.replicate:ReplicateProvider",
    "local": "modelglass.providers.local:LocalBackend",
}


def provider_class(name: str) -> type[Provider]:
    """The Provider subclass for ``name`` (imports its module, not its official client)."""
    try:
        target = PROVIDER_CLASSES[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_CLASSES)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def create_provider(name: str, **config: Any) -> Provider:
    """Instantiate the provider ``name`` with its configuration (keys, timeouts, ...)."""
    return provider_class(name)(**config)
