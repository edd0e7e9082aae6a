"""Simulated provider platform APIs, for ``catalog sync`` and ``catalog verify`` tests.

- fal Platform API (``api.fal.ai/v1``, base URL from ``MODELGLASS_FAL_API_URL``):
  ``GET /v1/models/pricing?endpoint_id=a,b`` (1–50 ids, ``Authorization: Key …``) →
  ``{"prices": [{"endpoint_id", "unit_price", "unit", "currency"}], "next_cursor", "has_more"}``;
  ``GET /v1/models?category=&status=&limit=&cursor=`` (or ``?endpoint_id=a,b``, find mode) →
  ``{"models": [{"endpoint_id", "metadata": {"display_name", "category", "status", …}}],
  "next_cursor", "has_more"}`` (shapes from fal's Platform API reference).
  ``GET /v1/models/billing-events?request_id=a,b`` → ``{"billing_events": [{"request_id",
  "endpoint_id", "output_units", "unit_price", "cost_estimate_nano_usd"}], …}`` for the jobs the
  fal simulator ran, billed at ``fal_prices``.
- OpenAI ``GET /v1/models`` → ``{"object": "list", "data": [{"id", "object": "model",
  "created", "owned_by"}]}``, served by the OpenAI simulator's listener.
- Replicate ``GET /v1/models/{owner}/{name}`` → ``{"owner", "name", "visibility",
  "latest_version": {"id", "created_at"}, …}`` or 404, served by the Replicate listener.

What they answer is :class:`PlatformData` (``sim.platform``): by default every endpoint the shipped
catalog describes, at the catalog's own unit prices, plus one endpoint per provider the catalog
does not describe. Tests edit it to script a price change, a model gone, a failure.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from typing import Any

from ._server import ProviderApp, RecordedRequest, Reply, _Drop

__all__ = ["FalPlatformApp", "PlatformData", "with_platform"]

#: Endpoints each provider lists that the shipped catalog does not describe ("seen").
EXTRA = {"fal": "fal-ai/sim/undescribed-model", "openai": "gpt-image-sim-undescribed",
         "replicate": "sim-labs/undescribed-model"}


class PlatformData:
    """What the simulated platform APIs say. Filled from the shipped catalog on first use.

    - ``fal_prices``: endpoint id → ``(unit_price, unit)`` (unit ``image`` or ``megapixels``);
    - ``fal_models``: endpoint id → ``{"category", "status", "display_name"}``;
    - ``openai_models``: model ids ``GET /v1/models`` lists;
    - ``replicate_models``: ``owner/name`` → latest version id (missing: 404).

    ``fail(api, status, times)`` makes the next calls to ``api`` (``fal-pricing``,
    ``fal-models``, ``openai-models``, ``replicate-model``) answer ``status``.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded = False
        self._fal_prices: dict[str, tuple[float, str]] = {}
        self._fal_models: dict[str, dict[str, str]] = {}
        self._openai_models: list[str] = []
        self._replicate_models: dict[str, str] = {}
        self._failures: dict[str, list[int]] = {}
        self.calls: dict[str, int] = {}
        #: Scripted billing: OpenAI's image-output tokens per image are multiplied by this (a price
        #: change as a reply's usage shows it); Replicate reports this ``metrics.predict_time`` per
        #: model (``owner/name``) instead of the service time.
        self.openai_token_factor = 1.0
        self.replicate_predict_time: dict[str, float] = {}
        self._fal_app: Any = None
        self._fal_catalog: dict[str, Any] = {}  # endpoint → the catalog's price (for bills)

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            from ..catalog import Catalog, default_catalog_dir

            cat = Catalog.load(default_catalog_dir())
            for view in cat.offers():
                price, provider = view.offer.price, view.provider
                if provider == "fal":
                    self._fal_models[view.endpoint] = {"category": "text-to-image",
                                                       "status": "active",
                                                       "display_name": view.model.name}
                    unit = _unit_price(price)
                    if unit is not None:
                        self._fal_prices[view.endpoint] = unit
                        self._fal_catalog.setdefault(view.endpoint, price)
                elif provider == "openai":
                    self._openai_models.append(view.endpoint)
                elif provider == "replicate":
                    ref = view.endpoint.split(":", 1)[0]
                    self._replicate_models[ref] = _version_id(ref)
            self._fal_models[EXTRA["fal"]] = {"category": "text-to-image", "status": "active",
                                              "display_name": "Undescribed model"}
            self._fal_prices[EXTRA["fal"]] = (0.01, "image")
            self._fal_models["fal-ai/sim/a-video-model"] = {"category": "text-to-video",
                                                            "status": "active",
                                                            "display_name": "Not an image model"}
            self._openai_models += [EXTRA["openai"], "gpt-4o", "text-embedding-3-small"]
            self._replicate_models[EXTRA["replicate"]] = _version_id(EXTRA["replicate"])

    @property
    def fal_prices(self) -> dict[str, tuple[float, str]]:
        self._load()
        return self._fal_prices

    @property
    def fal_models(self) -> dict[str, dict[str, str]]:
        self._load()
        return self._fal_models

    @property
    def openai_models(self) -> list[str]:
        self._load()
        return self._openai_models

    @property
    def replicate_models(self) -> dict[str, str]:
        self._load()
        return self._replicate_models

    def fail(self, api: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` calls to ``api`` answer HTTP ``status``."""
        if api not in ("fal-pricing", "fal-models", "fal-billing", "openai-models",
                       "replicate-model"):
            raise ValueError(f"unknown platform api {api!r}")
        with self._lock:
            self._failures.setdefault(api, []).extend([status] * times)

    def _take(self, api: str) -> int | None:
        with self._lock:
            self.calls[api] = self.calls.get(api, 0) + 1
            queue = self._failures.get(api)
            return queue.pop(0) if queue else None


def _unit_price(price: Any) -> tuple[float, str] | None:
    """The catalog price as fal states it: one number per billing unit, or None."""
    kind = price.kind.value
    if kind == "per_image":
        return price.usd, "image"
    if kind == "per_megapixel":
        return price.usd_per_megapixel, "megapixels"
    if kind == "first_megapixel":
        return price.usd, "megapixels"
    if kind == "per_image_resolution":
        return price.usd, "image"
    return None


def _fal_event(data: PlatformData, job: Any) -> dict[str, Any] | None:
    from ..catalog._price import estimate_price

    unit = data.fal_prices.get(job.endpoint)  # loads the catalog's prices first
    price = data._fal_catalog.get(job.endpoint)
    base = _unit_price(price) if price is not None else None
    images = (job.output or {}).get("images") or []
    if price is None or unit is None or base is None or not base[0] or not images:
        return None
    w, h = images[0].get("width", 1024), images[0].get("height", 1024)
    usd = estimate_price(price, w, h, len(images)).usd
    if usd is None:
        return None
    usd *= float(unit[0]) / float(base[0])
    return {"request_id": job.id, "endpoint_id": job.endpoint,
            "timestamp": "2026-12-06T00:00:00Z", "output_units": len(images),
            "unit_price": unit[0], "percent_discount": None,
            "cost_estimate_nano_usd": round(usd * 1e9)}


def _version_id(ref: str) -> str:
    return hashlib.sha256(ref.encode()).hexdigest()


def _page(items: list[Any], req: RecordedRequest, default_limit: int) -> tuple[list[Any], str | None]:
    try:
        start = int(req.query.get("cursor") or 0)
        limit = max(1, int(req.query.get("limit") or default_limit))
    except ValueError:
        return [], None
    chunk = items[start:start + limit]
    nxt = start + limit
    return chunk, (str(nxt) if nxt < len(items) else None)


class FalPlatformApp(ProviderApp):
    """fal's Platform API: model pricing and the model listing."""

    provider = "fal"

    def __init__(self, state: Any, data: PlatformData) -> None:
        super().__init__(state)
        self.data = data
        self.endpoints: Any = None  # the Simulator's endpoint registry (input schemas)

    def stage(self, req: RecordedRequest, role: str) -> str | None:
        if req.method == "GET" and req.path == "/v1/models/pricing":
            return "platform-pricing"
        if req.method == "GET" and req.path == "/v1/models":
            return "platform-models"
        if req.method == "GET" and req.path == "/v1/models/billing-events":
            return "platform-billing"
        return None

    def handle(self, req: RecordedRequest, stage: str | None, role: str) -> Reply | _Drop:
        if stage is None:
            return self.error_reply(404, stage, f"Not Found: {req.method} {req.path}")
        api = {"platform-pricing": "fal-pricing", "platform-billing": "fal-billing"}.get(
            stage, "fal-models")
        failure = self.data._take(api)
        if failure is not None:
            return self.error_reply(failure, stage)
        if stage == "platform-billing":
            return self._billing_events(req)
        if stage == "platform-pricing":
            if not req.header("authorization", "").startswith("Key "):
                return self.error_reply(401, stage, "Authentication required")
            ids = [i for i in (req.query.get("endpoint_id") or "").split(",") if i]
            if not 1 <= len(ids) <= 50:
                return self.error_reply(422, stage, "endpoint_id: 1 to 50 endpoint ids required")
            prices = [{"endpoint_id": i, "unit_price": self.data.fal_prices[i][0],
                       "unit": self.data.fal_prices[i][1], "currency": "USD"}
                      for i in ids if i in self.data.fal_prices]
            return Reply.json(200, {"prices": prices, "next_cursor": None, "has_more": False})
        wanted_cat, wanted_status = req.query.get("category"), req.query.get("status")
        ids = [i for i in (req.query.get("endpoint_id") or "").split(",") if i]
        models: list[dict[str, Any]] = [{"endpoint_id": eid, "metadata": {**meta, "description": "",
                                                     "updated_at": "2026-11-01T00:00:00Z"}}
                  for eid, meta in self.data.fal_models.items()
                  if (not wanted_cat or meta["category"] == wanted_cat)
                  and (not wanted_status or meta["status"] == wanted_status)
                  and (not ids or eid in ids)]
        if "openapi-3.0" in (req.query.get("expand") or ""):
            for m in models:  # the endpoint's OpenAPI document, as fal's expand gives it
                m["openapi"] = _fal_openapi(str(m["endpoint_id"]), self.endpoints)
        chunk, nxt = _page(models, req, 20)
        return Reply.json(200, {"models": chunk, "next_cursor": nxt, "has_more": nxt is not None})

    def _billing_events(self, req: RecordedRequest) -> Reply:
        """fal's ``GET /v1/models/billing-events?request_id=…``: one event per request the fal
        simulator ran, billed at ``fal_prices`` (the catalog's formula scaled by the ratio of the
        simulated unit price to the catalog's: a scripted price change shows here)."""
        if not req.header("authorization", "").startswith("Key "):
            return self.error_reply(401, "platform-billing", "Authentication required")
        ids = [i for i in (req.query.get("request_id") or "").split(",") if i]
        jobs = getattr(self.data._fal_app, "_jobs", {})
        events = []
        for rid in ids[:50]:
            job = jobs.get(rid)
            event = _fal_event(self.data, job) if job is not None else None
            if event is not None:
                events.append(event)
        return Reply.json(200, {"billing_events": events, "next_cursor": None, "has_more": False})

    def error_reply(self, status: int, stage: str | None, message: str | None = None,
                    retry_after: float | None = None) -> Reply:
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else {}
        return Reply.json(status, {"detail": message or f"Simulated error {status}"}, headers)


def _fal_openapi(endpoint: str, endpoints: Any) -> dict[str, Any] | None:
    """A queue OpenAPI 3.0 document for ``endpoint`` whose submit body is its input schema."""
    schema = endpoints.lookup("fal", endpoint)[1] if endpoints is not None else None
    if schema is None:
        return None
    body = {"$ref": "#/components/schemas/Input"}
    return {"openapi": "3.0.4", "info": {"title": endpoint, "version": "1.0.0"},
            "paths": {f"/{endpoint}": {"post": {"requestBody": {"required": True, "content": {
                "application/json": {"schema": body}}}}}},
            "components": {"schemas": {"Input": schema.input}}}


_REPLICATE_MODEL = re.compile(r"^/v1/models/([^/]+)/([^/]+)$")


class _WithPlatform(ProviderApp):
    """An OpenAI or Replicate simulator app plus that provider's platform route."""

    def __init__(self, inner: ProviderApp, data: PlatformData) -> None:
        self.inner = inner
        self.data = data
        self.provider = inner.provider
        self.state = inner.state  # the same object: records and faults stay the provider's

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stage(self, req: RecordedRequest, role: str) -> str | None:
        if req.method == "GET":
            if self.provider == "openai" and req.path == "/v1/models":
                return "platform-models"
            if self.provider == "replicate" and _REPLICATE_MODEL.match(req.path):
                return "platform-model"
        return self.inner.stage(req, role)

    def handle(self, req: RecordedRequest, stage: str | None, role: str) -> Reply | _Drop:
        if stage == "platform-models":
            return self._openai_models(req)
        if stage == "platform-model":
            return self._replicate_model(req)
        return self.inner.handle(req, stage, role)

    def error_reply(self, status: int, stage: str | None, message: str | None = None,
                    retry_after: float | None = None) -> Reply:
        return self.inner.error_reply(status, stage, message, retry_after)

    def wrong_shape(self, stage: str | None) -> Any:
        return self.inner.wrong_shape(stage)

    def fault_reply(self, fault: Any, req: RecordedRequest, stage: str | None,
                    role: str) -> Reply | _Drop | None:
        return self.inner.fault_reply(fault, req, stage, role)

    def _openai_models(self, req: RecordedRequest) -> Reply:
        failure = self.data._take("openai-models")
        if failure is not None:
            return self.inner.error_reply(failure, "platform-models")
        if not req.header("authorization", "").startswith("Bearer "):
            return self.inner.error_reply(401, "platform-models", "You didn't provide an API key.")
        data = [{"id": mid, "object": "model", "created": 1_700_000_000, "owned_by": "system"}
                for mid in self.data.openai_models]
        return Reply.json(200, {"object": "list", "data": data})

    def _replicate_model(self, req: RecordedRequest) -> Reply | _Drop:
        failure = self.data._take("replicate-model")
        if failure is not None:
            return self.inner.error_reply(failure, "platform-model")
        if not req.header("authorization", "").startswith("Bearer "):
            return self.inner.error_reply(401, "platform-model")
        m = _REPLICATE_MODEL.match(req.path)
        assert m is not None
        ref = f"{m.group(1)}/{m.group(2)}"
        version = self.data.replicate_models.get(ref)
        if version is None:
            return Reply.json(404, {"title": "Not found", "status": 404,
                                    "detail": "The requested resource could not be found"})
        latest: dict[str, Any] = {"id": version, "created_at": "2026-11-01T00:00:00.000000Z"}
        endpoints = getattr(self.inner, "endpoints", None)
        schema = endpoints.lookup("replicate", ref)[1] if endpoints is not None else None
        if schema is not None:  # the version's openapi_schema, as Replicate's model GET has it
            latest["openapi_schema"] = {"components": {"schemas": {"Input": schema.input}}}
        return Reply.json(200, {
            "url": f"https://replicate.com/{ref}", "owner": m.group(1), "name": m.group(2),
            "description": "", "visibility": "public", "run_count": 1,
            "latest_version": latest})


def with_platform(app: ProviderApp, data: PlatformData) -> ProviderApp:
    """``app`` (the OpenAI or Replicate simulator) also answering its platform route."""
    return _WithPlatform(app, data)

