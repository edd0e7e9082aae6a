"""``simulate()``: start the three provider simulators and point the official clients at them."""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import sys
import tempfile
import threading
from collections.abc import Mapping
from typing import Any, Literal, Self

from ._fal import ENDPOINTS as FAL_ENDPOINTS
from ._fal import FalApp
from ._faults import Fault, make_fault
from ._openai import DEFAULT_RETIRED, OpenAIApp
from ._platform import FalPlatformApp, PlatformData, with_platform
from ._replicate import ReplicateApp
from ._server import ProviderApp, ProviderState, RecordedRequest, _Running, start_server
from ._wire import Endpoints

__all__ = ["PROVIDERS", "Simulator", "simulate"]

logger = logging.getLogger("modelglass")

Provider = Literal["openai", "fal", "replicate"]
FaultKind = Literal["status", "gateway_html", "slow", "failed", "canceled", "expired", "content",
                    "malformed", "wrong_shape", "drop", "hang", "unknown_status",
                    "processed_drop", "processed_hang", "truncated"]
PROVIDERS: tuple[str, ...] = ("openai", "fal", "replicate")

# Obviously fake: the project greps outputs for secrets.
OPENAI_KEY = "sim-openai-key"
FAL_KEY = "sim-fal-key"
REPLICATE_TOKEN = "sim-replicate-token"

_tls_lock = threading.Lock()
_tls_material: tuple[Any, Any] | None = None


def _tls() -> tuple[Any, Any]:
    """A trustme CA and a leaf for 127.0.0.1 / localhost, minted once per process."""
    global _tls_material
    with _tls_lock:
        if _tls_material is None:
            import trustme

            ca = trustme.CA()
            _tls_material = (ca, ca.issue_cert("127.0.0.1", "localhost"))
        return _tls_material


class Simulator:
    """Loopback simulators of the OpenAI, fal and Replicate APIs.

    Use it as a context manager (``with simulate() as sim:``); inside the block the official
    clients find the simulators through environment variables (see :attr:`env`). The servers run
    in daemon threads, so sync and async clients work alike, and the block may also be entered
    with ``async with``.

    >>> with simulate(service_time=0.05) as sim:          # doctest: +SKIP
    ...     sim.fail("fal", status=429, times=2)
    ...     ...
    ...     assert sim.requests("fal")[0].header("authorization") == "Key sim-fal-key"
    """

    def __init__(self, *, service_time: float | Mapping[str, float] = 0.0,
                 openai_retired: tuple[str, ...] = DEFAULT_RETIRED,
                 poll_interval: float = 0.05) -> None:
        self._stop = threading.Event()
        self._states = {p: ProviderState(p, self._stop) for p in PROVIDERS}
        self._openai = OpenAIApp(self._states["openai"], retired=tuple(openai_retired))
        self._fal = FalApp(self._states["fal"])
        self._replicate = ReplicateApp(self._states["replicate"])
        self._text_accuracy: dict[tuple[str | None, str], float] = {}
        for state in self._states.values():
            state.text_accuracy = self._text_accuracy
        #: What the platform APIs (fal pricing and models, OpenAI models, Replicate models) say.
        self.platform = PlatformData()
        self.platform._fal_app = self._fal  # fal's billing events read the jobs it ran
        self._openai.platform = self.platform  # type: ignore[attr-defined]
        self._replicate.platform = self.platform  # type: ignore[attr-defined]
        self._fal_platform = FalPlatformApp(self._states["fal"], self.platform)
        #: The endpoints served: the stored schemas (``catalog/schemas``) plus :meth:`serve`.
        self.endpoints = Endpoints()
        for app in (self._openai, self._fal, self._replicate, self._fal_platform):
            app.endpoints = self.endpoints
        for alias in FAL_ENDPOINTS:  # fal's own aliases (fal-ai/flux-1/dev, ...) with no file
            if not self.endpoints.lookup("fal", alias)[0]:
                self.endpoints.serve("fal", alias)
        self._poll_interval = poll_interval
        if isinstance(service_time, Mapping):
            for provider, seconds in service_time.items():
                self.service_time(provider, seconds)  # type: ignore[arg-type]
        else:
            for provider in PROVIDERS:
                self.service_time(provider, service_time)  # type: ignore[arg-type]
        self._running: list[_Running] = []
        self._saved_env: dict[str, str | None] = {}
        self._patches: list[Any] = []
        self._preloaded: set[str] = set()
        self._tmpdir: str | None = None
        self.env: dict[str, str] = {}
        """The environment variables set while the simulators run."""
        self.ca_file: str = ""
        """Path of the PEM CA that signs the fal TLS listeners (exported as SSL_CERT_FILE)."""
        self.openai_base_url = ""
        self.replicate_base_url = ""
        self.fal_run_host = ""
        self.fal_queue_host = ""

    # lifecycle ----------------------------------------------------------------------
    def start(self) -> Self:
        """Start the listeners, set the environment and patch already-imported clients."""
        if self._running:
            raise RuntimeError("this Simulator is already running")
        self._stop.clear()
        ca, leaf = _tls()
        self._tmpdir = tempfile.mkdtemp(prefix="modelglass-sim-")
        self.ca_file = os.path.join(self._tmpdir, "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(ctx)
        try:
            openai = self._listen(with_platform(self._openai, self.platform), "api")
            fal_queue = self._listen(self._fal, "queue", ctx)
            fal_run = self._listen(self._fal, "run", ctx)
            replicate = self._listen(with_platform(self._replicate, self.platform), "api")
            fal_api = self._listen(self._fal_platform, "platform")
        except BaseException:
            self.stop()
            raise
        self.openai_base_url = f"http://127.0.0.1:{openai.server.port}/v1"
        self._openai.base_url = f"http://127.0.0.1:{openai.server.port}"
        self.fal_queue_host = f"127.0.0.1:{fal_queue.server.port}"
        self.fal_run_host = f"127.0.0.1:{fal_run.server.port}"
        self._fal.queue_base = f"https://{self.fal_queue_host}"
        self.replicate_base_url = f"http://127.0.0.1:{replicate.server.port}"
        self._replicate.base_url = self.replicate_base_url
        self.env = {
            "OPENAI_BASE_URL": self.openai_base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "FAL_KEY": FAL_KEY,
            "FAL_RUN_HOST": self.fal_run_host,
            "FAL_QUEUE_RUN_HOST": self.fal_queue_host,
            "SSL_CERT_FILE": self.ca_file,
            "REPLICATE_API_TOKEN": REPLICATE_TOKEN,
            "REPLICATE_BASE_URL": self.replicate_base_url,
            "REPLICATE_POLL_INTERVAL": str(self._poll_interval),
            # platform APIs (catalog sync) and a throwaway observed store
            "MODELGLASS_FAL_API_URL": f"http://127.0.0.1:{fal_api.server.port}/v1",
            "MODELGLASS_OBSERVED_DB": os.path.join(self._tmpdir, "observed.sqlite"),
            # a child process (CLI, app under test) trusts image downloads from these origins
            "MODELGLASS_SIM_ORIGINS": " ".join(self._origins()),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        for name, value in self.env.items():
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value
        from .._download import trust_origin

        for origin in self._origins():  # image downloads refuse loopback unless allowed here
            trust_origin(origin)
        self._preloaded = {m for m in ("fal_client", "replicate", "openai") if m in sys.modules}
        self._patch_imported_clients()
        logger.debug("simulators up: openai %s, fal queue %s run %s, replicate %s",
                     self.openai_base_url, self.fal_queue_host, self.fal_run_host,
                     self.replicate_base_url)
        return self

    def stop(self) -> None:
        """Stop the listeners, wake hung requests, restore env vars and patched modules."""
        self._stop.set()
        if self.openai_base_url:
            from .._download import untrust_origin

            for origin in self._origins():
                untrust_origin(origin)
        for running in self._running:
            running.stop()
        self._running.clear()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        self._unpatch_clients()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _origins(self) -> list[str]:
        return [self.openai_base_url, self.replicate_base_url, f"https://{self.fal_queue_host}",
                f"https://{self.fal_run_host}"]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self, app: ProviderApp, role: str,
                ctx: ssl.SSLContext | None = None) -> _Running:
        running = start_server(app, role, ctx)
        self._running.append(running)
        return running

    # control ------------------------------------------------------------------------
    def fail(self, provider: Provider, *, status: int | None = None, times: int = 1,
             retry_after: float | None = None, kind: FaultKind = "status",
             at: str | None = None, body: Any = None, delay: float | None = None,
             headers: Mapping[str, str] | None = None) -> Fault:
        """Script a fault: the next ``times`` matching requests misbehave, then service resumes.

        ``kind`` picks the misbehaviour and ``at`` the stage it hits (a sensible default per
        kind; see ``docs/testing.md`` for the table). ``status`` is the HTTP status for
        ``status`` / ``gateway_html`` (default 500 / 502) and fal ``failed`` (500 or 422);
        ``retry_after`` adds a ``Retry-After`` header (and Replicate's ``retry_after`` body
        field); ``body`` replaces the error body; ``delay`` waits before answering (for
        ``hang``: how long to stay silent, 30 s by default, cut short when the block exits);
        ``headers`` are added to the faulty answer (e.g. ``{"x-should-retry": "false"}``).

        Returns the :class:`Fault`; its ``remaining`` counts the occurrences left.
        """
        fault = make_fault(provider, kind, status=status, times=times, retry_after=retry_after,
                           at=at, body=body, delay=delay, headers=headers)
        self._states[provider].faults.add(fault)
        return fault

    def serve(self, provider: Provider, endpoint: str,
              schema: Mapping[str, Any] | None = None) -> None:
        """Serve ``endpoint`` (a fal app, a Replicate model, an OpenAI model) besides the ones
        with a stored schema (``catalog/schemas``), e.g. your own fal app or deployment. With
        ``schema`` (a JSON Schema of the input) requests are validated as the stored ones are;
        without, any fields pass. Anything neither stored nor served answers 404, as the real
        APIs do."""
        self.endpoints.serve(_check(provider), endpoint, dict(schema) if schema else None)

    def faults(self, provider: Provider) -> list[Fault]:
        """The faults scripted for ``provider`` (including exhausted ones)."""
        return self._states[_check(provider)].faults.all()

    def requests(self, provider: Provider | None = None, *,
                 stage: str | None = None) -> list[RecordedRequest]:
        """Every request that reached the simulator of ``provider`` (all when None), in order.

        ``stage`` filters by fault stage (e.g. ``"submit"``, ``"poll"``, ``"download"``).
        """
        providers = PROVIDERS if provider is None else (_check(provider),)
        records = [r for p in providers for r in self._states[p].records()]
        if provider is None:
            records.sort(key=lambda r: r.time)
        return [r for r in records if stage is None or r.stage == stage]

    def billed(self, provider: Provider) -> int:
        """How many generations ``provider`` would have charged for: every create that made its
        job (OpenAI: every answered generation), whether or not the answer reached the client.
        A cancelled job still counts (it may have started).

        >>> with simulate() as sim:                           # doctest: +SKIP
        ...     sim.fail("fal", kind="processed_drop")       # submit runs, the reply is lost
        ...     ...
        ...     assert sim.billed("fal") == 1
        """
        return self._states[_check(provider)].billed

    def reset(self, provider: Provider | None = None) -> None:
        """Forget recorded requests and scripted faults (of one provider, or all; all also
        forgets the scripted text accuracies)."""
        for p in PROVIDERS if provider is None else (_check(provider),):
            self._states[p].reset()
        if provider is None:
            self._text_accuracy.clear()

    def sign_urls(self, on: bool = True) -> None:
        """Give every image URL a signed query (``?X-Amz-…&X-Amz-Signature=…``), as S3 or
        Azure blob URLs carry, to check that no token is written or logged anywhere."""
        for state in self._states.values():
            state.sign_urls = on

    def service_time(self, provider: Provider, seconds: float | None = None) -> float:
        """Get, or set with ``seconds``, how long one generation takes on ``provider``.

        OpenAI: the POST blocks that long. fal / Replicate: a job completes only that long after
        it was submitted (``Prefer: wait`` holds the create request until then).
        """
        state = self._states[_check(provider)]
        if seconds is not None:
            if seconds < 0:
                raise ValueError(f"service time must be >= 0, got {seconds}")
            state.service_time = float(seconds)
        return state.service_time

    def text_accuracy(self, model: str, p: float) -> None:
        """Script how often ``model``'s images spell the prompt's quoted text right: with
        probability ``p`` (0..1), decided per (prompt, seed), so the same seed always gives the
        same image; otherwise one character is wrong. Unscripted models always spell it right.

        ``model`` is a catalog model id (``"flux-schnell"``: every offer of it), an offer key
        (``"flux-schnell@fal"``: that offer only) or a provider's own model name
        (``"fal-ai/flux/schnell"``).

        >>> with simulate() as sim:                           # doctest: +SKIP
        ...     sim.text_accuracy("flux-schnell", 0.3)       # right in 3 images of 10
        """
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"text accuracy is a probability from 0 to 1, got {p!r}")
        for key in _wire_names(model):
            self._text_accuracy[key] = float(p)

    def url(self, provider: Provider) -> str:
        """Base URL of a provider's simulator (fal: the queue host, https)."""
        return {"openai": self.openai_base_url, "fal": f"https://{self.fal_queue_host}",
                "replicate": self.replicate_base_url}[_check(provider)]

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"Simulator({state}, openai={self.openai_base_url or '-'})"

    # module-level client state ------------------------------------------------------
    def _patch_imported_clients(self) -> None:
        """Re-point clients whose modules read the environment at import time."""
        fal_client = sys.modules.get("fal_client.client")
        if fal_client is not None:
            self._set(fal_client, "RUN_URL_FORMAT", f"https://{self.fal_run_host}/")
            self._set(fal_client, "QUEUE_URL_FORMAT", f"https://{self.fal_queue_host}/")
            self._set(fal_client, "REALTIME_URL_FORMAT", f"wss://{self.fal_run_host}/")
        fal_auth = sys.modules.get("fal_client.auth")
        if fal_auth is not None:
            self._set(fal_auth, "FAL_RUN_HOST", self.fal_run_host)
            self._set(fal_auth, "FAL_QUEUE_RUN_HOST", self.fal_queue_host)
        fal_pkg = sys.modules.get("fal_client")
        for name in ("sync_client", "async_client"):
            client = getattr(fal_pkg, name, None)
            for attr in ("_auth", "_client", "_token_manager"):
                if client is not None and attr in vars(client):
                    self._patches.append(("dict", vars(client), attr, vars(client).pop(attr)))
        replicate = sys.modules.get("replicate")
        default = getattr(replicate, "default_client", None)
        if default is not None:
            self._set(default, "poll_interval", self._poll_interval)
            for attr in ("_Client__client", "_Client__async_client"):
                self._set(default, attr, None)
        openai = sys.modules.get("openai")
        if openai is not None and getattr(openai, "_client", None) is not None:
            self._set(openai, "_client", None)

    def _set(self, obj: Any, attr: str, value: Any) -> None:
        self._patches.append(("attr", obj, attr, getattr(obj, attr, None)))
        setattr(obj, attr, value)

    def _unpatch_clients(self) -> None:
        for how, obj, attr, old in reversed(self._patches):
            if how == "dict":
                obj[attr] = old
            else:
                setattr(obj, attr, old)
        self._patches.clear()
        # Modules first imported inside the block derived their hosts from our env: re-derive
        # them from the restored env and drop module-level clients bound to dead listeners.
        fresh = {m for m in ("fal_client", "replicate", "openai") if m in sys.modules}
        fresh -= self._preloaded
        if "fal_client" in fresh:
            fal_client = sys.modules["fal_client.client"]
            run = os.environ.get("FAL_RUN_HOST", "fal.run")
            queue = os.environ.get("FAL_QUEUE_RUN_HOST", f"queue.{run}")
            fal_client.RUN_URL_FORMAT = f"https://{run}/"  # type: ignore[attr-defined]
            fal_client.QUEUE_URL_FORMAT = f"https://{queue}/"  # type: ignore[attr-defined]
            fal_client.REALTIME_URL_FORMAT = f"wss://{run}/"  # type: ignore[attr-defined]
            fal_auth = sys.modules.get("fal_client.auth")
            if fal_auth is not None:
                fal_auth.FAL_RUN_HOST = run  # type: ignore[attr-defined]
                fal_auth.FAL_QUEUE_RUN_HOST = queue  # type: ignore[attr-defined]
            for name in ("sync_client", "async_client"):
                client = getattr(sys.modules["fal_client"], name, None)
                for attr in ("_auth", "_client", "_token_manager"):
                    if client is not None:
                        vars(client).pop(attr, None)
        if "replicate" in fresh:
            default = getattr(sys.modules["replicate"], "default_client", None)
            if default is not None:
                default.poll_interval = float(os.environ.get("REPLICATE_POLL_INTERVAL", "0.5"))
                default._Client__client = None
                default._Client__async_client = None
        if "openai" in fresh:
            sys.modules["openai"]._client = None  # type: ignore[attr-defined]


def _wire_names(model: str) -> list[tuple[str | None, str]]:
    """(provider, wire model name) pairs a catalog id or offer key stands for; a name the
    catalog does not know stands for itself on every provider."""
    from ..catalog import Catalog
    from ..errors import ModelglassError

    catalog = Catalog.default()
    try:
        if "@" in model:
            view = catalog.offer(model)
            return [(view.provider, view.endpoint)]
        views = catalog.offers_for(model)
    except (KeyError, ModelglassError):
        views = []
    return [(v.provider, v.endpoint) for v in views] or [(None, model)]


def _check(provider: str) -> str:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    return provider


def simulate(*, service_time: float | Mapping[str, float] = 0.0,
             openai_retired: tuple[str, ...] = DEFAULT_RETIRED,
             poll_interval: float = 0.05) -> Simulator:
    """Loopback simulators of OpenAI, fal and Replicate, for ``with`` / ``async with``.

    ``service_time`` is seconds per generation (one value, or per provider:
    ``{"fal": 0.2}``); ``openai_retired`` lists OpenAI models answered with 404
    ``model_not_found`` (pass ``()`` to serve DALL·E); ``poll_interval`` becomes
    ``REPLICATE_POLL_INTERVAL``.

    >>> with simulate() as sim:                               # doctest: +SKIP
    ...     from openai import OpenAI
    ...     OpenAI().images.generate(model="gpt-image-2", prompt="a red bicycle")
    """
    return Simulator(service_time=service_time, openai_retired=openai_retired,
                     poll_interval=poll_interval)
