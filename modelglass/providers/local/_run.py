"""Running payloads on a pipeline: one call at a time per pipeline, optionally merged.

A caller wraps its payload in a :class:`Job` and :func:`submit`\\ s it. Whoever holds the
pipeline's lock runs the job at the head of the queue, and, on the fast path, every queued job
that differs only in prompt, negative prompt, seeds and image count, as one diffusers call with
one CPU generator per image. Nobody waits on a timer: the first request runs at once, requests
that arrive while the pipeline is busy ride together on the next call.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ...errors import GenerationTimeout, InvalidRequest, ModelglassError, ProviderError
from ._cache import PipelineEntry
from ._families import PAYLOAD_ONLY_KEYS
from ._fast import TEXT_OPTIONS, EmbeddingCache

__all__ = ["RESERVED_OPTIONS", "Job", "RunResult", "call_kwargs", "submit"]

log = logging.getLogger("modelglass")

#: diffusers arguments modelglass sets itself; a payload may not carry them.
RESERVED_OPTIONS = frozenset({"generator", "output_type", "return_dict", "callback_on_step_end",
                              "callback_on_step_end_tensor_inputs", "latents"})
_MERGE_VARYING = {"prompt", "negative_prompt", "seeds", "num_images_per_prompt"}


@dataclass
class RunResult:
    """What one job got out of a (possibly merged) pipeline call."""

    images: list[Any]
    nsfw: list[bool] | None
    seconds: float  # this job's share of the call's wall time
    call_seconds: float
    batch_images: int
    scheduler: str
    warm: bool  # the pipeline had run before (no first-call setup or compile in the time)
    embeddings: str | None = None  # "hit" / "miss" when the prompt-embedding cache was used


@dataclass(eq=False)
class Job:
    """One payload waiting for its pipeline."""

    payload: dict[str, Any]
    deadline: float = math.inf  # time.monotonic() value
    cancel: threading.Event | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: RunResult | None = None
    error: BaseException | None = None

    @property
    def images(self) -> int:
        return int(self.payload.get("num_images_per_prompt", 1))

    def merge_key(self) -> str:
        rest = {k: v for k, v in self.payload.items() if k not in _MERGE_VARYING}
        rest["has_negative"] = self.payload.get("negative_prompt") is not None
        return json.dumps(rest, sort_keys=True, default=str)


def submit(entry: PipelineEntry, job: Job, *, merge: bool, max_images: int,
           enqueue: bool = True) -> RunResult:
    """Run ``job`` on ``entry``'s pipeline (merged with compatible queued jobs when ``merge``).

    ``enqueue=False``: the caller already put ``job`` in ``entry.queue``.
    """
    if enqueue:
        with entry.queue_mutex:
            entry.queue.append(job)
    while not job.done.is_set():
        remaining = job.deadline - time.monotonic()
        got = entry.lock.acquire(timeout=max(remaining, 0.0)) if math.isfinite(remaining) \
            else entry.lock.acquire()
        if not got:
            with entry.queue_mutex:
                waiting = job in entry.queue
                if waiting:
                    entry.queue.remove(job)
            if waiting:
                raise GenerationTimeout(
                    "the deadline passed while waiting for the local pipeline "
                    f"{entry.key!r} (busy with other calls)", provider="local")
            job.done.wait()  # another caller took our job into its batch; it finishes soon
            break
        try:
            if job.done.is_set():
                break
            with entry.queue_mutex:
                batch = _take_batch(entry.queue, job, max_images=max_images,
                                    merge=merge and _use_embeddings(entry, job.payload))
            _execute(entry, batch)
        finally:
            entry.lock.release()
    if job.error is not None:
        raise job.error
    assert job.result is not None
    return job.result


def _take_batch(queue: list[Job], head: Job, *, merge: bool, max_images: int) -> list[Job]:
    """``head`` plus the queued jobs that can share its call (queue order), removed from the queue."""
    batch = [head]
    queue.remove(head)
    if merge:
        key, total = head.merge_key(), head.images
        for other in list(queue):
            if total + other.images <= max_images and other.merge_key() == key:
                batch.append(other)
                total += other.images
                queue.remove(other)
    return batch


def call_kwargs(pipe: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as ``pipe(**kwargs)`` arguments, checked against the pipeline's signature."""
    kwargs = {k: v for k, v in payload.items() if k not in PAYLOAD_ONLY_KEYS}
    reserved = sorted(set(kwargs) & RESERVED_OPTIONS)
    if reserved:
        raise InvalidRequest(f"{', '.join(reserved)}: set by modelglass, not a provider option",
                             field=f"provider_options.local.{reserved[0]}")
    # Named parameters only: a pipeline's **kwargs catch deprecated callbacks, not options.
    params = {name for name, p in inspect.signature(pipe.__call__).parameters.items()
              if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        raise InvalidRequest(
            f"{type(pipe).__name__} does not take {', '.join(unknown)}; its arguments are "
            f"{', '.join(sorted(params - {'self'}))}", field=unknown[0])
    return kwargs


def _default(pipe: Any, name: str) -> Any:
    param = inspect.signature(pipe.__call__).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _use_embeddings(entry: PipelineEntry, payload: dict[str, Any]) -> bool:
    return (entry.embeddings is not None and entry.family.embeddings
            and not (set(payload) & TEXT_OPTIONS))


def _execute(entry: PipelineEntry, batch: list[Job]) -> None:
    """Run ``batch`` as one pipeline call (lock held) and hand each job its share."""
    try:
        results = _call(entry, batch)
    except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
        err = _translate(exc, entry)
        for job in batch:
            job.error = err
            job.done.set()
        return
    for job, result in zip(batch, results, strict=True):
        job.result = result
        job.done.set()


def _call(entry: PipelineEntry, batch: list[Job]) -> list[RunResult]:
    import torch

    pipe = entry.pipe
    head = batch[0].payload
    kwargs = call_kwargs(pipe, head)
    seeds = [s for job in batch for s in job.payload["seeds"]]
    embed_state: str | None = None
    if len(batch) > 1 or _use_embeddings(entry, head):
        guidance = kwargs.get("guidance_scale", _default(pipe, "guidance_scale"))
        unet = getattr(pipe, "unet", None)
        do_cfg = (guidance is not None and guidance > 1
                  and getattr(getattr(unet, "config", None), "time_cond_proj_dim", None) is None)
        true_cfg = head.get("true_cfg_scale") is not None
        parts = []
        misses = entry.embeddings.misses
        for job in batch:
            p = job.payload
            parts.append((entry.embeddings.get(
                pipe, entry.family, p["prompt"], p.get("negative_prompt"), do_cfg=do_cfg,
                true_cfg=true_cfg, max_sequence_length=p.get("max_sequence_length")), job.images))
        embed_state = "miss" if entry.embeddings.misses > misses else "hit"
        for k in ("prompt", "negative_prompt"):
            kwargs.pop(k, None)
        kwargs.update(EmbeddingCache.merged(parts))
        kwargs["num_images_per_prompt"] = 1

    scheduler = _scheduler_for_call(entry, head)
    deadline = max(job.deadline for job in batch)
    cancels = [job.cancel for job in batch if job.cancel is not None]
    stopped: list[str] = []

    def on_step_end(p: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if time.monotonic() > deadline:
            stopped.append("deadline")
        elif cancels and all(c.is_set() for c in cancels):
            stopped.append("cancelled")
        if stopped:
            p._interrupt = True  # diffusers' own way to leave the denoising loop early
        return tensors

    if (math.isfinite(deadline) or cancels) and "callback_on_step_end" in \
            inspect.signature(pipe.__call__).parameters:
        kwargs["callback_on_step_end"] = on_step_end
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    warm = entry.calls > 0
    pipe.scheduler = scheduler
    try:
        started = time.perf_counter()
        out = pipe(**kwargs, generator=generators, output_type="pil", return_dict=True)
        elapsed = time.perf_counter() - started
    finally:
        pipe.scheduler = entry.original_scheduler
    entry.calls += 1
    if stopped:
        reason = stopped[0]
        raise GenerationTimeout(
            f"local generation on {entry.key!r} stopped early ({reason}) after "
            f"{elapsed:.1f}s; raise timeout_s or lower steps/size", provider="local")
    images = list(out.images)
    nsfw = getattr(out, "nsfw_content_detected", None)
    if len(images) != len(seeds):
        raise ProviderError(f"{type(pipe).__name__} returned {len(images)} images for "
                            f"{len(seeds)} generators", provider="local")
    total = len(images)
    results, start = [], 0
    for job in batch:
        n = job.images
        results.append(RunResult(
            images=images[start:start + n],
            nsfw=[bool(x) for x in nsfw[start:start + n]] if nsfw is not None else None,
            seconds=elapsed * n / total, call_seconds=elapsed, batch_images=total,
            scheduler=type(scheduler).__name__, warm=warm, embeddings=embed_state))
        start += n
    return results


def _scheduler_for_call(entry: PipelineEntry, payload: dict[str, Any]) -> Any:
    """The pipeline's own scheduler, or a new one from its config for the payload's sampler
    (``scheduler``) and scheduler settings (``scheduler_config``, e.g. ``timestep_spacing``)."""
    original = entry.original_scheduler
    name = payload.get("scheduler")
    overrides = payload.get("scheduler_config") or {}
    if not name and not overrides:
        return original
    import diffusers

    if original is None:
        raise InvalidRequest(f"{type(entry.pipe).__name__} has no scheduler to swap",
                             field="sampler")
    cls: Any = getattr(diffusers, name, None) if name else type(original)
    if cls is None:
        raise InvalidRequest(f"diffusers {diffusers.__version__} has no scheduler {name}",
                             field="sampler")
    kind = "flow" if "FlowMatch" in type(original).__name__ \
        or original.config.get("use_flow_sigmas") else "eps"
    if kind == "flow" and not cls.__name__.startswith("FlowMatch") \
            and not overrides.get("use_flow_sigmas"):
        raise InvalidRequest(
            f"sampler {payload.get('sampler')!r} maps to {cls.__name__}, a noise-prediction "
            f"scheduler; {type(entry.pipe).__name__} at {entry.key!r} runs flow-matching "
            "schedulers only", field="sampler")
    return cls.from_config(original.config, **overrides)


def _translate(exc: BaseException, entry: PipelineEntry) -> BaseException:
    """diffusers/torch failures as modelglass errors that say what to do."""
    if isinstance(exc, ModelglassError | KeyboardInterrupt | SystemExit):
        return exc
    import torch

    where = f"local pipeline {entry.key!r} ({type(entry.pipe).__name__})"
    if isinstance(exc, torch.OutOfMemoryError):
        return ProviderError(f"{where} ran out of device memory: {exc}. Lower the size or n, "
                             "use dtype='bfloat16', or set a smaller memory_budget_bytes so "
                             "fewer pipelines stay loaded", provider="local", retryable=False)
    if isinstance(exc, ValueError | TypeError):
        return InvalidRequest(f"{where} refused the call: {exc}")
    log.exception("local generation failed on %s", entry.key)
    return ProviderError(f"{where} failed: {type(exc).__name__}: {exc}", provider="local",
                         retryable=False)
