"""Replicate through the official ``replicate`` client: create a prediction, poll it to the end.

- Official models (``owner/name``) are created with ``client.models.predictions.create``;
  versioned refs (``owner/name:version``, e.g. SDXL) with ``client.predictions.create(version=)``.
  ``replicate.run`` is not used: it would GET the version schema first and wrap outputs in
  ``FileOutput`` (which sends the API token to the file host). Outputs stay plain URLs and
  modelglass downloads them.
- A create is never repeated once the server answered with a prediction id: a failed poll is
  retried (by id) within the job's deadline. When the deadline runs out the prediction is
  cancelled (best effort) and :class:`GenerationTimeout` is raised.

Retries and timeouts. The client's ``RetryTransport`` retries GETs on 429/503/504 up to 10
times, honouring Retry-After *without a cap*; creates (POST) are never retried by it. modelglass
passes its own inner transport (:func:`._transport.escalating_transport`, via the client's
``transport=`` argument): error replies and connection errors leave it as
:class:`._transport.HTTPFailure`, so the ``RetryTransport`` never sees a retryable status and every
retry decision is modelglass's. The client gets an explicit ``httpx.Timeout`` and every request's
timeouts are cut to the job's remaining time.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

from ..catalog._bills import num
from ..catalog._wire_schema import closed_schema, resolve_refs
from ..errors import EmptyResult, ModelglassError, ProviderError
from ..jobs._steps import Deadline, Wait
from ._errors import excerpt, never_sent
from ._fields import WireDefaults, build_fields
from ._payload import image_ref, merge_options, mime_for_format
from ._replicate_lookup import PredictionLookup, snapshot
from ._transport import HTTPFailure, escalating_transport
from .base import ProviderOutput, RawImage

if TYPE_CHECKING:
    from ..catalog import OfferView
    from ..catalog._bills import BillLine
    from ..jobs._steps import Step
    from ..plan import Planned, ProviderCall
    from ..result import Fate

__all__ = ["REPLICATE_WIRE", "ReplicateProvider"]

log = logging.getLogger("modelglass")

REPLICATE_WIRE = WireDefaults(
    size="aspect_ratio",
    names={"n": "num_outputs", "steps": "num_inference_steps", "guidance": "guidance",
           "negative_prompt": "negative_prompt", "seed": "seed", "output_format": "output_format",
           "true_cfg": None},
    output_formats=("webp", "jpg", "png"),
    # cog-sdxl's ``scheduler`` enum (wire-formats.md §3.6); KarrasDPM is DPM++ 2M with Karras
    # sigmas there. HeunDiscrete and PNDM have no unified name.
    samplers={"euler": "K_EULER", "euler_a": "K_EULER_ANCESTRAL", "dpmpp_2m": "DPMSolverMultistep",
              "dpmpp_2m_karras": "KarrasDPM", "ddim": "DDIM"},
)

#: Replicate's API, unless ``$REPLICATE_BASE_URL``.
API = "https://api.replicate.com"
_TERMINAL = ("succeeded", "failed", "canceled")
# Replicate reports a safety-checker refusal only as the prediction's error *text*; there is no
# code or status for it, so this is the one place a message is matched.
_NSFW_RE = re.compile(r"nsfw|safety[ _-]?check|sensitive (image|content)|content[ _-]?polic", re.IGNORECASE)
_EXT_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
             ".webp": "image/webp", ".gif": "image/gif"}


class ReplicateProvider(PredictionLookup["_Wire"]):
    """Replicate, through ``replicate.Client``.

    ``request_timeout_s`` bounds each HTTP request; the job's ``timeout_s`` bounds create → done.
    ``poll_interval_s`` defaults to ``REPLICATE_POLL_INTERVAL`` (else 0.5 s, as the client does);
    after 5 s of polling it grows ×1.5 per poll up to ``max_poll_interval_s``.
    """

    name = "replicate"
    brand = "Replicate"
    env_keys = ("REPLICATE_API_TOKEN",)
    key_help = "no Replicate token: set REPLICATE_API_TOKEN"
    key_arg = "api_token"
    client_package = "replicate"
    client_dist = "replicate"
    extra = "replicate"
    no_bill = ("no bill: Replicate reports run time only for time-billed models "
               "(set the price's usd_per_second) and outputs for official ones")

    @classmethod
    def bill_line(cls, result: Any) -> BillLine | None:
        """For an offer billed by time (its price sets ``usd_per_second``, the hardware's rate
        from replicate.com/pricing): ``metrics.predict_time`` × that rate; for an official model
        billed per output, the per-output price × the outputs delivered (Replicate reports no
        charge, so only a change in outputs per job is seen)."""
        plan, extra = result.plan, getattr(result, "extra", None) or {}
        price = plan.offer.offer.price
        if price.usd_per_second:
            times = [num((t or {}).get("replicate_predict_time"))
                     for t in extra.get("provider_timings") or []]
            if not times or any(t is None for t in times):
                return None
            secs = sum(t for t in times if t is not None)
            return (secs * price.usd_per_second,
                    f"replicate metrics.predict_time × ${price.usd_per_second:g}/s", None)
        if ":" not in plan.offer.endpoint and price.kind.value == "per_image" and price.usd:
            return (price.usd * len(result.images),
                    "replicate per-output price × outputs delivered", None)
        return None

    @classmethod
    def schema_api(cls, env: Mapping[str, str]) -> tuple[str, dict[str, str]] | None:
        """Replicate's API (``$REPLICATE_BASE_URL``); None without ``REPLICATE_API_TOKEN``."""
        token = env.get("REPLICATE_API_TOKEN")
        return (env.get("REPLICATE_BASE_URL") or API, {"Authorization": f"Bearer {token}"}
                ) if token else None

    @classmethod
    def published_input(cls, api: Any, endpoint: str, version: str | None
                        ) -> tuple[dict[str, Any] | None, str]:
        """``GET /v1/models/{owner}/{name}/versions/{id}`` for a pinned version, else
        ``GET /v1/models/{owner}/{name}`` (its ``latest_version``): the ``openapi_schema``'s
        ``components.schemas.Input``."""
        if version:
            path = f"/v1/models/{endpoint}/versions/{version}"
            status, body = api.get(path)
            schema = (body or {}).get("openapi_schema") if status != 404 else None
        else:
            path = f"/v1/models/{endpoint}"
            status, body = api.get(path)
            latest = ((body or {}).get("latest_version") or {}) if status != 404 else {}
            schema = latest.get("openapi_schema")
        found = ((schema or {}).get("components") or {}).get("schemas", {}).get("Input")
        return (closed_schema(resolve_refs(found, schema)) if isinstance(found, dict) else None,
                f"Replicate API GET {path} (openapi_schema Input)")

    def __init__(self, api_token: str | None = None, *, request_timeout_s: float = 30.0,
                 poll_interval_s: float | None = None, max_poll_interval_s: float = 2.0,
                 cancel_timeout_s: float = 3.0, poll_retry_backoff_s: float = 0.1,
                 api_key: str | None = None) -> None:
        super().__init__(api_token or api_key, request_timeout_s=request_timeout_s,
                         poll_interval_s=poll_interval_s, max_poll_interval_s=max_poll_interval_s,
                         cancel_timeout_s=cancel_timeout_s,
                         poll_retry_backoff_s=poll_retry_backoff_s)

    @property
    def poll_interval_s(self) -> float:
        """The first interval between polls (``REPLICATE_POLL_INTERVAL``, else 0.5 s)."""
        if self._poll_interval_s is not None:
            return self._poll_interval_s
        try:
            return max(0.01, float(os.environ.get("REPLICATE_POLL_INTERVAL", "0.5")))
        except ValueError:
            return 0.5

    # -- payload (pure) ---------------------------------------------------------------------------
    def build_payload(self, planned: Planned, offer: OfferView) -> tuple[dict[str, Any], dict[str, Fate]]:
        payload, fates, reserved = build_fields(planned, offer, REPLICATE_WIRE, provider=self.name)
        options = dict(planned.options)
        if options.get("safety_tolerance") is not None:
            try:
                options["safety_tolerance"] = int(options["safety_tolerance"])  # Replicate: int
            except (TypeError, ValueError):
                pass
        merge_options(payload, options, provider=self.name, reserved=reserved)
        return payload, fates

    # -- the job ----------------------------------------------------------------------------------
    def cancel_job(self, call: ProviderCall, request_id: str) -> Generator[Step, Any, bool]:
        return self._cancel(request_id)

    def _job(self, call: ProviderCall, deadline: Deadline, *, resume: str | None = None,
             on_submitted: Callable[[str], None] | None = None
             ) -> Generator[Step, Any, ProviderOutput]:
        endpoint = call.offer.endpoint
        if resume is not None:  # created earlier (e.g. before a crash): poll it, never re-create
            pred: dict[str, Any] = {"id": resume, "status": "starting"}
        else:
            pred = yield from self._create(call, deadline)
        pid = str(pred["id"])
        self._claim(pid)
        if on_submitted is not None:
            on_submitted(pid)
        what = f"Replicate prediction {pid} ({endpoint})"
        created_s = deadline.elapsed()
        pred = yield from self._poll(pred, deadline, what)
        return self._output(pred, call, what, created_s, deadline)

    def _create(self, call: ProviderCall, deadline: Deadline
                ) -> Generator[Step, Any, dict[str, Any]]:
        """Create the prediction; when the create's answer was lost, find the prediction it
        made instead of creating another (else :class:`OutcomeUnknown`)."""
        endpoint = call.offer.endpoint
        model, _, version = endpoint.partition(":")
        sent_at = time.time()
        try:
            if version:
                return snapshot((yield self._op(deadline, "create_version", version, call.payload)))
            return snapshot((yield self._op(deadline, "create_model", model, call.payload)))
        except Exception as exc:  # noqa: BLE001
            err = self._error(exc, f"create on {endpoint}")
            if not self._may_have_created(exc):
                raise err from None
            why = self._lost_reason(exc, err)
        found = yield from self._find_lost(call, sent_at, deadline)
        if found is None:
            raise self._unknown(f"the create on {endpoint}", why)
        log.warning("replicate: the create on %s lost its answer (%s); found its prediction %s "
                    "by listing recent predictions", endpoint, why, found["id"])
        if deadline.remaining() <= self._reserve(deadline):
            # Found too late to wait for it: cancel it now that its id is known.
            self._claim(str(found["id"]))
            cancelled = yield from self._cancel(str(found["id"]))
            raise self._unknown(f"the create on {endpoint}",
                                f"{why}; its prediction was found after the deadline",
                                request_id=str(found["id"]), cancelled=cancelled)
        return found

    def _poll(self, pred: dict[str, Any], deadline: Deadline, what: str
              ) -> Generator[Step, Any, dict[str, Any]]:
        """Poll the prediction by id to a terminal status; cancel it at the deadline."""
        pid = str(pred["id"])
        reserve = self._reserve(deadline)  # the cancel must fit inside the deadline too
        interval = self.poll_interval_s
        failures = 0
        while pred.get("status") not in _TERMINAL:
            if deadline.remaining() <= reserve:
                cancelled = yield from self._cancel(pid, deadline)
                raise self._ran_out(what, str(pred.get("status")), deadline, cancelled, pid)
            yield Wait(max(0.0, min(interval, deadline.remaining() - reserve)))
            if deadline.elapsed() > 5.0:
                interval = min(interval * 1.5, self.max_poll_interval_s)
            if deadline.remaining() <= reserve:
                continue
            failed: BaseException | None = None
            try:
                pred = snapshot((yield self._op(deadline, "get", pid)))
            except Exception as exc:  # noqa: BLE001
                failed = self._error(exc, f"poll of {what}")
            if failed is not None:
                yield from self._poll_again(failed, failures, deadline, pid, what,
                                            str(pred.get("status")), pid)
                failures += 1
        return pred

    # -- lost creates -----------------------------------------------------------------------------
    @staticmethod
    def _may_have_created(exc: BaseException) -> bool:
        """Whether a failed create may have made a prediction: not when Replicate answered
        with an error status, nor when no connection was made; yes for a lost, cut or late
        answer (or one that could not be read)."""
        if isinstance(exc, ModelglassError):
            return False
        if isinstance(exc, HTTPFailure):
            return exc.response is None and not never_sent(exc)
        rep = _replicate_error_type()
        if rep is not None and isinstance(exc, rep):
            return False
        return not never_sent(exc)

    # -- parsing (pure) ---------------------------------------------------------------------------
    def _output(self, pred: Mapping[str, Any], call: ProviderCall, what: str, created_s: float,
                deadline: Deadline) -> ProviderOutput:
        secrets = self._secrets()
        status = pred.get("status")
        if status == "failed":
            error = str(pred.get("error") or "no error message")
            if _NSFW_RE.search(error):
                raise self._refused(f"{what} failed: the model's safety checker refused it "
                                    f"({excerpt(error, secrets, 200)}).", "nsfw")
            raise ProviderError(f"{what} failed: {excerpt(error, secrets, 300)}. The model could "
                                f"not run this input; check the logs on replicate.com.",
                                provider=self.name, body=excerpt(error, secrets),
                                retryable=False)
        if status == "canceled":
            raise ProviderError(f"{what} was canceled before it finished (by someone else, or a "
                                f"deadline on Replicate's side).", provider=self.name,
                                retryable=False)
        output = pred.get("output")
        items = output if isinstance(output, list) else ([] if output is None else [output])
        urls = [u for u in items if isinstance(u, str) and u]
        if len(urls) != len(items):
            raise self._wrong_shape(what, "the output is not a list of URL strings", output)
        if not urls:
            raise EmptyResult(f"{what} succeeded without output images. Retry, or pick another "
                              f"model.", provider=self.name)
        fmt = call.payload.get("output_format")
        seeds = call.planned.seeds if call.planned.seeds and "seed" in call.payload else None
        images: list[RawImage] = []
        for i, url in enumerate(urls):
            data, url_out, uri_mime = image_ref(url, provider=self.name, what=what,
                                                where=f"output[{i}]")
            mime = uri_mime or _mime_from_url(url) or mime_for_format(str(fmt) if fmt else "png")
            images.append(RawImage(data=data, url=url_out, mime=mime,
                                   seed=seeds[0] if seeds and len(urls) == 1 else None))
        timings = {"create_s": round(created_s, 4), "total_s": round(deadline.elapsed(), 4)}
        metrics = pred.get("metrics") or {}
        for k, v in metrics.items() if isinstance(metrics, Mapping) else ():
            if isinstance(v, (int, float)):
                timings[f"replicate_{k}"] = float(v)
        raw = {k: v for k, v in pred.items() if k not in ("logs", "output", "input")}
        raw["output"] = [u if not u.startswith("data:") else "data:…" for u in urls]
        return ProviderOutput(images=images, cost_usd=None, request_id=str(pred.get("id")),
                              raw=raw, timings=timings,
                              extra={"version": pred.get("version"), "model": pred.get("model")})

    def _http_error(self, status: int, headers: Mapping[str, str], body: Any,
                    what: str) -> ModelglassError:
        secrets = self._secrets()
        detail = None
        if isinstance(body, Mapping):
            parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
            detail = excerpt(" — ".join(parts), secrets) if parts else None
        return self._http(status, headers=headers, body=body, what=what, detail=detail)

    def _client_error(self, exc: BaseException, what: str) -> ModelglassError | None:
        if _is_pydantic_v1_error(exc):
            status = _unknown_status(exc)
            if status is not None:
                return ProviderError(
                    f"{what} ended in the state {status!r}, which replicate-python does not know "
                    f"(e.g. 'aborted': a deadline passed before it started). Retry later.",
                    provider=self.name, retryable=False)
            return self._wrong_shape(what, f"the prediction does not match the documented "
                                           f"schema ({_v1_errors(exc)})")
        if isinstance(exc, (KeyError, TypeError, AttributeError)):
            return self._wrong_shape(what, f"the reply has the wrong shape "
                                           f"({type(exc).__name__}: {exc})")
        rep = _replicate_error_type()
        if rep is not None and isinstance(exc, rep):  # ReplicateError without our transport
            status_code = int(getattr(exc, "status", 0) or 0)
            return self._http(status_code, body=getattr(exc, "detail", None), what=what)
        return None

    # -- the wire (lazy) --------------------------------------------------------------------------
    def _make_wire(self, *, asynchronous: bool) -> _Wire:
        token = self._require_key()
        import httpx
        import replicate

        inner = httpx.AsyncHTTPTransport() if asynchronous else httpx.HTTPTransport()
        return _Wire(replicate.Client(
            api_token=token,
            timeout=httpx.Timeout(self.request_timeout_s, connect=10.0),
            transport=escalating_transport(inner, asynchronous=asynchronous)), asynchronous)

    def _close_wire(self, wire: _Wire) -> None:
        wire.client._client.close()  # the client has no public close()

    async def _aclose_wire(self, wire: _Wire) -> None:
        await wire.client._async_client.aclose()


def _mime_from_url(url: str) -> str | None:
    path = url.split("?", 1)[0].lower()
    for ext, mime in _EXT_MIME.items():
        if path.endswith(ext):
            return mime
    return None


def _is_pydantic_v1_error(exc: BaseException) -> bool:
    try:
        from pydantic.v1 import ValidationError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, ValidationError)


def _unknown_status(exc: Any) -> str | None:
    """The status value a pydantic.v1 ValidationError refused, from its structured errors."""
    for e in exc.errors():
        if tuple(e.get("loc", ())) == ("status",) and isinstance(e.get("ctx"), Mapping):
            given = e["ctx"].get("given")
            if isinstance(given, str):
                return given
    return None


def _v1_errors(exc: Any) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
                     for e in exc.errors()[:4])


def _replicate_error_type() -> type | None:
    try:
        from replicate.exceptions import ReplicateError
    except ImportError:  # pragma: no cover
        return None
    return ReplicateError


class _Wire:
    """The I/O of one prediction: each method is one call of the replicate client (blocking,
    or its ``async_`` twin's coroutine)."""

    def __init__(self, client: Any, asynchronous: bool) -> None:
        self.client = client
        self.asynchronous = asynchronous

    def _method(self, obj: Any, name: str) -> Any:
        return getattr(obj, f"async_{name}" if self.asynchronous else name)

    def create_model(self, model: str, input: dict[str, Any]) -> Any:
        return self._method(self.client.models.predictions, "create")(model=model, input=input)

    def create_version(self, version: str, input: dict[str, Any]) -> Any:
        return self._method(self.client.predictions, "create")(version=version, input=input)

    def get(self, pid: str) -> Any:
        return self._method(self.client.predictions, "get")(pid)

    def cancel(self, pid: str) -> Any:
        return self._method(self.client.predictions, "cancel")(pid)

    def recent(self) -> Any:
        """``GET /v1/predictions``: the raw reply (its JSON is read by the job)."""
        return (self.client._async_request if self.asynchronous
                else self.client._request)("GET", "/v1/predictions")
