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
passes its own inner transport (:func:`._common.escalating_transport`, via the client's
``transport=`` argument): error replies and connection errors leave it as
:class:`._common.HTTPFailure`, so the ``RetryTransport`` never sees a retryable status and every
retry decision is modelglass's. The client gets an explicit ``httpx.Timeout`` and every request's
timeouts are cut to the job's remaining time.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import (
    EmptyResult,
    GenerationTimeout,
    ModelglassError,
    ProviderError,
    ProviderUnavailable,
)
from ._common import (
    Deadline,
    HTTPFailure,
    Op,
    PerLoop,
    Sleep,
    adrive,
    connection_error,
    content_rejected,
    deadline_scope,
    decode_data_uri,
    drive,
    escalating_transport,
    excerpt,
    http_error,
    merge_options,
    mime_for_format,
    never_sent,
    outcome_unknown,
    poll_backoff,
    ran_out,
    retryable,
    scrub,
    transport_reason,
    wrong_shape,
)
from ._fields import WireDefaults, build_fields
from .base import Availability, Provider, ProviderOutput, RawImage

if TYPE_CHECKING:
    from ..catalog import OfferView
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

_TERMINAL = ("succeeded", "failed", "canceled")
# Replicate reports a safety-checker refusal only as the prediction's error *text*; there is no
# code or status for it, so this is the one place a message is matched.
_NSFW_RE = re.compile(r"nsfw|safety[ _-]?check|sensitive (image|content)|content[ _-]?polic", re.IGNORECASE)
_EXT_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
             ".webp": "image/webp", ".gif": "image/gif"}


class ReplicateProvider(Provider):
    """Replicate, through ``replicate.Client``.

    ``request_timeout_s`` bounds each HTTP request; the job's ``timeout_s`` bounds create → done.
    ``poll_interval_s`` defaults to ``REPLICATE_POLL_INTERVAL`` (else 0.5 s, as the client does);
    after 5 s of polling it grows ×1.5 per poll up to ``max_poll_interval_s``.
    """

    name = "replicate"
    env_keys = ("REPLICATE_API_TOKEN",)
    client_package = "replicate"
    extra = "replicate"

    def __init__(self, api_token: str | None = None, *, request_timeout_s: float = 30.0,
                 poll_interval_s: float | None = None, max_poll_interval_s: float = 2.0,
                 cancel_timeout_s: float = 3.0, poll_retry_backoff_s: float = 0.1,
                 api_key: str | None = None) -> None:
        self._explicit_key = api_token or api_key
        self.request_timeout_s = request_timeout_s
        self._poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.cancel_timeout_s = cancel_timeout_s
        self.poll_retry_backoff_s = poll_retry_backoff_s
        self._sync: _SyncWire | None = None
        self._async: PerLoop[_AsyncWire] = PerLoop(self._make_async_wire)
        self._claimed: dict[str, None] = {}
        self._claimed_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReplicateProvider(token={'set' if self._key() else 'missing'})"

    @property
    def poll_interval_s(self) -> float:
        if self._poll_interval_s is not None:
            return self._poll_interval_s
        try:
            return max(0.01, float(os.environ.get("REPLICATE_POLL_INTERVAL", "0.5")))
        except ValueError:
            return 0.5

    def _key(self) -> str | None:
        return self._explicit_key or os.environ.get("REPLICATE_API_TOKEN") or None

    def _secrets(self) -> tuple[str | None, ...]:
        return (self._key(),)

    def availability(self) -> Availability:
        if importlib.util.find_spec("replicate") is None:
            return Availability(False, "the replicate client is not installed: "
                                       "pip install 'modelglass[replicate]'")
        if not self._key():
            return Availability(False, "no Replicate token: set REPLICATE_API_TOKEN, or pass "
                                       "api_token=")
        return Availability(True, "REPLICATE_API_TOKEN set; replicate installed")

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

    # -- calls ------------------------------------------------------------------------------------
    def generate(self, call: ProviderCall, *, timeout_s: float) -> ProviderOutput:
        deadline = Deadline(timeout_s, per_request_s=self.request_timeout_s)
        wire = self._sync_wire()
        with deadline_scope(deadline):
            return drive(self._job(call, deadline), wire)

    async def agenerate(self, call: ProviderCall, *, timeout_s: float) -> ProviderOutput:
        deadline = Deadline(timeout_s, per_request_s=self.request_timeout_s)
        wire = self._async.get()
        with deadline_scope(deadline):
            return await adrive(self._job(call, deadline), wire)

    # -- resumable jobs (driven by the job engine) -------------------------------------------------
    def job(self, call: ProviderCall, *, timeout_s: float, resume: str | None = None,
            on_submitted: Callable[[str], None] | None = None
            ) -> tuple[Generator[Op | Sleep, Any, ProviderOutput], Deadline]:
        deadline = Deadline(timeout_s, per_request_s=self.request_timeout_s)
        return self._job(call, deadline, resume=resume, on_submitted=on_submitted), deadline

    def cancel_job(self, call: ProviderCall, request_id: str) -> Generator[Op | Sleep, Any, bool]:
        return self._cancel(request_id)

    def wire(self) -> _SyncWire:
        return self._sync_wire()

    def awire(self) -> _AsyncWire:
        return self._async.get()

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        wire = self._async.pop_current()
        if wire is not None:
            await wire.aclose()

    # -- the job ----------------------------------------------------------------------------------
    def _job(self, call: ProviderCall, deadline: Deadline, *, resume: str | None = None,
             on_submitted: Callable[[str], None] | None = None
             ) -> Generator[Op | Sleep, Any, ProviderOutput]:
        endpoint = call.offer.endpoint
        model, _, version = endpoint.partition(":")
        reserve = min(self.cancel_timeout_s, 0.1 * deadline.seconds)
        if resume is not None:  # created earlier (e.g. before a crash): poll it, never re-create
            pred = {"id": resume, "status": "starting"}
        else:
            sent_at = time.time()
            lost: ModelglassError | None = None
            try:
                if version:
                    pred = yield Op("create_version", (version, call.payload))
                else:
                    pred = yield Op("create_model", (model, call.payload))
            except Exception as exc:  # noqa: BLE001
                err = self._error(exc, f"create on {endpoint}", created=False)
                if not self._may_have_created(exc):
                    raise err from None
                lost = err
                why = ("no answer in time" if isinstance(err, GenerationTimeout) else
                       transport_reason(exc) if isinstance(exc, HTTPFailure) or
                       _is_httpx_error(exc) else str(err))
            if lost is not None:
                # The create may have run: find the prediction instead of creating another.
                found = yield from self._find_lost(call, sent_at, deadline, reserve)
                if found is None:
                    raise outcome_unknown(self.name, f"the create on {endpoint}", why,
                                          secrets=self._secrets())
                log.warning("replicate: the create on %s lost its answer (%s); found its "
                            "prediction %s by listing recent predictions", endpoint, why,
                            found["id"])
                pred = found
                if deadline.remaining() <= reserve:
                    # Found too late to wait for it: cancel it now that its id is known.
                    self._claim(str(found["id"]))
                    cancelled = yield from self._cancel(str(found["id"]))
                    raise outcome_unknown(self.name, f"the create on {endpoint}",
                                          f"{why}; its prediction was found after the deadline",
                                          request_id=str(found["id"]), cancelled=cancelled,
                                          secrets=self._secrets())
        pid = str(pred["id"])
        self._claim(pid)
        if on_submitted is not None:
            on_submitted(pid)
        what = f"Replicate prediction {pid} ({endpoint})"
        created_s = deadline.elapsed()

        interval = self.poll_interval_s
        failures = 0
        while pred.get("status") not in _TERMINAL:
            # The cancel must fit inside the deadline too: polling stops this much before it.
            if deadline.remaining() <= reserve:
                cancelled = yield from self._cancel(pid, deadline)
                raise self._ran_out(what, str(pred.get("status")), deadline, cancelled, pid)
            yield Sleep(max(0.0, min(interval, deadline.remaining() - reserve)))
            if deadline.elapsed() > 5.0:
                interval = min(interval * 1.5, self.max_poll_interval_s)
            if deadline.remaining() <= reserve:
                continue
            try:
                pred = yield Op("get", (pid,))
            except Exception as exc:  # noqa: BLE001
                err = self._error(exc, f"poll of {what}", created=True)
                if retryable(err):
                    wait = self._backoff(err, failures + 1, deadline)
                    if wait is not None and deadline.remaining() - wait > reserve:
                        failures += 1
                        log.info("replicate: poll of %s failed (%s); polling again", what, err)
                        yield Sleep(wait)
                        continue
                    # Waiting as asked would pass the deadline: stop now, not at the deadline.
                    cancelled = yield from self._cancel(pid, deadline)
                    raise self._ran_out(what, str(pred.get("status")), deadline, cancelled, pid,
                                        err)
                yield from self._cancel(pid, deadline)
                raise err from None
        return self._output(pred, call, what, created_s, deadline)

    def _cancel(self, pid: str, deadline: Deadline | None = None
                ) -> Generator[Op | Sleep, Any, bool]:
        """Ask Replicate to cancel; True only when it answered (the prediction is canceled or
        already over). Within a job the cancel gets what is left of its deadline."""
        seconds = self.cancel_timeout_s if deadline is None else \
            max(0.05, min(self.cancel_timeout_s, deadline.remaining()))
        try:
            yield Op("cancel", (pid, seconds))
        except Exception as exc:  # noqa: BLE001 - best effort
            log.info("replicate: cancel of %s failed: %s", pid, scrub(str(exc), self._secrets()))
            return False
        return True

    def _ran_out(self, what: str, status: str, deadline: Deadline, cancelled: bool,
                 pid: str, why: BaseException | None = None) -> ProviderError:
        """The error for a job given up at its deadline: whether the cancel was confirmed."""
        return ran_out(self.name, "Replicate", what, status, deadline, cancelled, pid, why,
                       self._secrets())

    def _backoff(self, err: BaseException, failures: int, deadline: Deadline) -> float | None:
        """The wait before polling again after a failed poll (see :func:`poll_backoff`)."""
        return poll_backoff(err, failures, self.poll_retry_backoff_s, deadline)

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

    def _claim(self, pid: str) -> None:
        """Remember a prediction this provider owns, so a lost create never adopts it."""
        with self._claimed_lock:
            self._claimed[pid] = None
            while len(self._claimed) > 4096:
                self._claimed.pop(next(iter(self._claimed)))

    def _find_lost(self, call: ProviderCall, sent_at: float, deadline: Deadline, reserve: float
                   ) -> Generator[Op | Sleep, Any, dict[str, Any] | None]:
        """The prediction a lost create made, from the recent predictions: same model (or
        version), created after the create was sent (30 s of clock skew allowed), exactly the
        same input, not owned by another call of this provider. Listed a few times, since a
        create that hung may show up late; None when it never does."""
        endpoint = call.offer.endpoint
        model, _, version = endpoint.partition(":")
        want = _canonical(call.payload)
        for attempt, wait in enumerate((0.0, 0.25, 0.5, 1.0)):
            if attempt:
                if deadline.remaining() - wait <= reserve:
                    break
                yield Sleep(wait)
            # The lookup may run when the create's hang used up the deadline: it gets its own
            # short time, since finding (and cancelling) a billed job is worth a second or two.
            seconds = min(self.request_timeout_s, max(deadline.remaining(), self.cancel_timeout_s))
            try:
                recent = yield Op("recent", (seconds,))
            except Exception as exc:  # noqa: BLE001 - the lookup is best effort
                log.info("replicate: listing predictions to find a lost create failed: %s",
                         scrub(str(exc), self._secrets()))
                continue
            matches = []
            for pred in recent:
                pid = str(pred.get("id"))
                with self._claimed_lock:
                    if pid in self._claimed:
                        continue
                if version and pred.get("version") != version:
                    continue
                if not version and pred.get("model") not in (model, None):
                    continue
                created = _timestamp(pred.get("created_at"))
                if created is not None and created < sent_at - 30:
                    continue
                if "input" not in pred or pred.get("input") is None:
                    try:
                        pred = yield Op("get_within", (pid, seconds))
                    except Exception as exc:  # noqa: BLE001 - the lookup is best effort
                        log.info("replicate: reading prediction %s failed: %s", pid,
                                 scrub(str(exc), self._secrets()))
                        continue
                if _canonical(pred.get("input")) == want:
                    matches.append(pred)
            if matches:
                # Oldest first: two identical lost creates adopt their predictions in order.
                return min(matches, key=lambda p: _timestamp(p.get("created_at")) or 0.0)
        return None

    def find_created(self, call: ProviderCall, *, since: float,
                     timeout_s: float = 10.0) -> str | None:
        """After a crash: the id of the prediction a create of ``call`` sent at or after
        ``since`` (epoch seconds) made — same model or version, exactly the same input, not
        owned by another call here, oldest first — or None when the listing shows none or
        cannot be read. A batch resumes that prediction instead of naming its job possibly
        charged."""
        endpoint = call.offer.endpoint
        model, _, version = endpoint.partition(":")
        want = _canonical(call.payload)
        wire = self._sync_wire()
        try:
            recent = wire.recent(timeout_s)
        except Exception as exc:  # noqa: BLE001 - the lookup is best effort
            log.info("replicate: listing predictions after a crash failed: %s",
                     scrub(str(exc), self._secrets()))
            return None
        matches = []
        for pred in recent:
            if not _may_be(pred, model, version, since, self._claimed, self._claimed_lock):
                continue
            if pred.get("input") is None:
                try:
                    pred = wire.get_within(str(pred.get("id")), timeout_s)
                except Exception:  # noqa: BLE001, S112 - the lookup is best effort
                    continue
            if _canonical(pred.get("input")) == want:
                matches.append(pred)
        if not matches:
            return None
        found = str(min(matches, key=lambda p: _timestamp(p.get("created_at")) or 0.0)["id"])
        self._claim(found)
        return found

    # -- parsing (pure) ---------------------------------------------------------------------------
    def _output(self, pred: Mapping[str, Any], call: ProviderCall, what: str, created_s: float,
                deadline: Deadline) -> ProviderOutput:
        secrets = self._secrets()
        status = pred.get("status")
        if status == "failed":
            error = str(pred.get("error") or "no error message")
            if _NSFW_RE.search(error):
                raise content_rejected(self.name, f"{what} failed: the model's safety checker "
                                                  f"refused it ({excerpt(error, secrets, 200)}).",
                                       "nsfw")
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
            raise wrong_shape(self.name, what, "the output is not a list of URL strings", output,
                              secrets)
        if not urls:
            raise EmptyResult(f"{what} succeeded without output images. Retry, or pick another "
                              f"model.", provider=self.name)
        fmt = call.payload.get("output_format")
        seeds = call.planned.seeds if call.planned.seeds and "seed" in call.payload else None
        images: list[RawImage] = []
        for i, url in enumerate(urls):
            data = None
            mime = _mime_from_url(url) or mime_for_format(str(fmt) if fmt else "png")
            url_out: str | None = url
            if url.startswith("data:"):
                try:
                    data, uri_mime = decode_data_uri(url)
                except ValueError as exc:
                    raise wrong_shape(self.name, what, f"output[{i}] is a bad data: URI ({exc})",
                                      None) from None
                mime, url_out = uri_mime or mime, None
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

    def _error(self, exc: BaseException, what: str, *, created: bool) -> ModelglassError:
        """Map a client failure. ``created``: the server already holds a prediction, so a reply
        that cannot be read is not retryable (a new create would run — and bill — it twice)."""
        secrets = self._secrets()
        if isinstance(exc, ModelglassError):
            return exc
        if isinstance(exc, HTTPFailure):
            if exc.response is None:
                return connection_error(self.name, what, exc.error or exc, secrets)
            body = exc.body()
            detail = None
            if isinstance(body, Mapping):
                parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
                detail = excerpt(" — ".join(parts), secrets) if parts else None
            return http_error(self.name, exc.status or 0, headers=exc.headers, body=body,
                              key_env="REPLICATE_API_TOKEN", what=what, secrets=secrets,
                              detail=detail)
        if isinstance(exc, json.JSONDecodeError):
            return wrong_shape(self.name, what, f"malformed JSON ({exc.msg} at char {exc.pos})",
                               exc.doc[:200] if isinstance(exc.doc, str) else None, secrets)
        if _is_pydantic_v1_error(exc):
            status = _unknown_status(exc)
            if status is not None:
                return ProviderError(
                    f"{what} ended in the state {status!r}, which replicate-python does not know "
                    f"(e.g. 'aborted': a deadline passed before it started). Retry later.",
                    provider=self.name, retryable=False)
            return wrong_shape(self.name, what, f"the prediction does not match the documented "
                                                f"schema ({_v1_errors(exc)})", None)
        if isinstance(exc, (KeyError, TypeError, AttributeError)):
            return wrong_shape(self.name, what, f"the reply has the wrong shape "
                                                f"({type(exc).__name__}: {exc})", None)
        if isinstance(exc, TimeoutError):
            return GenerationTimeout(f"{what} timed out.", provider=self.name, retryable=True)
        if _is_httpx_error(exc):
            return connection_error(self.name, what, exc, secrets)
        rep = _replicate_error_type()
        if rep is not None and isinstance(exc, rep):  # ReplicateError without our transport
            status_code = int(getattr(exc, "status", 0) or 0)
            return http_error(self.name, status_code, body=getattr(exc, "detail", None),
                              key_env="REPLICATE_API_TOKEN", what=what, secrets=secrets)
        return ProviderError(f"replicate client failed on {what}: {type(exc).__name__}: "
                             f"{scrub(str(exc), secrets)}", provider=self.name, retryable=False)

    # -- clients (lazy) ---------------------------------------------------------------------------
    def _client(self, asynchronous: bool) -> Any:
        token = self._key()
        if not token:
            raise ProviderUnavailable("no Replicate token: set REPLICATE_API_TOKEN",
                                      provider=self.name)
        if importlib.util.find_spec("replicate") is None:
            raise ProviderUnavailable("the replicate client is not installed: "
                                      "pip install 'modelglass[replicate]'", provider=self.name)
        import httpx
        import replicate

        inner = httpx.AsyncHTTPTransport() if asynchronous else httpx.HTTPTransport()
        return replicate.Client(
            api_token=token,
            timeout=httpx.Timeout(self.request_timeout_s, connect=10.0),
            transport=escalating_transport(inner, asynchronous=asynchronous))

    def _sync_wire(self) -> _SyncWire:
        if self._sync is None:
            self._sync = _SyncWire(self._client(False), self.cancel_timeout_s)
        return self._sync

    def _make_async_wire(self) -> _AsyncWire:
        return _AsyncWire(self._client(True), self.cancel_timeout_s)


def _may_be(pred: Mapping[str, Any], model: str, version: str, since: float,
            claimed: Mapping[str, None], lock: Any) -> bool:
    """Whether a listed prediction may be the one a create of ``model`` (or ``version``) sent at
    ``since`` made: right model, created no earlier (30 s of clock skew allowed), unclaimed."""
    with lock:
        if str(pred.get("id")) in claimed:
            return False
    if version and pred.get("version") != version:
        return False
    if not version and pred.get("model") not in (model, None):
        return False
    created = _timestamp(pred.get("created_at"))
    return not (created is not None and created < since - 30)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 ``created_at``; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)  # Python >= 3.11 reads a trailing Z
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


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


def _is_httpx_error(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, httpx.HTTPError)


def _replicate_error_type() -> type | None:
    try:
        from replicate.exceptions import ReplicateError
    except ImportError:  # pragma: no cover
        return None
    return ReplicateError


def _results(page: Any) -> list[dict[str, Any]]:
    """The prediction objects of a ``GET /v1/predictions`` page (anything else is skipped)."""
    results = page.get("results") if isinstance(page, Mapping) else None
    return [dict(p) for p in results if isinstance(p, Mapping)] if isinstance(results, list) \
        else []


def _snapshot(pred: Any) -> dict[str, Any]:
    """A plain dict of a ``replicate`` Prediction (pydantic v1)."""
    return dict(pred.dict())


class _SyncWire:
    """The blocking I/O of one prediction: each method is one client call."""

    def __init__(self, client: Any, cancel_timeout_s: float) -> None:
        self.client = client
        self.cancel_timeout_s = cancel_timeout_s

    def create_model(self, model: str, input: dict[str, Any]) -> dict[str, Any]:
        return _snapshot(self.client.models.predictions.create(model=model, input=input))

    def create_version(self, version: str, input: dict[str, Any]) -> dict[str, Any]:
        return _snapshot(self.client.predictions.create(version=version, input=input))

    def get(self, pid: str) -> dict[str, Any]:
        return _snapshot(self.client.predictions.get(pid))

    def recent(self, timeout_s: float) -> list[dict[str, Any]]:
        # Raw JSON, not the client's Prediction objects: one prediction in a state the client
        # does not know ("aborted") would make it refuse the whole page.
        with deadline_scope(Deadline(timeout_s)):
            return _results(self.client._request("GET", "/v1/predictions").json())

    def get_within(self, pid: str, timeout_s: float) -> dict[str, Any]:
        with deadline_scope(Deadline(timeout_s)):
            return self.get(pid)

    def cancel(self, pid: str, timeout_s: float | None = None) -> None:
        with deadline_scope(Deadline(timeout_s or self.cancel_timeout_s)):
            self.client.predictions.cancel(pid)

    def close(self) -> None:
        self.client._client.close()  # the client has no public close()


class _AsyncWire:
    """The awaiting I/O of one prediction (same method names as :class:`_SyncWire`)."""

    def __init__(self, client: Any, cancel_timeout_s: float) -> None:
        self.client = client
        self.cancel_timeout_s = cancel_timeout_s

    async def create_model(self, model: str, input: dict[str, Any]) -> dict[str, Any]:
        return _snapshot(await self.client.models.predictions.async_create(model=model, input=input))

    async def create_version(self, version: str, input: dict[str, Any]) -> dict[str, Any]:
        return _snapshot(await self.client.predictions.async_create(version=version, input=input))

    async def get(self, pid: str) -> dict[str, Any]:
        return _snapshot(await self.client.predictions.async_get(pid))

    async def recent(self, timeout_s: float) -> list[dict[str, Any]]:
        with deadline_scope(Deadline(timeout_s)):
            resp = await self.client._async_request("GET", "/v1/predictions")
            return _results(resp.json())

    async def get_within(self, pid: str, timeout_s: float) -> dict[str, Any]:
        with deadline_scope(Deadline(timeout_s)):
            return await self.get(pid)

    async def cancel(self, pid: str, timeout_s: float | None = None) -> None:
        with deadline_scope(Deadline(timeout_s or self.cancel_timeout_s)):
            await self.client.predictions.async_cancel(pid)

    async def aclose(self) -> None:
        await self.client._async_client.aclose()
