"""OpenAI's Images API (``images.generate``) through the official ``openai`` client.

The gpt-image line only: ``model``, ``prompt``, ``n``, ``size``, ``quality`` (the plan's tier),
``output_format``, and ``background`` / ``output_compression`` / ``moderation`` / ``user`` /
``safety_identifier`` / ``complexity`` from ``provider_options["openai"]``. ``response_format``
is never sent (gpt-image models always answer base64 and reject it). Retired models (dall-e-2,
dall-e-3, gpt-image-1) are refused before anything is sent, naming the replacement.

On the wire: the official client's own ``post`` to ``/images/generations`` (the request,
retries, timeouts and typed errors of ``images.generate``), with the planned payload, already
the API's JSON under its published field names, as the body verbatim; the reply comes back as the
client's raw ``httpx`` response and its JSON is read once, as the client reads it (:func:`_body`),
with no response model built.

Retries and timeouts: the client is built with ``max_retries=0`` (its default is 2, honouring
Retry-After only up to 120 s) so that modelglass alone decides; each call gets ``timeout=`` the
job's remaining time (the client's default is 600 s).

Cost: from the reply's ``usage`` at the offer's catalog token prices (``kind: per_token``; else
:data:`TOKEN_PRICES`), else None and the client falls back to the plan's estimate.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import re
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

from ..catalog._bills import num
from ..catalog._schema import Status
from ..errors import (
    ContentRejected,
    EmptyResult,
    GenerationTimeout,
    InvalidRequest,
    ModelglassError,
    ProviderError,
    ProviderUnavailable,
)
from ..jobs._steps import Deadline, Wire
from . import _http11
from ._errors import detach, excerpt, never_sent
from ._fields import WireDefaults, build_fields
from ._keys import scrub
from ._payload import decode_b64, image_ref, merge_options, mime_for_format
from ._transport import PerLoop
from .base import Provider, ProviderOutput, RawImage

if TYPE_CHECKING:
    from ..catalog import OfferView
    from ..catalog._bills import BillLine
    from ..catalog._schema import Price
    from ..jobs._steps import Step
    from ..plan import Planned, ProviderCall
    from ..result import Fate

__all__ = ["OPENAI_WIRE", "TOKEN_PRICES", "OpenAIProvider", "cost_from_usage"]

OPENAI_WIRE = WireDefaults(
    size="openai_size",
    names={"n": "n", "steps": None, "guidance": None, "negative_prompt": None, "seed": None,
           "output_format": "output_format", "tier": "quality", "true_cfg": None},
    output_formats=("png", "jpeg", "webp"),
)

#: USD per 1M tokens: (text input, image input, image output), used only when the offer's catalog
#: price is not token-priced (``kind: per_token``); the catalog's token prices win. gpt-image-2:
#: image output $30/1M, text input $5/1M, image input $8/1M (OpenAI's published token prices).
TOKEN_PRICES: dict[str, tuple[float | None, float | None, float | None]] = {
    "gpt-image-2": (5.0, 8.0, 30.0),
}

_OPTIONS = ("background", "output_compression", "moderation", "user", "safety_identifier",
            "complexity")
_FORBIDDEN = {
    "response_format": "gpt-image models always answer base64 and reject response_format; "
                       "leave it out",
    "stream": "streaming (partial images) is not supported by modelglass",
    "partial_images": "streaming (partial images) is not supported by modelglass",
    "model": "the model comes from the catalog offer; choose it with model=...",
}
_CONTENT_CODES = ("moderation_blocked", "content_policy_violation")
_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_SIZE = re.compile(r"\d+x\d+")


def cost_from_usage(model: str, usage: Any, price: Price | None = None) -> float | None:
    """USD for one reply's ``usage``, or None when a needed token price is unknown or a count is
    malformed (negative, NaN, not a whole number): the caller then keeps its estimate.

    ``price`` is the offer's catalog price; when it is token-priced its rates are used, else the
    fallback :data:`TOKEN_PRICES` for ``model`` (a dated snapshot id maps to its model).
    """
    from ..catalog._price import cost_from_usage as catalog_cost
    from ..catalog._schema import Price, PriceKind

    if price is None or price.kind is not PriceKind.per_token:
        rates = TOKEN_PRICES.get(_DATE_SUFFIX.sub("", model))
        if rates is None or rates[2] is None:
            return None
        text_in, image_in, image_out = rates
        price = Price(kind=PriceKind.per_token, usd_per_1m_image_output_tokens=image_out,
                      usd_per_1m_text_input_tokens=text_in, usd_per_1m_image_input_tokens=image_in,
                      output_tokens={"any": {"1024x1024": 0}})
    return catalog_cost(price, usage)


def check_usage(usage: Any) -> str | None:
    """What is wrong with the token counts of ``usage`` (negative, NaN, infinite, not a
    number), or None when they are fine or absent. A poisoned count must never become a cost:
    a negative or NaN spend switches every later budget check off."""
    if usage is None:
        return None
    def get(o: Any, k: str) -> Any:
        return o.get(k) if isinstance(o, Mapping) else getattr(o, k, None)
    fields = [(k, get(usage, k)) for k in ("input_tokens", "output_tokens", "total_tokens")]
    for nested in ("input_tokens_details", "output_tokens_details"):
        details = get(usage, nested)
        if details is not None:
            fields += [(f"{nested}.{k}", get(details, k)) for k in ("text_tokens", "image_tokens")]
    for name, value in fields:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            return f"usage.{name} is {value!r}, not a token count"
    return None


class OpenAIProvider(Provider):
    """OpenAI Images API, through ``openai.OpenAI`` / ``openai.AsyncOpenAI``.

    >>> OpenAIProvider(api_key="sk-...").availability().ok  # doctest: +SKIP
    True
    """

    name = "openai"
    env_keys = ("OPENAI_API_KEY",)
    key_help = "no OpenAI key: set OPENAI_API_KEY"
    client_package = "openai"
    client_dist = "openai"
    extra = "openai"
    no_bill = "no result with usage yet"

    @classmethod
    def bill_line(cls, result: Any) -> BillLine | None:
        """The reply's ``usage`` (image-output, text and image-input tokens) priced at the
        catalog's token rates (as synced into your overlay). OpenAI publishes no per-job charge,
        so a change of its rates is seen only once the rates are updated; a change in tokens per
        image is seen at once."""
        if result.cost_is_estimate or num(result.cost_usd) is None:
            return None
        return result.cost_usd, "openai usage × the catalog's token rates", None

    def __init__(self, api_key: str | None = None, *, base_url: str | None = None,
                 connect_timeout_s: float = 10.0, request_timeout_s: float = 300.0,
                 aiohttp: bool = False, lean_http: bool = True) -> None:
        self._explicit_key = api_key
        self._base_url = base_url
        #: Opt-in: the async client on aiohttp (``pip install 'openai[aiohttp]'``). httpx's own
        #: async pool stalls past a few dozen concurrent requests (benchmarks/RESULTS.md); the
        #: price is that httpx-aiohttp reports a dropped connection as a connect timeout, so such
        #: a failure moves on to the next offer instead of being retried on this one.
        self.aiohttp = aiohttp
        if aiohttp:
            _check_aiohttp()  # say so now, not at the first call
        #: The async client's connections: :mod:`._http11`'s pool (O(1) per request, ~0.8 ms of
        #: CPU less per call at concurrency 64 than httpcore's, benchmarks/batch_cpu.py) unless
        #: False, ``aiohttp`` is set, or the environment names a proxy (then the client's own
        #: transport, which honours it). The sync client always keeps its own.
        self.lean_http = lean_http
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self._sync: _Images | None = None
        self._async: PerLoop[_Images] = PerLoop(
            lambda: _Images(self._make_client(asynchronous=True)))

    # -- payload (pure) ---------------------------------------------------------------------------
    def build_payload(self, planned: Planned, offer: OfferView) -> tuple[dict[str, Any], dict[str, Fate]]:
        _refuse_retired(offer)
        payload, fates, reserved = build_fields(planned, offer, OPENAI_WIRE, provider=self.name)
        payload = {"model": offer.endpoint, **payload}
        options = dict(planned.options)
        unknown = sorted(set(options) - set(_OPTIONS) - set(_FORBIDDEN))
        if unknown:
            raise InvalidRequest(
                f"provider_options['openai'] has {', '.join(map(repr, unknown))}, which the "
                f"Images API does not take for gpt-image models; allowed: {', '.join(_OPTIONS)}",
                field=f"provider_options.openai.{unknown[0]}")
        merge_options(payload, options, provider=self.name, reserved=reserved, forbidden=_FORBIDDEN)
        return payload, fates

    # -- the job: one call and a parse ------------------------------------------------------------
    def job(self, call: ProviderCall, *, timeout_s: float, resume: str | None = None,
            on_submitted: Callable[[str], None] | None = None
            ) -> Generator[Step, Any, ProviderOutput]:
        return self._job(call, Deadline(timeout_s))

    def _job(self, call: ProviderCall, deadline: Deadline) -> Generator[Step, Any, ProviderOutput]:
        _refuse_retired(call.offer)
        try:
            response = yield Wire(self, "generate", (call.payload,
                                                     deadline.clamp(self.request_timeout_s)))
        except Exception as exc:  # noqa: BLE001 - mapped at this boundary
            err = self._error(exc, call)
        else:
            return self._guarded_output(response, call, deadline)
        raise detach(err)  # outside the handler: no __context__ holding the request and its key

    def wire(self) -> _Images:
        if self._sync is None:
            self._sync = _Images(self._make_client(asynchronous=False))
        return self._sync

    def awire(self) -> _Images:
        return self._async.get()

    def close(self) -> None:
        if self._sync is not None:
            self._sync.client.close()
            self._sync = None

    async def aclose(self) -> None:
        wire = self._async.pop_current()
        if wire is not None:
            await wire.client.close()

    # -- parsing (pure) ---------------------------------------------------------------------------
    def _guarded_output(self, http: Any, call: ProviderCall,
                        deadline: Deadline) -> ProviderOutput:
        """:meth:`_output`, where a 200 reply that cannot be used is a generation OpenAI ran
        (and billed): :class:`OutcomeUnknown` (possibly charged), never a plain failure that
        would release the budget and invite a second, billed try. ``http``: the raw reply
        (:meth:`_Images.generate`)."""
        request_id = http.headers.get("x-request-id")
        what = f"images.generate ({call.payload.get('model', call.offer.endpoint)})"
        try:
            return self._output(_body(http), request_id, call, deadline)
        except (EmptyResult, ContentRejected):
            raise
        except json.JSONDecodeError as exc:
            err: ModelglassError = self._unknown(
                what, f"its 200 reply is malformed JSON ({exc.msg} at char {exc.pos})",
                request_id=request_id, stage="reply")
        except ProviderError as exc:
            err = self._unknown(what, f"its 200 reply was unusable: {exc}",
                                request_id=request_id, stage="reply")
        raise detach(err)

    def _output(self, body: Any, request_id: str | None, call: ProviderCall,
                deadline: Deadline) -> ProviderOutput:
        """The images, cost and record of one 200 reply, ``body`` its parsed JSON (a str when
        the reply was not JSON)."""
        model = str(call.payload.get("model", call.offer.endpoint))
        what = f"images.generate ({model})"
        if not isinstance(body, Mapping):
            # a gateway page or proxy text where the JSON reply should be
            raise self._wrong_shape(what, "the reply is not JSON", body)
        data = body.get("data")
        if not isinstance(data, list):
            raise self._wrong_shape(what, "the reply has no 'data' list", _slim(body))
        if not data:
            raise EmptyResult(f"OpenAI answered {what} without images. Retry, or pick another "
                              f"model.", provider=self.name)
        fmt = body.get("output_format") or call.payload.get("output_format") or "png"
        mime = mime_for_format(str(fmt)) or "image/png"
        width = height = None
        size = body.get("size") or call.payload.get("size")
        if isinstance(size, str) and _SIZE.fullmatch(size):
            width, height = (int(p) for p in size.split("x"))
        images: list[RawImage] = []
        for i, item in enumerate(data):
            b64 = item.get("b64_json") if isinstance(item, Mapping) else None
            url = item.get("url") if isinstance(item, Mapping) else None
            if isinstance(b64, str) and b64:
                try:
                    images.append(RawImage(data=decode_b64(b64), mime=mime, width=width,
                                           height=height))
                except ValueError as exc:
                    raise self._wrong_shape(what, f"data[{i}].b64_json: {exc}", None) from None
            elif isinstance(url, str) and url:
                data_, url_out, uri_mime = image_ref(url, provider=self.name, what=what,
                                                     where=f"data[{i}].url")
                images.append(RawImage(data=data_, url=url_out, mime=uri_mime or mime,
                                       width=width, height=height))
            else:
                raise self._wrong_shape(what, f"data[{i}] has neither b64_json nor url",
                                        _slim(body))
        usage = body.get("usage")
        if (problem := check_usage(usage)) is not None:
            raise self._wrong_shape(what, problem, None)
        reply = _slim(body, drop="data")  # not a copy of every image's base64
        return ProviderOutput(images=images,
                              cost_usd=cost_from_usage(model, usage, call.offer.offer.price),
                              request_id=request_id, raw=reply,
                              timings={"total_s": round(deadline.elapsed(), 4)},
                              extra={"usage": reply.get("usage")})

    def _error(self, exc: BaseException, call: ProviderCall) -> ModelglassError:
        """Map an ``openai`` exception by its status and error code (never its message text)."""
        import openai

        secrets = self._secrets()
        model = str(call.payload.get("model", call.offer.endpoint))
        what = f"images.generate ({model})"
        if isinstance(exc, ModelglassError):
            return exc
        # A POST that reached the server may have run and been billed even when its answer was
        # lost: only a failure before sending is retried; the rest is OutcomeUnknown.
        if isinstance(exc, openai.APITimeoutError):
            # httpx-aiohttp reports a dropped connection as a connect timeout: not trusted there.
            if never_sent(exc) and not self.aiohttp:
                return GenerationTimeout(f"OpenAI could not be reached for {what} in time.",
                                         provider=self.name, retryable=True)
            return self._unknown(what, "no answer before the timeout")
        if isinstance(exc, openai.APIConnectionError):
            if never_sent(exc):
                return self._unreachable(what, exc.__cause__ or exc)
            cause = exc.__cause__ or exc
            return self._unknown(what, f"{type(cause).__name__}: {cause}")
        if isinstance(exc, openai.APIResponseValidationError):
            return self._unknown(what, "its 200 reply does not match the Images API schema",
                                 request_id=exc.response.headers.get("x-request-id"),
                                 stage="reply")
        if isinstance(exc, openai.APIStatusError):
            status = int(exc.status_code)
            body = exc.body
            err = body if isinstance(body, Mapping) else {}
            code = exc.code or (str(err.get("code")) if err.get("code") else None)
            message = excerpt(err.get("message") if err else body, secrets)
            headers = {k.lower(): v for k, v in exc.response.headers.items()}
            rid = f" (request id {exc.request_id})" if exc.request_id else ""
            if code in _CONTENT_CODES:
                stage = (err.get("moderation_details") or {}).get("moderation_stage") \
                    if isinstance(err.get("moderation_details"), Mapping) else None
                where = f" at the {stage} stage" if stage else ""
                return self._refused(f"OpenAI's safety system refused {what}"
                                     f"{where} ({code}){rid}: {message}", code)
            should = headers.get("x-should-retry")
            retryable = {"true": True, "false": False}.get((should or "").lower())
            if status == 429 and code == "insufficient_quota":
                return ProviderError(f"OpenAI quota exhausted (HTTP 429 insufficient_quota) on "
                                     f"{what}{rid}. Add credit or raise the limit of the "
                                     f"OPENAI_API_KEY project; retrying will not help.",
                                     provider=self.name, status=429, body=message, retryable=False)
            if status == 404 and code == "model_not_found":
                repl = call.offer.model.lifecycle.replacement
                hint = f" Use {repl!r} instead." if repl else " Pick another model."
                return ProviderError(f"OpenAI does not know the model {model!r} (HTTP 404 "
                                     f"model_not_found){rid}: it is retired, renamed, or the key "
                                     f"in OPENAI_API_KEY has no access to it.{hint}",
                                     provider=self.name, status=404, body=message, retryable=False)
            detail = f"{code}: {message}" if code and message else (message or code or None)
            if isinstance(body, str):
                detail = None  # an HTML / text body: http_error summarises it
            return self._http(status, headers=headers, body=body, what=what + rid,
                              detail=detail, retryable=retryable)
        if isinstance(exc, openai.OpenAIError):
            return ProviderUnavailable(f"OpenAI client error: {scrub(str(exc), secrets)}. "
                                       f"Check OPENAI_API_KEY.", provider=self.name)
        if isinstance(exc, (KeyError, TypeError, AttributeError, ValueError)):
            return self._wrong_shape(what, f"{type(exc).__name__}: {scrub(str(exc), secrets)}")
        return ProviderError(f"openai client failed on {what}: {type(exc).__name__}: "
                             f"{scrub(str(exc), secrets)}", provider=self.name, retryable=False)

    # -- clients (lazy) ---------------------------------------------------------------------------
    def _make_client(self, *, asynchronous: bool) -> Any:
        key = self._require_key()
        import openai

        cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0,
                                  "timeout": openai.Timeout(self.request_timeout_s,
                                                            connect=self.connect_timeout_s)}
        if self._base_url:
            kwargs["base_url"] = self._base_url
        if asynchronous and self.aiohttp:
            try:
                kwargs["http_client"] = openai.DefaultAioHttpClient(timeout=kwargs["timeout"])
            except (RuntimeError, ImportError, AttributeError):
                raise ProviderUnavailable("OpenAIProvider(aiohttp=True) needs the aiohttp "
                                          "transport: pip install 'modelglass[openai-aiohttp]'",
                                          provider=self.name) from None
        elif asynchronous and self.lean_http and _http11.usable():
            kwargs["http_client"] = _lean_client(openai, kwargs["timeout"])
        return cls(**kwargs)


class _Images:
    """The I/O of one OpenAI call: ``images.generate`` (blocking, or the async client's
    coroutine)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def generate(self, payload: Mapping[str, Any], timeout: float) -> Any:
        """The raw ``httpx`` response of ``POST /images/generations`` with ``payload`` as its
        JSON body: what ``images.generate`` sends (the same path, headers, retries, timeout and
        typed errors), through the client's public ``post``, which ``images.generate`` itself
        calls. The typed method would first walk every field through its type-driven transform
        and wrap the reply twice (``with_raw_response``), renaming and reformatting nothing for
        these plain JSON fields, at ~0.1 ms of CPU per call (``benchmarks/batch_cpu.py``)."""
        return self.client.post("/images/generations", body=dict(payload),
                                cast_to=self.response_type, options={"timeout": timeout})

    @functools.cached_property
    def response_type(self) -> type:
        """The ``httpx`` module's ``Response`` class the client runs on (``httpx`` or the
        ``httpx2`` the newest openai releases use): asking ``post`` for it returns the reply
        unparsed, status checked."""
        return _httpx_of(type(self.client._client)).Response  # type: ignore[no-any-return]


def _httpx_of(client_class: type) -> Any:
    """The ``httpx`` module an openai ``httpx`` client class derives from (``httpx``, or the
    ``httpx2`` the newest openai releases run on)."""
    base = next(c for c in client_class.__mro__
                if c.__module__.split(".")[0] in ("httpx", "httpx2"))
    return importlib.import_module(base.__module__.split(".")[0])


def _lean_client(openai: Any, timeout: Any) -> Any:
    """The async client's ``httpx`` client (``openai.DefaultAsyncHttpxClient``: the SDK's own
    defaults) on :mod:`._http11`'s transport, with the SDK's connection limits."""
    httpx = _httpx_of(openai.DefaultAsyncHttpxClient)
    limits = getattr(openai, "DEFAULT_CONNECTION_LIMITS", None)
    transport = _http11.lean_transport(
        httpx, max_connections=getattr(limits, "max_connections", None) or 1000,
        max_keepalive=getattr(limits, "max_keepalive_connections", None) or 100,
        keepalive_expiry=getattr(limits, "keepalive_expiry", None) or 5.0)
    return openai.DefaultAsyncHttpxClient(transport=transport, timeout=timeout)


def _check_aiohttp() -> None:
    try:
        import openai

        openai.DefaultAioHttpClient()
    except (RuntimeError, ImportError, AttributeError):
        raise ProviderUnavailable("OpenAIProvider(aiohttp=True) needs the aiohttp transport: "
                                  "pip install 'modelglass[openai-aiohttp]'",
                                  provider="openai") from None


def _refuse_retired(offer: OfferView) -> None:
    life = offer.model.lifecycle
    if life.status is Status.retired:
        when = f" on {life.shutdown_on}" if life.shutdown_on else ""
        repl = (f" Use {life.replacement!r} instead (model={life.replacement!r})."
                if life.replacement else " Pick a current model.")
        raise InvalidRequest(f"{offer.model_id} ({offer.endpoint}) was retired by OpenAI{when}; "
                             f"the API no longer serves it, so nothing was sent.{repl}",
                             field="model")


def _body(http: Any) -> Any:
    """A 200 reply's body read as the openai client reads it: its JSON when it parses, whatever
    the content type says, else its text; a body labelled JSON that does not parse raises
    :class:`json.JSONDecodeError`."""
    try:
        return json.loads(http.content)
    except ValueError as exc:  # bad JSON, or bytes that are no Unicode text
        if not http.headers.get("content-type", "*").split(";")[0].strip().endswith("json"):
            return http.text
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(str(exc), "", 0) from None


def _slim(body: Mapping[str, Any], drop: str | None = None) -> dict[str, Any]:
    """``body`` without None values (at any depth) and without the key ``drop``."""
    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return {k: clean(v) for k, v in body.items() if v is not None and k != drop}
