"""The Ray engine: a batch's jobs run as Ray tasks; local GPU jobs on Ray actors, one per GPU.

``modelglass batch jobs.jsonl --engine ray --address auto`` and :func:`run_ray` land here. What
stays with the driver (this process): the jobs file, the :class:`~._schedule.Scheduler`
(concurrency, per-provider limits, budget holds), the journal, the output folder and the
manifest. What runs on the cluster:

- **hosted jobs** (OpenAI, fal, Replicate) as Ray tasks (``num_cpus`` each, 0.25 by default:
  they wait on the network). A worker builds a :class:`~modelglass.Client` once per process
  from the driver's settings (catalog, assumed providers, timeouts, retries) and reuses it.
- **local jobs** on :class:`LocalWorker` actors, one per GPU (``num_gpus=1``), each holding its
  own :class:`~modelglass.LocalBackend` and so its pipeline cache: a model is loaded once per
  GPU, not once per job.

Money and the journal: the driver holds each job's estimate on the batch budget before the task
is submitted; the task's engine gets a budget of exactly that hold (a pricier fallback cannot
pass it), and the driver settles the hold with the cost the task reports. The engine's events
reach the journal through :class:`JournalRelay`, an actor on the driver's node that writes the
driver's journal file and answers only once the event is committed, so a ``submitted`` event is
on disk before the worker polls — the same guarantee as a local batch.

Provider keys: the driver's provider variables (keys, base URLs, CA file) travel to the workers
as a task argument whose ``repr`` hides the values (never through ``runtime_env``, which Ray
shows in its dashboard); on a cluster whose nodes already have the keys, pass
``forward_env=False``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._destination import trust_origin, trusted_origins
from ..budget import Budget, settle_or_release
from ..errors import BudgetExceeded, ModelglassError, OutcomeUnknown, ProviderUnavailable
from ..request import ImageRequest
from ._drive import run
from ._loop import Await, Ended, Feed, Sleep, Start, next_command, schedule
from ._reconcile import error_dict as _error_dict
from ._reconcile import error_from_dict as _error_from_dict
from ._report import BatchReport, JobOutcome

if TYPE_CHECKING:
    from ..budget import Reservation
    from ..result import GeneratedImage, ImageResult
    from ._batch import Batch
    from ._events import JobEvent
    from ._schedule import Job

__all__ = ["JournalRelay", "LocalWorker", "run_ray"]

#: Variables the official clients and the simulators read (keys included: see the docstring).
_FORWARDED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET",
              "FAL_RUN_HOST", "FAL_QUEUE_RUN_HOST", "MODELGLASS_FAL_API_URL",
              "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL", "REPLICATE_POLL_INTERVAL",
              "SSL_CERT_FILE", "NO_PROXY", "no_proxy")
#: Client settings copied to the workers' clients (those the client has).
#: Pseudo-variable carrying the driver's trusted download origins (see _trusted_origins).
_TRUSTED = "modelglass trusted origins"
_SETTINGS = ("timeout_s", "deadline_s", "max_retries", "retry_after_cap_s", "retry_backoff_s",
             "max_download_bytes", "policy")  # policy hook: workers route by the driver's policy
#: LocalBackend settings a LocalWorker rebuilds its backend from.
_LOCAL_SETTINGS = ("device", "dtype", "paths", "fast", "gpu_hour_usd", "memory_budget_bytes",
                   "compile", "compile_options")


class _Env(dict[str, str]):
    """Environment variables for a worker; the values (keys among them) never show."""

    def __repr__(self) -> str:
        return f"_Env({sorted(self)})"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ProviderUnavailable("--engine ray needs Ray: pip install 'modelglass[ray]'") from None
    return ray


# -- worker side ---------------------------------------------------------------------------------
_CLIENTS: dict[str, Any] = {}


def _apply_env(env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if name == _TRUSTED:
            for url in value.split():
                trust_origin(url)
        elif os.environ.get(name) != value:
            os.environ[name] = value


def _trusted_origins() -> str:
    """The loopback origins the driver trusts for downloads (only while simulators run
    there), for the workers to trust too; empty on a real cluster."""
    return " ".join(trusted_origins())


def _worker_client(spec: dict[str, Any], env: Mapping[str, str], local: Any = None) -> Any:
    """This worker process's client for ``spec`` (built once, reused by later tasks): of the
    driver's client class, which travels in ``spec`` (Ray pickles a class by reference)."""
    _apply_env(env)
    key = hashlib.sha256(repr((sorted(spec["settings"].items()), spec["available"],
                               spec["catalog_id"], sorted(env.items()))).encode()).hexdigest()
    if local is None and key in _CLIENTS:
        return _CLIENTS[key]
    catalog = spec["catalog"]
    ray = _ray()
    if isinstance(catalog, ray.ObjectRef):  # refs nested in an argument are not resolved
        catalog = ray.get(catalog)
    client = spec["client_class"](catalog=catalog, available=spec["available"], local=local,
                                  **spec["settings"])
    if local is None:
        _CLIENTS[key] = client
    return client


def _execute(client: Any, payload: dict[str, Any], relay: Any) -> dict[str, Any]:
    """Run one job's ``generate`` in a worker; return a picklable summary of how it ended."""
    ray = _ray()
    request = ImageRequest(**payload["request"])
    sink = None
    if relay is not None:
        def sink(event: JobEvent) -> None:
            ray.get(relay.record.remote(event))  # committed before the engine goes on
    hold = payload.get("hold")
    # The job's budget is exactly the driver's holds (its estimate, and what the retries of
    # failed checks may cost): a pricier fallback cannot pass it.
    budget = Budget(hold) if hold is not None else None
    try:
        # check=...: the outcome checks run here, where the images are (and on_fail's tries)
        job = client.job(request, budget=budget, job_id=payload["id"], events=sink,
                         resume=payload.get("resume"), **payload.get("check", {}))
        result = run(job.steps(), client)
    except ModelglassError as exc:
        partial = getattr(exc, "partial", None)  # strict: the images already paid for
        return {"ok": False, "error": _error_dict(exc),
                "attempts": len(getattr(exc, "attempts", None) or ()),
                "possibly_charged": bool(getattr(exc, "possibly_charged", False))
                or isinstance(exc, OutcomeUnknown),
                "cost_usd": getattr(exc, "cost_usd", None),
                "partial": _pack(partial) if partial is not None else None}
    return {"ok": True, "result": _pack(result)}


def _pack_images(images: list[GeneratedImage]) -> list[dict[str, Any]]:
    return [{"data": i.data, "mime": i.mime, "width": i.width, "height": i.height,
             "seed": i.seed, "index": i.index, "sha256": i.sha256, "simulated": i.simulated,
             "c2pa": i.c2pa, "metadata": i.metadata} for i in images]


def _pack(result: ImageResult) -> dict[str, Any]:
    """What the driver needs of a worker's result (picklable; no plan or decision): the
    images, the cost, the fates, the outcome checks and the tries they rejected, what is
    missing of a partial result."""
    return {
        "images": _pack_images(result.images),
        "model": result.model, "provider": result.provider, "cost_usd": result.cost_usd,
        "cost_is_estimate": result.cost_is_estimate, "latency_s": result.latency_s,
        "fates": [f.to_dict() for f in result.fates], "simulated": result.simulated,
        "timings": result.timings,
        "extra": {**result.extra,
                  "offer": result.plan.offer.key if result.plan is not None else None},
        "checks": [c.to_dict() for c in result.checks],
        "rejected": _pack_images(result.rejected),
        "missing": [m.to_dict() for m in result.missing], "partial": result.partial,
    }


def _unpack(data: dict[str, Any]) -> ImageResult:
    from ..checks import CheckResult
    from ..result import Fate, FateKind, GeneratedImage, ImageResult, Missing

    return ImageResult(
        images=[GeneratedImage(**i) for i in data["images"]], model=data["model"],
        provider=data["provider"], cost_usd=data["cost_usd"],
        cost_is_estimate=data["cost_is_estimate"], latency_s=data["latency_s"],
        fates=[Fate(f["control"], FateKind(f["kind"]), f["requested"], f["applied"],
                    f["reason"], f["delta"]) for f in data["fates"]],
        simulated=data["simulated"], timings=data["timings"], extra=data["extra"],
        checks=[CheckResult.from_dict(c) for c in data.get("checks", ())],
        rejected=[GeneratedImage(**i) for i in data.get("rejected", ())],
        missing=[Missing(**m) for m in data.get("missing", ())],
        partial=data.get("partial", False))


def _task(spec: dict[str, Any], env: Mapping[str, str], payload: dict[str, Any],
          relay: Any) -> dict[str, Any]:
    return _execute(_worker_client(spec, env), payload, relay)


class LocalWorker:
    """A Ray actor that owns one GPU: its own LocalBackend (and pipeline cache) and client."""

    def __init__(self, spec: dict[str, Any], env: Mapping[str, str],
                 local_settings: dict[str, Any]) -> None:
        from ..providers.local import LocalBackend

        self.backend = LocalBackend(**local_settings)
        self.client = _worker_client(spec, env, local=self.backend)
        self.jobs = 0

    def run(self, payload: dict[str, Any], relay: Any) -> dict[str, Any]:
        self.jobs += 1
        return _execute(self.client, payload, relay)

    def loaded(self) -> list[str]:
        """The pipelines this actor holds in memory (its cache; none before its first job,
        and asking then would size a cache on the GPU for nothing)."""
        return sorted(self.backend.loaded()) if self.jobs else []

    def stats(self) -> dict[str, Any]:
        """This actor's process id, how many jobs it ran, and the pipelines it holds."""
        return {"pid": os.getpid(), "jobs": self.jobs, "loaded": self.loaded()}


class JournalRelay:
    """A Ray actor on the driver's node that writes the driver's journal for the workers."""

    def __init__(self, path: str, durable: bool, out: str | None = None) -> None:
        from ._journal import Journal

        self.journal = Journal(path, durable=durable, lock=False)  # the driver holds the lock
        self.out = Path(out) if out is not None else None

    def record(self, event: JobEvent) -> None:
        if event.state == "rejected":  # saved on the driver's node before the retry is sent
            from ._spill import keep_rejected

            keep_rejected(self.out, self.journal, event.job_id, event.tries, list(event.images),
                          event.request_id)
        self.journal.record(event)

    def close(self) -> None:
        self.journal.close()


# -- driver side ---------------------------------------------------------------------------------
def _spec(batch: Batch) -> dict[str, Any]:
    client = batch.client
    ray = _ray()
    settings = {k: getattr(client, k) for k in _SETTINGS if hasattr(client, k)}
    assumed = client.available
    # the workers drive jobs with the blocking client: an AsyncClient names its sync twin
    cls = getattr(type(client), "sync_twin", type(client))
    return {"catalog": ray.put(client.catalog), "catalog_id": id(client.catalog),
            "available": sorted(assumed) if assumed is not None else None,
            "settings": settings, "client_class": cls}


def _local_settings(client: Any) -> dict[str, Any] | None:
    local = client.local
    if local is None:
        return None
    return {k: getattr(local, k) for k in _LOCAL_SETTINGS if hasattr(local, k)}


def run_ray(batch: Batch, *, address: str | None = None, task_cpus: float = 0.25,
            local_workers: int | None = None, local_worker_gpus: float = 1.0,
            forward_env: bool = True) -> BatchReport:
    """Run ``batch`` on a Ray cluster (``address``: ``"auto"``, ``ray://host:10001``, or None to
    join/start one here). Local jobs go to ``local_workers`` :class:`LocalWorker` actors (default:
    one per GPU in the cluster) needing ``local_worker_gpus`` each."""
    started_here = False
    try:
        ray = _ray()
        if not ray.is_initialized():
            _connect(ray, address)
            started_here = True
        return _drive(ray, batch, task_cpus=task_cpus, local_workers=local_workers,
                      local_worker_gpus=local_worker_gpus, forward_env=forward_env)
    finally:
        batch.close()
        if started_here:
            ray.shutdown()


#: How long ``run_ray`` tries to reach a cluster's address before it gives up.
RAY_CONNECT_TIMEOUT_S = 10.0


def _connect(ray: Any, address: str | None) -> None:
    """``ray.init`` with a bounded wait: an explicit ``host:port`` (or ``ray://host:port``) is
    probed first, so a dead host is a typed error in seconds instead of a hang."""
    if address not in (None, "auto", "local"):
        _probe(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        raise ProviderUnavailable(
            f"cannot join the Ray cluster at {address or 'a new local cluster'}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Start one with "
            f"`ray start --head`, or check --address.", provider="ray") from None


def _probe(address: str) -> None:
    import socket

    from ..errors import InvalidRequest

    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise InvalidRequest(f"--address {address!r}: expected host:port, ray://host:port or "
                             f"auto", field="address")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ProviderUnavailable(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}; waited at most "
            f"{RAY_CONNECT_TIMEOUT_S:g} s). Start it (`ray start --head`) or check --address; "
            f"nothing was sent.", provider="ray") from None


def _drive(ray: Any, batch: Batch, *, task_cpus: float, local_workers: int | None,
           local_worker_gpus: float, forward_env: bool) -> BatchReport:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    jobs = batch.prepare()
    env = _Env({k: os.environ[k] for k in _FORWARDED if k in os.environ} if forward_env else {})
    trusted = _trusted_origins()
    if trusted:
        env[_TRUSTED] = trusted
    spec = _spec(batch)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    relay = None
    if batch.journal is not None:
        relay = ray.remote(num_cpus=0)(JournalRelay).options(scheduling_strategy=here).remote(
            str(batch.journal.path), batch.journal.durable,
            str(batch.out) if batch.out is not None else None)
    workers: list[Any] = []
    local = _local_settings(batch.client)
    # the provider the client's in-process backend serves: its jobs go to the GPU actors
    on_gpu = batch.client.local.name if local is not None else None
    if on_gpu is not None and any(j.provider == on_gpu for j in jobs):
        count = local_workers if local_workers is not None else int(
            ray.cluster_resources().get("GPU", 0))
        if count < 1:
            raise ProviderUnavailable("local jobs on Ray need a GPU per LocalWorker, and the "
                                      "cluster has none: add GPU nodes, or pass local_workers=N "
                                      "with local_worker_gpus=0 to run them on CPUs.",
                                      provider=on_gpu)
        actor = ray.remote(num_gpus=local_worker_gpus, num_cpus=1)(LocalWorker)
        workers = [actor.remote(spec, env, local) for _ in range(count)]
        batch.limits = {**batch.limits, on_gpu: _min_in_flight(batch, on_gpu, count)}
    task = ray.remote(num_cpus=task_cpus, max_retries=0)(_task)
    sched = batch.scheduler(jobs)  # routed up front: the feed has nothing left to route
    loop = schedule(batch, Feed(batch, [], sched, ahead=0), sched)
    refs: dict[Any, Job] = {}
    retry_holds: dict[str, Reservation | None] = {}
    turn = 0
    reply: Ended = None
    try:
        while (command := next_command(loop, reply)) is not None:
            reply = None
            if isinstance(command, Start):
                job = command.job
                if batch.journal is not None:
                    batch.journal.started(job.id, offer_key=job.offer_key, provider=job.provider,
                                          estimate=job.estimate)
                extra = retry_holds[job.id] = _retry_hold(batch, job)
                payload = _payload(job, batch.check_options_for(job), extra)
                if job.provider == on_gpu and workers:
                    ref = workers[turn % len(workers)].run.remote(payload, relay)
                    turn += 1
                else:
                    ref = task.remote(spec, env, payload, relay)
                refs[ref] = job
            elif isinstance(command, Sleep):
                time.sleep(command.seconds)
            elif isinstance(command, Await):
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=command.timeout_s)
                if ready:
                    job = refs.pop(ready[0])
                    reply = (job, _settle(batch, job, ray.get(ready[0]),
                                          retry_holds.pop(job.id, None)))
    except BaseException:
        for ref in refs:
            ray.cancel(ref)
        raise
    finally:
        stats = [ray.get(w.stats.remote()) for w in workers] if workers else []
        if relay is not None:
            ray.get(relay.close.remote())
            ray.kill(relay)
        for w in workers:
            ray.kill(w)
    batch.leftovers(sched)
    report = batch.report()
    report.engine = {"engine": "ray", "local_workers": stats}
    return report


def _payload(job: Job, check: Mapping[str, Any] | None = None,
             extra: Reservation | None = None) -> dict[str, Any]:
    """What a worker needs of ``job``: unset request fields stay unset (a quality left to the
    policy's default_quality); the batch's outcome checks; its budget, the holds taken for it."""
    hold = None if job.hold is None else job.hold.amount + (extra.amount if extra else 0.0)
    return {"id": job.id, "request": job.request.model_dump(mode="json", exclude_unset=True),
            "resume": job.resume, "hold": hold, "check": dict(check or {})}


def _retry_hold(batch: Batch, job: Job) -> Reservation | None:
    """With ``on_fail`` retrying failed checks: what the retries may cost, held on the batch
    budget beside the job's estimate (a worker's budget is only what the driver holds), so
    that they are counted against the budget before they are sent, as in a local batch. Each
    retry is held at the first try's price (a retry is the same offer; an escalation to a
    pricier offer does not fit and stops there, noted in the result's ``extra["checks"]``).
    As many retries as the budget holds now, down to none."""
    options = batch.check_options_for(job)
    retries = int(options.get("max_check_retries", 1)) if options.get("on_fail", "keep") \
        != "keep" else 0
    if batch.budget is None or job.hold is None or retries < 1:
        return None
    for k in range(retries, 0, -1):
        try:
            return batch.budget.reserve(k * job.hold.amount, label=f"job {job.id} check retries")
        except BudgetExceeded:
            continue
    return None


def _min_in_flight(batch: Batch, provider: str, count: int) -> Any:
    from ._schedule import ProviderLimit

    old = batch.limits.get(provider)
    in_flight = count if old is None or old.in_flight is None else min(old.in_flight, count)
    return ProviderLimit(in_flight, old.per_minute if old is not None else None)


def _settle_holds(budget: Budget | None, hold: Reservation | None, extra: Reservation | None,
                  charges: list[float | None]) -> None:
    """Settle the job's hold and its retry hold (``extra``) with what the job was charged, as
    one: the first takes the cost up to its amount, the second the rest (released when there
    is none); no charge releases both, an unknown one keeps both as spent."""
    if extra is None or budget is None or hold is None:
        settle_or_release(budget, hold, charges)
        settle_or_release(budget, extra, [])
        return
    known = [usd for usd in charges if usd is not None]
    if not charges or len(known) != len(charges):
        settle_or_release(budget, hold, charges)
        settle_or_release(budget, extra, charges)
        return
    total = sum(known)
    budget.settle(hold, min(total, hold.amount))
    settle_or_release(budget, extra, [total - hold.amount] if total > hold.amount + 1e-12 else [])


def _settle(batch: Batch, job: Job, data: dict[str, Any],
            extra: Reservation | None = None) -> JobOutcome:
    """Settle the job's holds with what the worker reports, then record the outcome."""
    hold, job.hold = job.hold, None
    if data["ok"]:
        result = _unpack(data["result"])
        _settle_holds(batch.budget, hold, extra, [result.cost_usd])
        return batch.succeeded(job, result)
    err = _error_from_dict(data["error"], origin="on a Ray worker")
    for name in ("request_id", "status", "retry_after", "cost_usd", "url"):
        if name in data["error"]:
            setattr(err, name, data["error"][name])
    if data["possibly_charged"]:
        err.possibly_charged = True  # type: ignore[attr-defined]
    if data.get("attempts"):  # they stay on the worker; the driver only needs to know of them
        err.attempts = [None] * data["attempts"]  # type: ignore[attr-defined]
    if data.get("partial") is not None:  # strict: the images already paid for, saved too
        err.partial = _unpack(data["partial"])  # type: ignore[attr-defined]
    # Nothing charged and nothing possibly sent: the hold is released; an unknown cost of a
    # possibly charged job keeps the whole hold as spent.
    billed = data["possibly_charged"] or data["cost_usd"]
    _settle_holds(batch.budget, hold, extra, [data["cost_usd"]] if billed else [])
    return batch.failed(job, err)
