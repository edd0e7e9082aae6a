"""``Client`` and ``AsyncClient``: the front of modelglass. Route, plan, then run the job.

The job itself — budget, provider calls with retries and fallback, downloads, the deadline,
cancellation, attempts, events and the result — is one pure state machine in
:mod:`modelglass.jobs._engine` (its docstring has the rules). The clients build it and drive it:
``Client`` with blocking I/O, ``AsyncClient`` awaiting; that is the only place they differ.

- ``generate(..., job_id=, events=, resume=, allow_double_payment=, deadline_s=)``: ``events``
  receives a :class:`~modelglass.jobs.JobEvent` per state transition (pending → submitted →
  generated → downloaded → done / failed); ``resume`` polls a job submitted before (a
  :class:`~modelglass.jobs.Resume`) instead of submitting it again.
- What ``generate`` raises: the typed error that ended the job, with every attempt on
  ``.attempts`` (see :mod:`modelglass.jobs._outcome`). Partial results say so:
  ``result.partial`` and ``result.missing``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Self

from ._clock import parse_date
from .catalog import LOCAL, Catalog, OfferView
from .errors import InvalidRequest, ProviderUnavailable
from .jobs import _drive
from .jobs._engine import Job
from .jobs._owner import Hooks
from .plan import ProviderCall, plan_call
from .providers import PROVIDER_CLASSES, create_provider
from .providers.base import Availability, Provider
from .request import ImageRequest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from .budget import Budget, Lease
    from .checks import Checker, CheckResult
    from .jobs._batch import BatchReport, JobOutcome
    from .jobs._events import EventSink, Resume
    from .jobs._retry import RetryPolicy
    from .result import Attempt, ImageResult
    from .routing import RoutingDecision

log = logging.getLogger("modelglass")

__all__ = ["AsyncClient", "Client"]

Available = Iterable[str] | Callable[[OfferView], Availability] | None


class _BaseClient:
    """Shared, I/O-free core of both clients.

    ``budget`` is a :class:`~modelglass.budget.Budget` shared by every call (and by other clients
    given the same one). ``timeout_s`` bounds one provider call, ``deadline_s`` the whole job
    (retries, fallbacks, downloads and cancels included). ``max_retries`` counts retries per
    provider call; ``retry_after_cap_s`` caps both a provider's ``Retry-After`` and the backoff,
    which starts at ``retry_backoff_s``. ``allow_double_payment``: after a failure whose outcome
    is unknown (the provider may have billed it), try the next offer anyway (off by default:
    such a job is never paid for twice). ``observed``: where results and failures are recorded
    for ``catalog verify`` and latency limits (an ``ObservedStore``; False: nowhere; None: the
    user's cache-dir store, off with ``MODELGLASS_OBSERVE=0``). ``today``: the date lifecycles
    are judged on (a ``datetime.date`` or ``"YYYY-MM-DD"``; default ``$MODELGLASS_TODAY``, else
    the system date).
    """

    def __init__(self, *, catalog: Catalog | None = None, local: Provider | None = None,
                 providers: dict[str, Provider] | None = None, available: Iterable[str] | None = None,
                 api_keys: dict[str, str] | None = None, budget: Budget | None = None,
                 timeout_s: float = 120.0, deadline_s: float = 600.0, max_retries: int = 3,
                 retry_after_cap_s: float = 30.0, retry_backoff_s: float = 0.5,
                 max_download_bytes: int = 64 << 20, policy: Any = None,
                 allow_double_payment: bool = False, observed: Any = None,
                 today: Any = None) -> None:
        from ._options import check_client_options

        check_client_options(  # every argument typed and in range, or InvalidRequest naming it
            providers=providers, available=available, api_keys=api_keys, budget=budget,
            timeout_s=timeout_s, deadline_s=deadline_s, max_retries=max_retries,
            retry_after_cap_s=retry_after_cap_s, retry_backoff_s=retry_backoff_s,
            max_download_bytes=max_download_bytes, allow_double_payment=allow_double_payment)
        self.catalog = catalog or Catalog.default()
        # policy hook: the routing rules (mg.Policy, a policy file path, or None: the shipped
        # default) and the process-wide provider health board they read and attempts feed.
        from .routing import HealthBoard, Policy

        self.policy = Policy.coerce(policy, catalog=self.catalog) or Policy.default()
        self.health = HealthBoard.shared()
        self._providers: dict[str, Provider] = dict(providers or {})
        if local is not None:
            self._providers[LOCAL] = local
        self._api_keys = dict(api_keys or {})
        self._assume_available = set(available) if available is not None else None
        self.budget = budget
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.max_retries = max_retries
        self.retry_after_cap_s = retry_after_cap_s
        self.retry_backoff_s = retry_backoff_s
        self.max_download_bytes = max_download_bytes
        self.allow_double_payment = allow_double_payment
        # observed-store hook: an ObservedStore to record results and failures in, False for
        # none, None for the user's default store (off with MODELGLASS_OBSERVE=0)
        self.observed = observed
        #: The date routing judges lifecycles on (None: ``$MODELGLASS_TODAY`` or the system date).
        self.today: dt.date | None = None if today is None else parse_date(today, field="today")
        self._lock = threading.Lock()
        self._retry_policy: tuple[tuple[int, float, float], RetryPolicy] | None = None

    def __repr__(self) -> str:  # never shows keys
        return (f"{type(self).__name__}(catalog={self.catalog!r}, "
                f"providers={sorted(self._providers)})")

    @property
    def available(self) -> frozenset[str] | None:
        """The providers this client was told to take as available (``available=``); None:
        each is checked (keys present, clients installed, local weights found)."""
        assumed = self._assume_available
        return None if assumed is None else frozenset(assumed)

    @property
    def local(self) -> Provider | None:
        """The local backend this client was given (``local=``, or ``providers["local"]``)."""
        return self._providers.get(LOCAL)

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
            if kw:  # unset fields stay unset (a quality left to the policy's default)
                data = request.model_dump(exclude_unset=True)
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
        if available is not None:  # a list of names, each known: "fal" is not ["f", "a", "l"]
            from ._options import check_provider_names

            available = check_provider_names(available, field="available")
        assume = set(available) if available is not None else self._assume_available
        # policy hook: this call's policy, the shared health board, observed latencies
        return route(req, self.catalog, available=self._offer_available(assume),
                     providers=self._providers_for_planning(),
                     policy=Policy.coerce(policy, catalog=self.catalog) or self.policy,
                     health=self.health, observed=self._latency_source(DEFAULT_OBSERVED),
                     today=self.today)

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
        return plan_call(request, view, provider=self._providers.get(view.provider),
                         today=self.today)

    # -- the job --------------------------------------------------------------------------------
    def _job(self, request: ImageRequest | str | None, fields: dict[str, Any], **kw: Any) -> Job:
        """``generate``'s job: the request built from its arguments, on this client's budget."""
        return self.job(self._request(request, **fields), budget=self.budget, **kw)

    def job(self, request: ImageRequest, *, budget: Budget | Lease | None,
            decision: RoutingDecision | None = None, job_id: str | None = None,
            events: EventSink | None = None, resume: Resume | None = None,
            allow_double_payment: bool | None = None, deadline_s: float | None = None,
            check: Any = False, on_fail: str = "keep", max_check_retries: int = 1) -> Job:
        """The job of one ``generate`` call, built but not run: a batch drives it itself.

        ``budget`` is what the job reserves on (a batch hands each job its own
        :class:`~modelglass.budget.Lease`); ``decision`` a routing decision already made for
        ``request`` (None: route it now). Raises :class:`NoEligibleModel` when nothing fits
        (before anything is sent); the other arguments are ``generate``'s.
        """
        from .checks import checking_of

        started = time.monotonic()
        checking = checking_of(check, on_fail=on_fail, max_check_retries=max_check_retries)
        if deadline_s is not None and not (isinstance(deadline_s, (int, float))
                                           and not isinstance(deadline_s, bool)
                                           and 0 < deadline_s < float("inf")):
            raise InvalidRequest(f"deadline_s must be a positive number of seconds, got "
                                 f"{deadline_s!r}", field="deadline_s")
        if events is not None and not callable(events):
            raise InvalidRequest(f"events must be a callable given each JobEvent (or None), not "
                                 f"{type(events).__name__} {events!r}", field="events")
        if decision is None:
            decision = self.route(request)
        decision.require()
        job = Job(self, request, decision, started=started, job_id=job_id, events=events,
                  resume=resume, deadline_s=self.deadline_s if deadline_s is None else deadline_s,
                  allow_double_payment=(self.allow_double_payment if allow_double_payment is None
                                        else allow_double_payment), checking=checking,
                  budget=budget, hooks=Hooks(self._scrub, self._attempt_ended,
                                             self._result_ready, self._checks_done))
        job.timings["route_s"] = time.monotonic() - started
        return job

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of this client's settings (rebuilt when they change)."""
        key = (self.max_retries, self.retry_backoff_s, self.retry_after_cap_s)
        cached = self._retry_policy
        if cached is None or cached[0] != key:
            from .jobs._retry import RetryPolicy

            cached = self._retry_policy = (key, RetryPolicy(
                max_retries=self.max_retries, retry_backoff_s=self.retry_backoff_s,
                retry_after_cap_s=self.retry_after_cap_s))
        return cached[1]

    def _scrub(self, text: str) -> str:
        """``text`` without any key this client knows (belt and braces: providers scrub too)."""
        from .providers._keys import scrub

        secrets: list[str | None] = [*self._api_keys.values()]
        for prov in self._providers.values():
            secrets.extend(os.environ.get(name) for name in prov.env_keys)
        return scrub(text, tuple(secrets))

    def _latency_source(self, default: Any) -> Any:
        """Where routing reads observed latency: this client's own store when it was given one,
        none when observing is off for it (``observed=False``), else the process's default."""
        if self.observed is None:
            return default
        return self.observed if hasattr(self.observed, "latency_p90") else None

    # -- hooks the job calls ----------------------------------------------------------------------
    def _attempt_ended(self, attempt: Attempt, exc: BaseException | None) -> None:
        """An attempt ended (``exc`` None: it succeeded)."""
        if exc is not None:
            # observed-store hook: per-offer failure counts for `catalog verify` and routing
            from .catalog._observed import observe_failure

            observe_failure(self, attempt.offer_id, exc, attempt.duration_s)
        # health hook: every attempt's outcome feeds the process-wide provider health board
        self.health.observe(attempt.offer_id, attempt.provider, exc)

    def _checks_done(self, offer_key: str, request: ImageRequest,
                     checks: list[CheckResult]) -> None:
        """A try's images were checked (every try: the failed ones teach routing most)."""
        # observed-store hook: pass rates per offer × check × prompt class
        from .catalog._observed import observe_checks

        observe_checks(self, offer_key, request, checks)

    def _result_ready(self, result: ImageResult) -> None:
        """A job delivered its result."""
        # observed-store hook: latency, reported cost, sizes and seeds of every result
        from .catalog._observed import observe_result

        observe_result(self, result)


class Client(_BaseClient):
    """The synchronous client.

    >>> import modelglass as mg
    >>> with mg.Client() as client:                                       # doctest: +SKIP
    ...     r = client.generate("a red bicycle", quality="draft", seed=7)
    ...     r.images[0].save("bike.png")
    """

    _http: httpx.Client | None = None
    _pool: ThreadPoolExecutor | None = None

    def generate(self, prompt_or_request: ImageRequest | str | None = None, /, *,
                 job_id: str | None = None, events: EventSink | None = None,
                 resume: Resume | None = None, allow_double_payment: bool | None = None,
                 deadline_s: float | None = None,
                 check: bool | Iterable[Checker | str] = False, on_fail: str = "keep",
                 max_check_retries: int = 1, **request_fields: Any) -> ImageResult:
        """Generate images: route, plan, check the budget, call (with retries and fallback),
        download and verify. Takes an :class:`ImageRequest`, a prompt, or the request's fields
        as keywords (``quality=``, ``size=``, ``seed=``, ``n=``, ``model=``, ``provider=``, …).

        ``job_id`` names the job in its ``events`` (a callable given every
        :class:`~modelglass.jobs.JobEvent`); ``resume`` polls a job submitted earlier instead of
        submitting again; ``allow_double_payment`` and ``deadline_s`` override the client's.
        Ctrl-C cancels the provider's job where it can and settles the budget.

        Outcome checks (:mod:`modelglass.checks`): ``check=True`` runs every built-in check that
        applies (the text check when the prompt quotes text or ``expect_text="..."`` names it;
        blank image; same bytes as another image); ``check=["text", my_checker]`` runs those.
        ``result.checks`` holds the verdicts. ``on_fail="retry"`` pays for a new seed on the same
        offer, ``"escalate"`` for the next ranked offer, at most ``max_check_retries`` times,
        each reserved on the budget first; ``"keep"`` (default) returns the image as it is.
        """
        job = self._job(prompt_or_request, request_fields, job_id=job_id, events=events,
                        resume=resume, allow_double_payment=allow_double_payment,
                        deadline_s=deadline_s, check=check, on_fail=on_fail,
                        max_check_retries=max_check_retries)
        return _drive.run(job.steps(), self)

    def http_client(self) -> httpx.Client:
        """The download client (built on first use; it checks every connection's address)."""
        if self._http is None:
            with self._lock:
                if self._http is None:
                    from ._download import make_client

                    self._http = make_client()  # checks every connection's address
        return self._http  # type: ignore[return-value]

    def download_pool(self) -> ThreadPoolExecutor:
        """Threads that fetch the several images of one provider call side by side."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=4,
                                                    thread_name_prefix="modelglass-download")
        return self._pool  # type: ignore[return-value]

    # batch entry points (modelglass/jobs/_batch.py does the work)
    def generate_many(self, requests: Iterable[ImageRequest | dict[str, Any]], /, *,
                      concurrency: int = 32, budget: Budget | float | None = None,
                      journal: str | os.PathLike[str] | None = None,
                      **options: Any) -> BatchReport:
        """Run many requests (``ImageRequest`` or dicts of its fields with an optional ``id``)
        under one concurrency limit, budget and journal; the report lists them in input order.
        ``options``: ``out``, ``cache``, ``limits``, ``allow_double_payment``, ``retry_failed``,
        ``durable``, ``on_event``, ``on_outcome``, and ``check`` / ``on_fail`` /
        ``max_check_retries`` as for :meth:`generate` (see ``docs/batch.md``)."""
        from .jobs._batch import Batch
        from .jobs._sync import run_sync

        return run_sync(Batch(self, requests, concurrency=concurrency, budget=budget,
                              journal=journal, **options))

    def close(self) -> None:
        """Close the provider clients and the download client."""
        for p in list(self._providers.values()):
            p.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
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

    #: The blocking client with the same settings (what a Ray worker builds for this one's jobs).
    sync_twin: ClassVar[type[Client]] = Client

    def __init__(self, **kw: Any) -> None:
        from .providers._transport import PerLoop

        super().__init__(**kw)
        self._http: PerLoop[httpx.AsyncClient] = PerLoop(self._make_http)

    async def generate(self, prompt_or_request: ImageRequest | str | None = None, /, *,
                       job_id: str | None = None, events: EventSink | None = None,
                       resume: Resume | None = None, allow_double_payment: bool | None = None,
                       deadline_s: float | None = None,
                       check: bool | Iterable[Checker | str] = False, on_fail: str = "keep",
                       max_check_retries: int = 1, **request_fields: Any) -> ImageResult:
        """The async twin of :meth:`Client.generate`. Cancelling the task cancels the
        provider's job where it can and settles the budget. Checks run on a worker thread,
        never on the event loop."""
        job = self._job(prompt_or_request, request_fields, job_id=job_id, events=events,
                        resume=resume, allow_double_payment=allow_double_payment,
                        deadline_s=deadline_s, check=check, on_fail=on_fail,
                        max_check_retries=max_check_retries)
        return await _drive.arun(job.steps(), self)

    def ahttp_client(self) -> httpx.AsyncClient:
        """The download client of the running event loop (one per loop, built on first use)."""
        return self._http.get()

    @staticmethod
    def _make_http() -> httpx.AsyncClient:
        from ._download import make_async_client

        return make_async_client()  # checks every connection's address

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
