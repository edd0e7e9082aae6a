"""``Client`` and ``AsyncClient``: route → plan → budget → call → download → result.

Everything that needs no I/O lives in :class:`_BaseClient` (request building, availability,
routing, planning, budget checks, the retry policy, what a failure leads to, building results);
the two clients differ only where they wait. ``Client`` calls the providers' blocking
``generate`` (no event loop inside a sync call); ``AsyncClient`` awaits their ``agenerate``.

The call path, per job:

1. Route the request; ``decision.ranked`` is the fallback order. Every ranked offer passed the
   same hard constraints, so a fallback never lowers the bar.
2. For each offer: re-check ``max_cost_usd`` and reserve the estimate on the shared
   :class:`~modelglass.budget.Budget` — *before* anything is sent.
3. One provider call per chunk of ``n`` (the offer's ``max_images_per_call``), each with
   retries decided here (tenacity), then download and verify every image.
4. Settle the budget with what was billed; build the :class:`~modelglass.result.ImageResult`.

Retries (same offer, same chunk): only :class:`~modelglass.errors.RateLimited` and
:class:`~modelglass.errors.ProviderError` with ``retryable=True`` — the providers set that only
where no job was created (a refused or unanswered create/submit, 5xx, 429). A
:class:`~modelglass.errors.GenerationTimeout` is *not* retried on the same offer: fal and
Replicate raise it after the job was accepted (and cancel it), OpenAI after the request was sent,
so a retry would submit — and may bill — a second job that is likely to be as slow. It falls
back to the next offer instead, while the job's deadline lasts. The wait honours ``Retry-After``
up to ``retry_after_cap_s``, else exponential backoff with jitter; a wait that would pass the
job's deadline ends the offer's retries.

Fallback (next ranked offer): on a non-retryable provider failure, exhausted retries, a timeout
or a failed download. Never on :class:`~modelglass.errors.InvalidRequest`,
:class:`~modelglass.errors.ContentRejected` or :class:`~modelglass.errors.BudgetExceeded`: those
are raised as they are (with ``.attempts``). When every offer failed,
:class:`~modelglass.errors.AllAttemptsFailed` carries every attempt; when the job's deadline ran
out, a :class:`~modelglass.errors.GenerationTimeout` does.

Partial results: when ``n`` needs several provider calls and a later one fails for good, the
images of the calls that succeeded were paid for and are returned: the result holds fewer images
than asked, the ``n`` fate becomes ``approximated`` (saying which call failed and why), and
``result.extra["partial"]`` records it. With ``strict=True`` the error is raised instead, with
the images delivered so far on ``error.partial`` (an ``ImageResult``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from .catalog import Catalog, OfferView
from .errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    GenerationTimeout,
    InvalidRequest,
    ModelglassError,
    ProviderError,
    ProviderUnavailable,
)
from .plan import ProviderCall, plan_call
from .providers import PROVIDER_CLASSES, create_provider
from .providers.base import Availability, Provider
from .request import ImageRequest
from .result import Attempt, Fate, FateKind, GeneratedImage, ImageResult

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from .jobs._batch import BatchReport, JobOutcome

    from ._download import Fetched
    from .budget import Budget, Reservation
    from .providers.base import ProviderOutput
    from .routing import Candidate, RoutingDecision

log = logging.getLogger("modelglass")

__all__ = ["AsyncClient", "Client"]

Available = Iterable[str] | Callable[[OfferView], Availability] | None

#: Errors that end the job at once: retrying or another model would not change the answer.
_NO_FALLBACK = (InvalidRequest, BudgetExceeded)
#: Below this many seconds left, the job's deadline counts as spent (no call could finish).
_DEADLINE_SLACK_S = 0.05
#: Keys in ``ProviderOutput.extra`` that describe the software that made the image.
_VERSION_KEYS = ("torch", "diffusers", "transformers", "python", "cuda", "cudnn", "device",
                 "dtype", "threads", "stack", "pipeline", "scheduler")


def _retryable(exc: BaseException) -> bool:
    """Whether the same provider call may be tried again (see the module docstring)."""
    return (isinstance(exc, ProviderError) and exc.retryable
            and not isinstance(exc, (GenerationTimeout, AllAttemptsFailed)))


def _falls_back(exc: BaseException) -> bool:
    """Whether the next ranked offer may be tried after ``exc`` ended this one."""
    from .errors import ContentRejected

    if isinstance(exc, (*_NO_FALLBACK, ContentRejected)):
        return False
    return isinstance(exc, (ProviderError, ProviderUnavailable))


@dataclass
class _Job:
    """One ``generate`` call in flight: what was asked, the fallback order, the clock."""

    request: ImageRequest
    decision: RoutingDecision
    started: float
    deadline_s: float
    attempts: list[Attempt] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def deadline_at(self) -> float:
        return self.started + self.deadline_s

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def add_time(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds


@dataclass
class _Run:
    """One offer being tried: its plan, its provider calls (one per chunk), what came back."""

    candidate: Candidate
    call: ProviderCall
    provider: Provider
    chunk_calls: list[ProviderCall]
    reservation: Reservation | None
    tries: int = 0
    outputs: list[ProviderOutput] = field(default_factory=list)
    images: list[GeneratedImage] = field(default_factory=list)
    fetched: list[Fetched] = field(default_factory=list)
    billed: list[float | None] = field(default_factory=list)  # per chunk whose output arrived
    estimated: list[bool] = field(default_factory=list)      # that chunk's cost is an estimate

    @property
    def key(self) -> str:
        return self.call.offer.key


class _RetryPolicy:
    """tenacity's ``stop`` and ``wait`` for one provider call of one job.

    The wait is decided once per failed try (tenacity asks ``wait`` and ``stop`` in an order that
    changed between versions): a wait that would pass the job's deadline stops the retries
    instead of sleeping into the deadline.
    """

    def __init__(self, client: _BaseClient, job: _Job, run: _Run) -> None:
        self.client, self.job, self.run = client, job, run
        self._decided: tuple[int, float] = (0, 0.0)

    def delay(self, state: Any) -> float:
        """``Retry-After`` (capped) when the provider said, else exponential backoff + jitter."""
        from .errors import RateLimited

        number, seconds = self._decided
        if number == state.attempt_number:
            return seconds
        exc = state.outcome.exception()
        cap = self.client.retry_after_cap_s
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            seconds = min(exc.retry_after, cap)
        else:
            base = self.client.retry_backoff_s
            seconds = min(cap, base * 2 ** (state.attempt_number - 1) + random.uniform(0, base))
        self._decided = (state.attempt_number, float(seconds))
        return float(seconds)

    def stop(self, state: Any) -> bool:
        exc = state.outcome.exception()
        if state.attempt_number > self.client.max_retries:
            log.info("%s: giving up after %d tries: %s", self.run.key, state.attempt_number,
                     self.client._scrub(str(exc)))
            return True
        wait = self.delay(state)
        if wait >= self.job.remaining() - _DEADLINE_SLACK_S:
            log.info("%s: not retrying: waiting %.2f s would pass the job's deadline",
                     self.run.key, wait)
            return True
        return False

    def wait(self, state: Any) -> float:
        return self.delay(state)

    def before_sleep(self, state: Any) -> None:
        exc, wait = state.outcome.exception(), self.delay(state)
        self.job.add_time("retry_wait_s", wait)
        log.info("%s: try %d failed (%s); retrying in %.2f s", self.run.key,
                 state.attempt_number, self.client._scrub(str(exc)), wait)

    def kwargs(self) -> dict[str, Any]:
        from tenacity import retry_if_exception

        return {"stop": self.stop, "wait": self.wait, "retry": retry_if_exception(_retryable),
                "before_sleep": self.before_sleep, "reraise": True}


class _BaseClient:
    """Shared, I/O-free core of both clients.

    ``budget`` is a :class:`~modelglass.budget.Budget` shared by every call (and by other clients
    given the same one). ``timeout_s`` bounds one provider call, ``deadline_s`` the whole job
    (retries, fallbacks and downloads included). ``max_retries`` counts retries per provider
    call; ``retry_after_cap_s`` caps both a provider's ``Retry-After`` and the backoff, which
    starts at ``retry_backoff_s``.
    """

    def __init__(self, *, catalog: Catalog | None = None, local: Provider | None = None,
                 providers: dict[str, Provider] | None = None, available: Iterable[str] | None = None,
                 api_keys: dict[str, str] | None = None, budget: Budget | None = None,
                 timeout_s: float = 120.0, deadline_s: float = 600.0, max_retries: int = 3,
                 retry_after_cap_s: float = 30.0, retry_backoff_s: float = 0.5,
                 max_download_bytes: int = 64 << 20, policy: Any = None) -> None:
        self.catalog = catalog or Catalog.default()
        # policy hook: the routing rules (mg.Policy, a policy file path, or None: the shipped
        # default) and the process-wide provider health board they read and attempts feed.
        from .routing import HealthBoard, Policy

        self.policy = Policy.coerce(policy, catalog=self.catalog) or Policy.default()
        self.health = HealthBoard.shared()
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
        self.retry_backoff_s = retry_backoff_s
        self.max_download_bytes = max_download_bytes
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows keys
        return (f"{type(self).__name__}(catalog={self.catalog!r}, "
                f"providers={sorted(self._providers)})")

    # -- providers --------------------------------------------------------------------------------
    def provider(self, name: str) -> Provider:
        """The provider instance for ``name``, created on first use with this client's keys."""
        prov = self._providers.get(name)
        if prov is not None:
            return prov
        if name not in PROVIDER_CLASSES:
            raise ProviderUnavailable(f"unknown provider {name!r}; known: "
                                      f"{', '.join(PROVIDER_CLASSES)}", provider=name)
        with self._lock:  # two threads must not build two clients for one provider
            if name not in self._providers:
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
              available: Iterable[str] | None = None, policy: Any = None, **kw: Any) -> Any:
        """Rank every eligible offer for ``request`` and say why; no network.

        ``available`` overrides which providers count as available (default: those configured
        here — keys present, clients installed, local weights found). ``policy`` overrides this
        client's policy for this call (an ``mg.Policy`` or a policy file path).
        """
        from .routing import Policy, route
        from .routing._latency import DEFAULT_OBSERVED

        req = self._request(request, **kw)
        assume = set(available) if available is not None else self._assume_available
        # policy hook: this call's policy, the shared health board, observed latencies
        return route(req, self.catalog, available=self._offer_available(assume),
                     providers=self._providers_for_planning(),
                     policy=Policy.coerce(policy, catalog=self.catalog) or self.policy,
                     health=self.health, observed=DEFAULT_OBSERVED)

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

    # -- the call path, without I/O ---------------------------------------------------------------
    def _begin(self, request: ImageRequest | str | None, fields: dict[str, Any]) -> _Job:
        """Build the request and route it; raises :class:`NoEligibleModel` when nothing fits."""
        started = time.monotonic()
        req = self._request(request, **fields)
        decision = self.route(req)
        decision.require()
        job = _Job(request=req, decision=decision, started=started, deadline_s=self.deadline_s)
        job.timings["route_s"] = time.monotonic() - started
        return job

    def _open(self, job: _Job, candidate: Candidate) -> _Run:
        """Plan the offer and hold its estimated cost — before anything is sent."""
        t0 = time.monotonic()
        call = candidate.call  # planned on first use for offers past the first few
        provider = self.provider(candidate.provider)
        chunk_calls = self._chunk_calls(call, provider)
        job.add_time("plan_s", time.monotonic() - t0)
        reservation = self._reserve(job, call)
        return _Run(candidate=candidate, call=call, provider=provider, chunk_calls=chunk_calls,
                    reservation=reservation)

    @staticmethod
    def _chunk_calls(call: ProviderCall, provider: Provider) -> list[ProviderCall]:
        """One provider call per chunk of ``n``; chunk ``k`` continues the seeds (seed + i)."""
        if len(call.chunks) == 1:
            return [call]
        # The first chunk's payload is the plan's own; its planned n is the chunk's.
        calls = [dataclasses.replace(call, planned=call.planned.chunk(0, call.chunks[0]))]
        start = call.chunks[0]
        for count in call.chunks[1:]:
            planned = call.planned.chunk(start, count)
            payload, _ = provider.build_payload(planned, call.offer)
            calls.append(dataclasses.replace(call, planned=planned, payload=payload))
            start += count
        return calls

    def _reserve(self, job: _Job, call: ProviderCall) -> Reservation | None:
        """``max_cost_usd`` again (the plan may differ from what routing saw), then the budget."""
        usd = call.estimate.usd
        limit = job.request.max_cost_usd
        if limit is not None:
            if usd is None:
                raise BudgetExceeded(
                    f"{call.offer.key}: its price is unknown, so max_cost_usd=${limit:.4f} cannot "
                    f"be guaranteed; nothing was sent. Pick a model with a known price.",
                    estimate_usd=None, limit_usd=limit)
            if usd > limit + 1e-12:
                raise BudgetExceeded(
                    f"{call.offer.key}: the estimate ${usd:.4f} ({call.estimate.basis}) is over "
                    f"max_cost_usd=${limit:.4f}; nothing was sent. Raise the ceiling or ask for "
                    f"fewer or smaller images.", estimate_usd=usd, limit_usd=limit)
        if self.budget is None:
            return None
        return self.budget.reserve(usd, label=call.offer.key)

    def _call_timeout(self, job: _Job, run: _Run) -> float:
        """Seconds the next provider call may take: the client's timeout within the deadline."""
        left = job.remaining()
        if left <= _DEADLINE_SLACK_S:
            raise self._deadline_error(job, f"before the next call to {run.key}")
        return min(self.timeout_s, left)

    def _deadline_error(self, job: _Job, where: str) -> GenerationTimeout:
        err = GenerationTimeout(
            f"the job's deadline of {job.deadline_s:g} s ran out {where} "
            f"({len(job.attempts)} provider attempt(s) made). Raise deadline_s, or use a faster "
            f"quality axis or model.", retryable=False)
        err.attempts = list(job.attempts)  # type: ignore[attr-defined]
        return err

    def _attempt(self, job: _Job, run: _Run) -> Attempt:
        run.tries += 1
        attempt = Attempt(number=run.tries, model=run.call.model, provider=run.call.provider,
                          offer_id=run.key, started_at=time.time())
        job.attempts.append(attempt)
        return attempt

    def _scrub(self, text: str) -> str:
        """``text`` without any key this client knows (belt and braces: providers scrub too)."""
        from .providers._common import scrub

        secrets: list[str | None] = [*self._api_keys.values()]
        for prov in self._providers.values():
            secrets.extend(os.environ.get(name) for name in prov.env_keys)
        return scrub(text, tuple(secrets))

    def _end_attempt(self, attempt: Attempt, exc: BaseException | None, t0: float) -> None:
        attempt.duration_s = time.monotonic() - t0
        if exc is not None:
            attempt.error = self._scrub(str(exc)) or type(exc).__name__
            attempt.error_type = type(exc).__name__
            attempt.status = getattr(exc, "status", None)
            attempt.retryable = _retryable(exc)
            # observed-store hook: per-offer failure counts for `catalog verify` and routing
            from .catalog._observed import observe_failure

            observe_failure(self, attempt.offer_id, exc, attempt.duration_s)
            # observed-store hook: per-offer failure counts for `catalog verify` and routing
            from .catalog._observed import observe_failure

            observe_failure(self, attempt.offer_id, exc, attempt.duration_s)
        # health hook: every attempt's outcome feeds the process-wide provider health board
        self.health.observe(attempt.offer_id, attempt.provider, exc)

    def _delivered(self, run: _Run, chunk: ProviderCall, output: ProviderOutput) -> None:
        """A provider call answered: from here on its images are billed, downloaded or not."""
        run.outputs.append(output)
        if output.cost_usd is not None:
            run.billed.append(output.cost_usd)
            run.estimated.append(False)
            return
        est = run.call.estimate.usd
        run.billed.append(None if est is None else est * chunk.planned.n / run.call.planned.n)
        run.estimated.append(True)

    def _collect(self, job: _Job, run: _Run, chunk: ProviderCall, output: ProviderOutput,
                 fetched: list[Fetched]) -> None:
        """Verified bytes of one chunk → :class:`GeneratedImage` objects."""
        from ._download import has_c2pa
        from .testing._images import is_simulated

        seeds = chunk.planned.seeds
        for i, (raw, got) in enumerate(zip(output.images, fetched, strict=True)):
            seed = raw.seed if raw.seed is not None else (seeds[i] if seeds and i < len(seeds)
                                                          else None)
            run.fetched.append(got)
            run.images.append(GeneratedImage(
                data=got.data, mime=got.mime, width=got.width, height=got.height, seed=seed,
                index=len(run.images), sha256=got.sha256, simulated=is_simulated(got.data),
                c2pa=has_c2pa(got.data)))

    def _close_budget(self, run: _Run) -> None:
        """Settle what was billed; release the rest of the reservation."""
        if self.budget is None or run.reservation is None:
            return
        if not run.billed:
            self.budget.release(run.reservation)
            return
        known = [b for b in run.billed if b is not None]
        self.budget.settle(run.reservation, sum(known) if len(known) == len(run.billed) else None)

    def _result(self, job: _Job, run: _Run, partial: BaseException | None = None) -> ImageResult:
        from ._download import size_fate

        call = run.call
        fates = list(call.fates)
        planned = call.planned
        for got in run.fetched:  # the bytes are the truth: a size that differs is a fate
            fate = size_fate(got, planned.width, planned.height, call.fate("size"))
            if fate is not None:
                fates = [f for f in fates if f.control != "size"] + [fate]
                break
        # The cost is what was billed: every call that answered, even one whose download failed.
        known = [b for b in run.billed if b is not None]
        cost = sum(known) if known and len(known) == len(run.billed) else None
        is_estimate = any(run.estimated) or cost is None
        extra: dict[str, Any] = {"request_ids": [o.request_id for o in run.outputs],
                                 "provider_timings": [o.timings for o in run.outputs]}
        if partial is not None:
            n = job.request.n
            failed_at = len(run.outputs) + 1 if len(run.images) == sum(
                len(o.images) for o in run.outputs) else len(run.outputs)
            why = self._scrub(str(partial)).splitlines()[0]
            fates = [f for f in fates if f.control != "n"] + [Fate(
                "n", FateKind.approximated, n, len(run.images),
                f"provider call {failed_at} of {len(run.chunk_calls)} on {run.key} failed "
                f"({type(partial).__name__}: {why}); the {len(run.images)} image(s) already "
                f"paid for are returned", f"{len(run.images)} of {n} images")]
            extra["partial"] = {"requested": n, "delivered": len(run.images),
                                "error_type": type(partial).__name__, "error": why}
        job.timings["total_s"] = time.monotonic() - job.started
        simulated = any(img.simulated for img in run.images)
        result = ImageResult(images=run.images, model=call.model, provider=call.provider,
                             cost_usd=cost, cost_is_estimate=is_estimate,
                             latency_s=job.timings["total_s"], fates=fates,
                             decision=job.decision, attempts=job.attempts, plan=call,
                             simulated=simulated, timings=dict(job.timings), extra=extra)
        self._stamp(result, run)
        # observed-store hook: latency, reported cost, sizes and seeds of every result
        from .catalog._observed import observe_result

        observe_result(self, result)
        # observed-store hook: latency, reported cost, sizes and seeds of every result
        from .catalog._observed import observe_result

        observe_result(self, result)
        return result

    @staticmethod
    def _stamp(result: ImageResult, run: _Run) -> None:
        """Fill each image's provenance (what ``GeneratedImage.save`` embeds). No keys in it:
        the request and payloads come from the plan, which never holds one."""
        from . import __version__

        versions: dict[str, Any] = {}
        for out in run.outputs:
            versions.update({k: out.extra[k] for k in _VERSION_KEYS if k in out.extra})
        per_image = (None if result.cost_usd is None or not result.images
                     else result.cost_usd / len(result.images))
        base = {
            "generator": f"modelglass {__version__}",
            "request": run.call.request.model_dump(mode="json"),
            "model": result.model, "provider": result.provider, "offer": run.key,
            "endpoint": run.call.offer.endpoint,
            "fates": [f.to_dict() for f in result.fates],
            "cost_usd": per_image, "cost_is_estimate": result.cost_is_estimate,
            "timings": result.timings, "simulated": result.simulated,
        }
        if versions:
            base["versions"] = versions
        base["planned"] = _planned_meta(run.call, result.fates)
        chunk_of: list[tuple[ProviderCall, ProviderOutput]] = []
        for chunk, out in zip(run.chunk_calls, run.outputs, strict=False):
            chunk_of.extend((chunk, out) for _ in out.images)
        for img, (chunk, out) in zip(result.images, chunk_of, strict=False):
            img.metadata = {**base, "seed": img.seed, "index": img.index, "sha256": img.sha256,
                            "simulated": img.simulated, "payload": chunk.payload,
                            "request_id": out.request_id}

    def _after_failure(self, job: _Job, run: _Run | None, exc: BaseException) -> ImageResult | None:
        """What an offer's failure leads to: a partial result, an error raised, or (None) the
        next offer. Settles or releases the offer's budget reservation either way."""
        if run is not None:
            self._close_budget(run)
        if not isinstance(exc, ModelglassError):
            raise exc  # a bug, not a provider failure: never hidden behind a fallback
        if not hasattr(exc, "attempts"):
            exc.attempts = list(job.attempts)  # type: ignore[attr-defined]
        if run is not None and run.images:
            result = self._result(job, run, partial=exc)
            if job.request.strict:
                exc.partial = result  # type: ignore[attr-defined]
                raise exc
            log.warning("%s: returning %d of %d images: %s", run.key, len(run.images),
                        job.request.n, self._scrub(str(exc)).splitlines()[0])
            return result
        if not _falls_back(exc):
            raise exc
        if job.remaining() <= _DEADLINE_SLACK_S:
            raise self._deadline_error(job, f"while trying {run.key if run else 'an offer'}") \
                from exc
        log.info("%s failed (%s); falling back to the next ranked offer",
                 run.key if run else "offer", self._scrub(str(exc)).splitlines()[0])
        return None

    def _all_failed(self, job: _Job) -> AllAttemptsFailed:
        keys = list(dict.fromkeys(a.offer_id for a in job.attempts))
        return AllAttemptsFailed(
            f"every ranked offer failed for this {job.request.quality.value} request "
            f"({len(keys)} offer(s), {len(job.attempts)} attempt(s)); each attempt below. "
            f"Check the providers' status, or widen the choice (another quality axis, "
            f"unpin model/provider).", attempts=list(job.attempts))


class Client(_BaseClient):
    """The synchronous client.

    >>> import modelglass as mg
    >>> with mg.Client() as client:                                       # doctest: +SKIP
    ...     r = client.generate("a red bicycle", quality="draft", seed=7)
    ...     r.images[0].save("bike.png")
    """

    _http: httpx.Client | None = None

    def generate(self, prompt_or_request: ImageRequest | str | None = None, /,
                 **request_fields: Any) -> ImageResult:
        """Generate images: route, plan, check the budget, call (with retries and fallback),
        download and verify. Takes an :class:`ImageRequest`, a prompt, or the request's fields
        as keywords (``quality=``, ``size=``, ``seed=``, ``n=``, ``model=``, ``provider=``, …).
        """
        job = self._begin(prompt_or_request, request_fields)
        for candidate in job.decision.ranked:
            run: _Run | None = None
            try:
                run = self._open(job, candidate)
                for chunk in run.chunk_calls:
                    output = self._call(job, run, chunk)
                    self._delivered(run, chunk, output)
                    self._collect(job, run, chunk, output, self._download(job, run, output))
            except Exception as exc:  # noqa: BLE001 - _after_failure re-raises what must not be caught
                partial = self._after_failure(job, run, exc)
                if partial is not None:
                    return partial
                continue
            self._close_budget(run)
            return self._result(job, run)
        raise self._all_failed(job)

    def _call(self, job: _Job, run: _Run, chunk: ProviderCall) -> ProviderOutput:
        from tenacity import Retrying

        for retry in Retrying(**_RetryPolicy(self, job, run).kwargs()):
            with retry:
                timeout_s = self._call_timeout(job, run)
                attempt, t0 = self._attempt(job, run), time.monotonic()
                try:
                    output = run.provider.generate(chunk, timeout_s=timeout_s)
                except BaseException as exc:
                    self._end_attempt(attempt, exc, t0)
                    raise
                finally:
                    job.add_time("call_s", time.monotonic() - t0)
                self._end_attempt(attempt, None, t0)
        return output

    def _download(self, job: _Job, run: _Run, output: ProviderOutput) -> list[Fetched]:
        from ._download import fetch

        t0 = time.monotonic()
        try:
            return [fetch(raw, client=self._http_client(), provider=run.call.provider,
                          timeout_s=max(min(self.timeout_s, job.remaining()), 0.001),
                          max_bytes=self.max_download_bytes) for raw in output.images]
        except Exception as exc:
            self._end_attempt(job.attempts[-1], exc, t0 - job.attempts[-1].duration_s)
            raise
        finally:
            job.add_time("download_s", time.monotonic() - t0)

    def _http_client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            with self._lock:
                if self._http is None:
                    self._http = httpx.Client()
        return self._http  # type: ignore[return-value]

    # batch entry points (modelglass/jobs/_batch.py does the work)
    def generate_many(self, requests: Iterable[ImageRequest | dict[str, Any]], /, *,
                      concurrency: int = 32, budget: Budget | float | None = None,
                      journal: str | os.PathLike[str] | None = None,
                      **options: Any) -> BatchReport:
        """Run many requests (``ImageRequest`` or dicts of its fields with an optional ``id``)
        under one concurrency limit, budget and journal; the report lists them in input order.
        ``options``: ``out``, ``cache``, ``limits``, ``allow_double_payment``, ``retry_failed``,
        ``durable``, ``on_event``, ``on_outcome`` (see ``docs/batch.md``)."""
        from .jobs._batch import Batch, run_sync

        return run_sync(Batch(self, requests, concurrency=concurrency, budget=budget,
                              journal=journal, **options))

    def close(self) -> None:
        """Close the provider clients and the download client."""
        for p in list(self._providers.values()):
            p.close()
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_BaseClient):
    """The asynchronous twin of :class:`Client`, with the same methods.

    >>> import asyncio, modelglass as mg
    >>> async def main(prompts):                                          # doctest: +SKIP
    ...     async with mg.AsyncClient() as c:
    ...         return await asyncio.gather(*(c.generate(p, quality="thumbnail") for p in prompts))
    """

    def __init__(self, **kw: Any) -> None:
        from .providers._common import PerLoop

        super().__init__(**kw)
        self._http: PerLoop[httpx.AsyncClient] = PerLoop(self._make_http)

    async def generate(self, prompt_or_request: ImageRequest | str | None = None, /,
                       **request_fields: Any) -> ImageResult:
        """The async twin of :meth:`Client.generate`."""
        job = self._begin(prompt_or_request, request_fields)
        for candidate in job.decision.ranked:
            run: _Run | None = None
            try:
                run = self._open(job, candidate)
                for chunk in run.chunk_calls:
                    output = await self._call(job, run, chunk)
                    self._delivered(run, chunk, output)
                    self._collect(job, run, chunk, output, await self._download(job, run, output))
            except Exception as exc:  # noqa: BLE001 - _after_failure re-raises what must not be caught
                partial = self._after_failure(job, run, exc)
                if partial is not None:
                    return partial
                continue
            self._close_budget(run)
            return self._result(job, run)
        raise self._all_failed(job)

    async def _call(self, job: _Job, run: _Run, chunk: ProviderCall) -> ProviderOutput:
        from tenacity import AsyncRetrying

        async for retry in AsyncRetrying(**_RetryPolicy(self, job, run).kwargs()):
            with retry:
                timeout_s = self._call_timeout(job, run)
                attempt, t0 = self._attempt(job, run), time.monotonic()
                try:
                    output = await run.provider.agenerate(chunk, timeout_s=timeout_s)
                except BaseException as exc:
                    self._end_attempt(attempt, exc, t0)
                    raise
                finally:
                    job.add_time("call_s", time.monotonic() - t0)
                self._end_attempt(attempt, None, t0)
        return output

    async def _download(self, job: _Job, run: _Run, output: ProviderOutput) -> list[Fetched]:
        from ._download import afetch

        t0 = time.monotonic()
        client = self._http.get()
        timeout_s = max(min(self.timeout_s, job.remaining()), 0.001)
        try:
            if len(output.images) == 1:
                return [await afetch(output.images[0], client=client, timeout_s=timeout_s,
                                     provider=run.call.provider, max_bytes=self.max_download_bytes)]
            return list(await asyncio.gather(*(
                afetch(raw, client=client, timeout_s=timeout_s, provider=run.call.provider,
                       max_bytes=self.max_download_bytes) for raw in output.images)))
        except Exception as exc:
            self._end_attempt(job.attempts[-1], exc, t0 - job.attempts[-1].duration_s)
            raise
        finally:
            job.add_time("download_s", time.monotonic() - t0)

    @staticmethod
    def _make_http() -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient()

    # batch entry points (modelglass/jobs/_batch.py does the work)
    def agenerate_many(self, requests: Iterable[ImageRequest | dict[str, Any]], /, *,
                       concurrency: int = 32, budget: Budget | float | None = None,
                       journal: str | os.PathLike[str] | None = None,
                       **options: Any) -> AsyncIterator[JobOutcome]:
        """The async twin of :meth:`Client.generate_many`: ``async for outcome in ...`` yields
        each job's :class:`~modelglass.jobs.JobOutcome` as it completes."""
        from .jobs._batch import Batch, run_async

        return run_async(Batch(self, requests, concurrency=concurrency, budget=budget,
                               journal=journal, **options))

    async def aclose(self) -> None:
        """Close the provider clients and this event loop's download client."""
        for p in list(self._providers.values()):
            await p.aclose()
        http = self._http.pop_current()
        if http is not None:
            await http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


_PLANNED_CONTROLS = {"negative_prompt": "negative_prompt", "guidance": "cfg", "true_cfg": "cfg",
                     "steps": "steps", "sampler": "sampler"}


def _planned_meta(call: ProviderCall, fates: list[Any]) -> dict[str, Any]:
    """What was actually sent for each control (for the A1111 ``parameters`` line): planned
    values, minus any the provider dropped."""
    p = call.planned
    dropped = {f.control for f in fates if f.kind.value == "dropped"}
    g = call.offer.controls.guidance
    out: dict[str, Any] = {"width": p.width, "height": p.height, "tier": p.tier,
                           "guidance_kind": g.kind.value if g is not None else None}
    for name, control in _PLANNED_CONTROLS.items():
        value = getattr(p, name)
        if value is not None and control not in dropped:
            out[name] = value
    return out

