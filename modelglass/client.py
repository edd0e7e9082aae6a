"""``Client`` and ``AsyncClient``: route → plan → budget → call → download → result.

Everything that needs no I/O lives in :class:`_BaseClient` (request building, availability,
routing, planning); the two clients differ only where they wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from .catalog import Catalog, OfferView
from .errors import InvalidRequest, ProviderUnavailable
from .plan import ProviderCall, plan_call
from .providers import PROVIDER_CLASSES, create_provider
from .providers.base import Availability, Provider
from .request import ImageRequest

log = logging.getLogger("modelglass")

__all__ = ["Client", "AsyncClient"]

Available = Iterable[str] | Callable[[OfferView], Availability] | None


class _BaseClient:
    """Shared, I/O-free core of both clients."""

    def __init__(self, *, catalog: Catalog | None = None, local: Provider | None = None,
                 providers: dict[str, Provider] | None = None, available: Iterable[str] | None = None,
                 api_keys: dict[str, str] | None = None, budget: Any = None,
                 timeout_s: float = 120.0, deadline_s: float = 600.0, max_retries: int = 3,
                 retry_after_cap_s: float = 30.0) -> None:
        self.catalog = catalog or Catalog.default()
        self._providers: dict[str, Provider] = dict(providers or {})
        if local is not None:
            self._providers["local"] = local
        self._api_keys = dict(api_keys or {})
        self._assume_available = set(available) if available is not None else None
        self.budget = budget
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.max_retries = max_retries
        self.retry_after_cap_s = retry_after_cap_s

    def __repr__(self) -> str:  # never shows keys
        return (f"{type(self).__name__}(catalog={self.catalog!r}, "
                f"providers={sorted(self._providers)})")

    # -- providers --------------------------------------------------------------------------------
    def provider(self, name: str) -> Provider:
        """The provider instance for ``name``, created on first use with this client's keys."""
        if name not in self._providers:
            if name not in PROVIDER_CLASSES:
                raise ProviderUnavailable(f"unknown provider {name!r}; known: "
                                          f"{', '.join(PROVIDER_CLASSES)}", provider=name)
            kwargs: dict[str, Any] = {}
            if name in self._api_keys:
                kwargs["api_key"] = self._api_keys[name]
            self._providers[name] = create_provider(name, **kwargs)
        return self._providers[name]

    def availability(self, name: str) -> Availability:
        """Whether provider ``name`` can be called from here, and why not."""
        try:
            return self.provider(name).availability()
        except ProviderUnavailable as exc:
            return Availability(False, str(exc))
        except ImportError as exc:  # a provider module that cannot even be imported
            return Availability(False, f"provider module not importable: {exc}")

    def _offer_available(self, assume: set[str] | None) -> Callable[[OfferView], Availability]:
        cache: dict[str, Availability] = {}

        def check(view: OfferView) -> Availability:
            if assume is not None:
                return (Availability(True, "assumed available") if view.provider in assume
                        else Availability(False, f"provider {view.provider!r} not in the assumed set "
                                                 f"({', '.join(sorted(assume)) or 'none'})"))
            if view.key in cache:
                return cache[view.key]
            if view.provider in cache:
                return cache[view.provider]
            try:
                prov = self.provider(view.provider)
                result = prov.offer_availability(view)
                per_offer = prov.per_offer_availability
            except ProviderUnavailable as exc:
                result, per_offer = Availability(False, str(exc)), False
            except ImportError as exc:
                result, per_offer = Availability(False, f"provider module not importable: {exc}"), False
            # Most providers are available or not as a whole; some (local weights) per offer.
            cache[view.key if per_offer else view.provider] = result
            return result

        return check

    # -- requests ---------------------------------------------------------------------------------
    @staticmethod
    def _request(request: ImageRequest | str | None, **kw: Any) -> ImageRequest:
        if isinstance(request, ImageRequest):
            if kw:
                data = request.model_dump()
                data.update({k: v for k, v in kw.items() if v is not None})
                return ImageRequest(**data)
            return request
        if request is None:
            if "prompt" not in kw:
                raise InvalidRequest("a prompt is required", field="prompt")
            return ImageRequest(**{k: v for k, v in kw.items() if v is not None})
        return ImageRequest(prompt=request, **{k: v for k, v in kw.items() if v is not None})

    def route(self, request: ImageRequest | str | None = None, /, *,
              available: Iterable[str] | None = None, **kw: Any) -> Any:
        """Rank every eligible offer for ``request`` and say why; no network.

        ``available`` overrides which providers count as available (default: those configured
        here — keys present, clients installed, local weights found).
        """
        from .routing import route

        req = self._request(request, **kw)
        assume = set(available) if available is not None else self._assume_available
        return route(req, self.catalog, available=self._offer_available(assume),
                     providers=self._providers_for_planning())

    def _providers_for_planning(self) -> dict[str, Provider]:
        return dict(self._providers)

    def plan(self, request: ImageRequest | str | None = None, /, *,
             available: Iterable[str] | None = None, **kw: Any) -> ProviderCall:
        """Dry run: the exact provider payload, fates and cost estimate of the routed choice."""
        decision = self.route(request, available=available, **kw)
        return decision.require().call  # type: ignore[no-any-return]

    def plan_offer(self, request: ImageRequest, offer_key: str) -> ProviderCall:
        """Plan ``request`` on one named offer (``"flux-dev@fal"``), bypassing routing."""
        view = self.catalog.offer(offer_key)
        return plan_call(request, view, provider=self._providers.get(view.provider))


class Client(_BaseClient):
    """The synchronous client. ``generate`` is added by the call path (see below)."""

    def close(self) -> None:
        for p in self._providers.values():
            p.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The asynchronous twin of :class:`Client`, with the same methods."""

    async def aclose(self) -> None:
        for p in self._providers.values():
            await p.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
