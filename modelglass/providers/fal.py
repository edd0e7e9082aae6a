"""fal.ai through the official ``fal-client``, on the queue API: submit → status → result.

The request id is the job's identity. Once a submit has been answered with an id, a status poll
or result fetch that fails transiently is retried *by that id* within the job's deadline; the job
is never submitted again (that would be billed twice). A submit that failed (no id) is left to the
client layer's retry policy.

Retries and timeouts. ``fal-client`` retries up to 10 times by itself (429, 408, 409, ingress
5xx, connection errors, timeouts), ignoring Retry-After. modelglass decides retries instead, so
the ``httpx`` client that ``fal_client.SyncClient`` / ``AsyncClient`` use here is built with an
*escalating transport* (:func:`._transport.escalating_transport`): error replies and transport
errors leave the transport as :class:`._transport.HTTPFailure`, which is not an ``httpx`` error, so
fal-client's retry loop (which catches only ``httpx.HTTPError`` / ``FalClientHTTPError``) lets it
through on the first attempt. No module-level constant of fal-client is changed, so other users
of fal-client in the same process keep its default behaviour. The same transport cuts every
request's timeouts (submit, status, result, cancel; fal-client's own poll timeout is 120 s) to
the job's remaining time.

Field names follow the offer's ``wire:`` map; the defaults below are fal's common schema
(``image_size`` preset or ``{width, height}``, ``num_images``, ``num_inference_steps``,
``guidance_scale``, ``output_format`` ``jpeg``/``png``). ``safety_tolerance`` from
``provider_options["fal"]`` is sent as the string fal's schema wants.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

from ..catalog._wire_schema import input_from_openapi
from ..errors import EmptyResult, GenerationTimeout, ModelglassError, ProviderError, RateLimited
from ..jobs._steps import Wait
from ._errors import excerpt, never_sent
from ._fields import WireDefaults, build_fields
from ._keys import scrub
from ._payload import image_ref, merge_options, mime_for_format
from ._queued import QueuedProvider, poll_backoff, transient
from ._transport import HTTPFailure, escalating_transport
from .base import ProviderOutput, RawImage

if TYPE_CHECKING:
    from ..catalog import OfferView
    from ..catalog._bills import BillLine
    from ..jobs._steps import Deadline, Step
    from ..plan import Planned, ProviderCall
    from ..result import Fate

__all__ = ["FAL_WIRE", "FalProvider"]

log = logging.getLogger("modelglass")

FAL_WIRE = WireDefaults(
    size="image_size",
    names={"n": "num_images", "steps": "num_inference_steps", "guidance": "guidance_scale",
           "negative_prompt": "negative_prompt", "seed": "seed", "output_format": "output_format",
           "true_cfg": None},
    output_formats=("jpeg", "png"),
)

_CONTENT_TYPES = {"content_policy_violation"}
_TIMEOUT_TYPES = {"request_timeout", "startup_timeout"}


#: fal's Platform API (prices, input schemas, billing events), unless ``$MODELGLASS_FAL_API_URL``.
PLATFORM_API = "https://api.fal.ai/v1"


class FalProvider(QueuedProvider["_Wire"]):
    """fal.ai, through ``fal_client`` (queue API).

    >>> FalProvider(api_key="...", request_timeout_s=30).availability().ok  # doctest: +SKIP
    True

    ``request_timeout_s`` bounds each HTTP request; the job's ``timeout_s`` (given per call) bounds
    the whole submit → result. ``poll_interval_s`` is the first status-poll interval; it grows
    ×1.5 per poll up to ``max_poll_interval_s``.
    """

    name = "fal"
    brand = "fal"
    env_keys = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")
    key_pairs = (("FAL_KEY_ID", "FAL_KEY_SECRET"),)
    key_help = "no fal key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)"
    client_package = "fal_client"
    client_dist = "fal-client"
    extra = "fal"
    no_bill = "no bill read yet (fal's billing events need FAL_ADMIN_KEY)"

    @classmethod
    def bill_line(cls, result: Any) -> BillLine | None:
        """Pending, with the job's request ids: fal's Platform API billing events
        (``GET /v1/models/billing-events?request_id=…``, an admin key: ``FAL_ADMIN_KEY``, else
        ``FAL_KEY``) say per request the output units billed, the unit price and
        ``cost_estimate_nano_usd``; ``catalog verify`` reads them
        (:func:`~modelglass.catalog_tools._fal_bills.fetch_fal_bills`)."""
        ids = [str(i) for i in (getattr(result, "extra", None) or {}).get("request_ids") or []
               if i]
        return (None, "fal billing events", ",".join(ids)) if ids else None

    @classmethod
    def schema_api(cls, env: Mapping[str, str]) -> tuple[str, dict[str, str]] | None:
        """fal's Platform API (``$MODELGLASS_FAL_API_URL``), with the key if there is one."""
        key = cls.key_in(env)
        return (env.get("MODELGLASS_FAL_API_URL") or PLATFORM_API,
                {"Authorization": f"Key {key}"} if key else {})

    @classmethod
    def published_input(cls, api: Any, endpoint: str, version: str | None
                        ) -> tuple[dict[str, Any] | None, str]:
        """``GET /models?endpoint_id=…&expand=openapi-3.0`` answers the endpoint's OpenAPI
        document; the input is the JSON body of its ``POST`` (``$ref`` s resolved)."""
        status, body = api.get("/models", {"endpoint_id": endpoint, "expand": "openapi-3.0"})
        models = (body or {}).get("models") or [] if status != 404 else []
        doc = next((m.get("openapi") for m in models if m.get("endpoint_id") == endpoint), None)
        return (input_from_openapi(doc) if isinstance(doc, dict) else None,
                f"fal Platform API GET /models?endpoint_id={endpoint}&expand=openapi-3.0")

    def __init__(self, api_key: str | None = None, *, request_timeout_s: float = 60.0,
                 poll_interval_s: float = 0.1, max_poll_interval_s: float = 1.0,
                 cancel_timeout_s: float = 3.0, poll_retry_backoff_s: float = 0.1) -> None:
        super().__init__(api_key, request_timeout_s=request_timeout_s,
                         poll_interval_s=poll_interval_s, max_poll_interval_s=max_poll_interval_s,
                         cancel_timeout_s=cancel_timeout_s,
                         poll_retry_backoff_s=poll_retry_backoff_s)

    # -- payload (pure) ---------------------------------------------------------------------------
    def build_payload(self, planned: Planned, offer: OfferView) -> tuple[dict[str, Any], dict[str, Fate]]:
        payload, fates, reserved = build_fields(planned, offer, FAL_WIRE, provider=self.name)
        options = dict(planned.options)
        if "safety_tolerance" in options and options["safety_tolerance"] is not None:
            options["safety_tolerance"] = str(options["safety_tolerance"])  # fal: "1".."6"
        merge_options(payload, options, provider=self.name, reserved=reserved)
        return payload, fates

    # -- the job: one pure state machine for both drivers -----------------------------------------
    def cancel_job(self, call: ProviderCall, request_id: str) -> Generator[Step, Any, bool]:
        handle = yield self._op(None, "handle", call.offer.endpoint, request_id)
        return (yield from self._cancel(handle))

    def _job(self, call: ProviderCall, deadline: Deadline, *, resume: str | None = None,
             on_submitted: Callable[[str], None] | None = None
             ) -> Generator[Step, Any, ProviderOutput]:
        app = call.offer.endpoint
        if resume is not None:  # a job submitted earlier (e.g. before a crash): poll, never re-submit
            handle = yield self._op(deadline, "handle", app, resume)
        else:
            try:
                handle = yield self._op(deadline, "submit", app, call.payload)
            except Exception as exc:  # noqa: BLE001 - mapped below
                raise self._submit_error(exc, app) from None
        request_id = str(handle.request_id)
        if on_submitted is not None:
            on_submitted(request_id)
        what = f"fal request {request_id} ({app})"
        submitted = deadline.elapsed()
        log.debug("fal: submitted %s", what)
        started, info, failures = yield from self._poll(handle, deadline, what, request_id)
        result = yield from self._fetch(handle, deadline, what, info, failures)
        timings = {"submit_s": round(submitted, 4), "total_s": round(deadline.elapsed(), 4)}
        if started is not None:
            timings["queue_s"] = round(started - submitted, 4)
        for k, v in (info.get("metrics") or {}).items():
            if isinstance(v, (int, float)):
                timings[f"fal_{k}"] = float(v)
        return self._output(result, request_id, call, timings, what)

    def _poll(self, handle: Any, deadline: Deadline, what: str, request_id: str
              ) -> Generator[Step, Any, tuple[float | None, dict[str, Any], int]]:
        """Poll the status to COMPLETED: (when it started running, the completed status, how
        many polls failed)."""
        interval = self.poll_interval_s
        failures = 0
        state = "IN_QUEUE"
        started: float | None = None
        reserve = self._reserve(deadline)  # the cancel must fit inside the deadline too
        while True:
            if deadline.remaining() <= reserve:
                cancelled = yield from self._cancel(handle, deadline)
                raise self._ran_out(what, state, deadline, cancelled, request_id)
            failed: BaseException | None = None
            try:
                state, info = _status_of((yield self._op(deadline, "status", handle)))
            except Exception as exc:  # noqa: BLE001
                failed = self._error(exc, f"status of {what}")
            if failed is not None:
                yield from self._poll_again(failed, failures, deadline, handle, what, state,
                                            request_id)
                failures += 1
                continue
            if state == "IN_PROGRESS" and started is None:
                started = deadline.elapsed()
            if state == "COMPLETED":
                return started, info, failures
            yield Wait(max(0.0, min(interval, deadline.remaining() - reserve)))
            interval = min(interval * 1.5, self.max_poll_interval_s)

    def _fetch(self, handle: Any, deadline: Deadline, what: str, info: dict[str, Any],
               failures: int) -> Generator[Step, Any, Any]:
        """The result of a completed job, fetched again by id while that may help."""
        # A job that COMPLETED with an error answers its result with that error every time:
        # fetching again cannot help, so only a clean completion's fetch is resumed.
        job_failed = bool(info.get("error") or info.get("error_type"))
        while True:
            try:
                return (yield self._op(deadline, "result", handle))
            except Exception as exc:  # noqa: BLE001
                err = self._error(exc, f"result of {what}")
            if job_failed and isinstance(err, ProviderError) and not isinstance(err, RateLimited):
                raise err
            wait = poll_backoff(err, failures + 1, self.poll_retry_backoff_s, deadline) \
                if transient(err) else None
            if wait is not None and not deadline.expired:
                failures += 1
                yield Wait(wait)
                continue
            if deadline.expired and transient(err):
                raise GenerationTimeout(f"{what} finished but its result could not be fetched "
                                        f"within {deadline.seconds:g} s ({err}).",
                                        provider=self.name, retryable=True)
            raise err

    def _submit_error(self, exc: BaseException, app: str) -> ModelglassError:
        """A failed submit: retryable only when fal certainly did not queue it (an error reply,
        or no connection at all). A submit whose answer was lost, cut short or came too late
        may have queued — and billed — the job; fal cannot look a request up without its id,
        so that is :class:`OutcomeUnknown`, never a blind re-send."""
        what = f"submit to {app}"
        err = self._error(exc, what)
        answered = isinstance(exc, HTTPFailure) and exc.response is not None
        fal_http = _fal_http_error_type()
        if isinstance(exc, ModelglassError) or answered or never_sent(exc) or (
                fal_http is not None and isinstance(exc, fal_http)):
            return err
        return self._unknown(f"the {what}", self._lost_reason(exc, err))

    # -- parsing (pure) ---------------------------------------------------------------------------
    def _output(self, result: Any, request_id: str, call: ProviderCall, timings: dict[str, float],
                what: str) -> ProviderOutput:
        secrets = self._secrets()
        if not isinstance(result, Mapping):
            raise self._wrong_shape(what, "the result is not a JSON object", result)
        images = result.get("images")
        if images is None and isinstance(result.get("image"), Mapping):
            images = [result["image"]]  # some endpoints answer with a single "image"
        if not isinstance(images, list):
            raise self._wrong_shape(what, "the result has no 'images' list", result)
        if not images:
            raise EmptyResult(f"{what} completed without images. Retry, or pick another model.",
                              provider=self.name, body=excerpt(result, secrets))
        flags = result.get("has_nsfw_concepts") or []
        flagged = [i for i, f in enumerate(flags) if f is True]
        if flagged:
            raise self._refused(f"fal's safety checker flagged image(s) {flagged} of {what} as "
                                f"NSFW and blacked them out.", "has_nsfw_concepts")
        seed = result.get("seed")
        seed = int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None
        default_mime = mime_for_format(str(call.payload.get("output_format")
                                           or call.payload.get("format") or "jpeg"))
        out: list[RawImage] = []
        for i, img in enumerate(images):
            if not isinstance(img, Mapping) or not isinstance(img.get("url"), str) or not img["url"]:
                raise self._wrong_shape(what, f"images[{i}] has no url", result)
            url: str = img["url"]
            mime = img.get("content_type") if isinstance(img.get("content_type"), str) else None
            data, url_out, uri_mime = image_ref(url, provider=self.name, what=what,
                                                where=f"images[{i}]")
            out.append(RawImage(data=data, url=url_out, mime=mime or uri_mime or default_mime,
                                width=_int_or_none(img.get("width")),
                                height=_int_or_none(img.get("height")),
                                seed=seed if len(images) == 1 else None))
        raw = {k: v for k, v in result.items() if k != "images"}
        raw["images"] = [{k: v for k, v in img.items() if k != "url" or not str(v).startswith("data:")}
                         for img in images if isinstance(img, Mapping)]
        for k, v in (result.get("timings") or {}).items():
            if isinstance(v, (int, float)):
                timings[f"fal_{k}"] = float(v)
        return ProviderOutput(images=out, cost_usd=None, request_id=request_id, raw=raw,
                              timings=timings, extra={"seed": seed, "endpoint": call.offer.endpoint})

    def _client_error(self, exc: BaseException, what: str) -> ModelglassError | None:
        fal_http = _fal_http_error_type()
        if fal_http is not None and isinstance(exc, fal_http):  # only if it bypassed our transport
            resp = exc.response  # type: ignore[attr-defined]
            body: Any
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
            return self._http_error(int(exc.status_code), {k.lower(): v for k, v in  # type: ignore[attr-defined]
                                                           resp.headers.items()}, body, what)
        if isinstance(exc, KeyError):
            return self._wrong_shape(what, f"the reply lacks the field {exc}", None)
        if isinstance(exc, TypeError):
            return self._wrong_shape(what, f"the reply has the wrong shape ({exc})", None)
        if isinstance(exc, ValueError):
            # fal-client raises ValueError("Unknown status: X") for a status it does not know
            # (e.g. FAILED): the job's state is unknowable, so it is not retried.
            return ProviderError(
                f"fal reported a state modelglass does not know for {what} "
                f"({scrub(str(exc), self._secrets())}); the job was abandoned.",
                provider=self.name, retryable=False)
        return None

    def _http_error(self, status: int, headers: Mapping[str, str], body: Any,
                    what: str) -> ModelglassError:
        secrets = self._secrets()
        detail_obj = body.get("detail") if isinstance(body, Mapping) else None
        error_type = (body.get("error_type") if isinstance(body, Mapping) else None) \
            or headers.get("x-fal-error-type")
        types = {d.get("type") for d in detail_obj if isinstance(d, Mapping)} \
            if isinstance(detail_obj, list) else set()
        if status in (400, 422) and (types & _CONTENT_TYPES or error_type in _CONTENT_TYPES):
            return self._refused(f"fal refused the content of {what}: "
                                 f"{_detail_text(detail_obj, secrets)}.",
                                 "content_policy_violation")
        detail = _detail_text(detail_obj, secrets) if detail_obj is not None else None
        retryable: bool | None = None
        flag = headers.get("x-fal-retryable", headers.get("x-fal-needs-retry"))
        if flag is not None:
            retryable = flag.strip().lower() in ("true", "1", "yes")
        if status == 504 and (error_type in _TIMEOUT_TYPES or
                              headers.get("x-fal-request-timeout-type")):
            return GenerationTimeout(f"fal timed out {what} on its side (HTTP 504, "
                                     f"{error_type or 'request timeout'}).", provider=self.name,
                                     status=504, body=excerpt(body, secrets),
                                     retryable=True if retryable is None else retryable)
        return self._http(status, headers=headers, body=body, what=what, detail=detail,
                          retryable=retryable)

    # -- the wire (lazy) --------------------------------------------------------------------------
    def _make_wire(self, *, asynchronous: bool) -> _Wire:
        import httpx
        from fal_client.client import USER_AGENT, AsyncBackupDomainTransport, BackupDomainTransport

        key = self._require_key()
        http_cls = httpx.AsyncClient if asynchronous else httpx.Client
        inner = AsyncBackupDomainTransport() if asynchronous else BackupDomainTransport()
        http = http_cls(
            transport=escalating_transport(inner, asynchronous=asynchronous),
            headers={"Authorization": f"Key {key}", "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(self.request_timeout_s, connect=10.0),
            follow_redirects=True)
        client_cls = _client_classes()[1 if asynchronous else 0]
        return _Wire(client_cls(key, self.request_timeout_s, http))

    def _close_wire(self, wire: _Wire) -> None:
        wire.client.__dict__["_mg_http"].close()

    async def _aclose_wire(self, wire: _Wire) -> None:
        await wire.client.__dict__["_mg_http"].aclose()


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _detail_text(detail: Any, secrets: tuple[str | None, ...]) -> str:
    """fal's ``detail``: a string, or a FastAPI list of ``{loc, msg, type}``."""
    if isinstance(detail, list):
        parts = []
        for d in detail[:5]:
            if isinstance(d, Mapping):
                loc = ".".join(str(x) for x in (d.get("loc") or [])[1:]) or "input"
                parts.append(f"{loc}: {d.get('msg', d.get('type', ''))}")
            else:
                parts.append(str(d))
        return excerpt("; ".join(parts), secrets)
    return excerpt(detail, secrets)


def _fal_http_error_type() -> type | None:
    try:
        from fal_client.client import FalClientHTTPError
    except ImportError:  # pragma: no cover
        return None
    return FalClientHTTPError


@functools.cache
def _client_classes() -> tuple[type, type]:
    """``fal_client`` clients that use the ``httpx`` client modelglass built (escalating
    transport) instead of building their own. Everything else is fal-client's code."""
    import fal_client

    class _SyncFal(fal_client.SyncClient):  # type: ignore[misc]
        def __init__(self, key: str, default_timeout: float, http: Any) -> None:
            super().__init__(key=key, default_timeout=default_timeout)
            object.__setattr__(self, "_mg_http", http)

        @property
        def _client(self) -> Any:  # type: ignore[override]
            return self.__dict__["_mg_http"]

    class _AsyncFal(fal_client.AsyncClient):  # type: ignore[misc]
        def __init__(self, key: str, default_timeout: float, http: Any) -> None:
            super().__init__(key=key, default_timeout=default_timeout)
            self.__dict__["_mg_http"] = http

        @property
        def _client(self) -> Any:  # type: ignore[override]
            async def get() -> Any:
                return self.__dict__["_mg_http"]
            return get()

    return _SyncFal, _AsyncFal


def _status_of(status: Any) -> tuple[str, dict[str, Any]]:
    from fal_client.client import Completed, InProgress, Queued

    if isinstance(status, Queued):
        return "IN_QUEUE", {"position": status.position}
    if isinstance(status, InProgress):
        return "IN_PROGRESS", {}
    if isinstance(status, Completed):
        return "COMPLETED", {"metrics": status.metrics or {}, "error": status.error,
                             "error_type": status.error_type}
    raise ValueError(f"Unknown status object {type(status).__name__}")


class _Wire:
    """The I/O of one fal job: each method is one call of the fal client (blocking, or its
    coroutine for the async client)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def submit(self, app: str, args: dict[str, Any]) -> Any:
        return self.client.submit(app, args)

    def handle(self, app: str, request_id: str) -> Any:
        return self.client.get_handle(app, request_id)

    def status(self, handle: Any) -> Any:
        return handle.status(with_logs=False)

    def result(self, handle: Any) -> Any:
        return handle.get()

    def cancel(self, handle: Any) -> Any:
        return handle.cancel()
