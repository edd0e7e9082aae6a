"""``LocalBackend``: catalog offers run on this machine's GPU (or CPU) through diffusers."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import io
import logging
import math
import os
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ...catalog import LOCAL
from ...errors import ContentRejected, InvalidRequest, ProviderUnavailable
from ...jobs._steps import Wire
from ..base import Availability, Provider, ProviderOutput, RawImage
from ._cache import PipelineCache, PipelineEntry, module_bytes
from ._device import (
    device_availability,
    dtype_kw,
    dtype_name,
    memory_budget,
    resolve_device,
    stack_of,
)
from ._families import build_local_payload, family_for
from ._fast import EmbeddingCache, optimise
from ._recipe import Recipe
from ._run import Job, RunResult, submit
from ._weights import cached_snapshot, fetch_hint, inspect_folder

if TYPE_CHECKING:
    from ...catalog import CostEstimate, OfferView
    from ...jobs._steps import Step
    from ...plan import Planned, ProviderCall
    from ...result import Fate

__all__ = ["LocalBackend"]

log = logging.getLogger("modelglass")

Device = Literal["auto", "cuda", "cpu", "mps"] | str
DType = Literal["auto", "float32", "bfloat16", "float16"]

class LocalBackend(Provider):
    """Run local catalog offers with Hugging Face diffusers, on this machine.

    >>> local = LocalBackend(device="cuda", dtype="bfloat16",          # doctest: +SKIP
    ...                      paths={"sdxl": "/models/sdxl"})
    >>> client = mg.Client(local=local)                                  # doctest: +SKIP
    >>> client.generate("a watercolor fox", model="sdxl", provider="local", seed=3)  # doctest: +SKIP

    Weights come from, in order: ``pipelines`` (ready pipeline objects, keyed by catalog model id),
    ``paths`` (catalog model id → a diffusers folder), or the local Hugging Face cache (the offer's
    endpoint is the repo id). Nothing is ever downloaded: an offer whose weights are absent is not
    eligible, and its reason says how to fetch them.

    Args:
        device: "auto" (CUDA, then MPS; no GPU → not available), "cuda", "cuda:1", "mps" or "cpu".
        dtype: "auto" (bfloat16 on CUDA, float16 if the GPU lacks bf16 or on MPS, float32 on CPU)
            or an explicit "float32" / "bfloat16" / "float16".
        paths: catalog model id (or offer key, or repo id) → diffusers folder.
        pipelines: catalog model id → a ready ``DiffusionPipeline`` on its device (never evicted;
            with ``fast=True`` the fast path's load-time options are applied to it in place).
        fast: opt in to the fast path: fused QKV, channels_last, ``torch.compile`` (regional by
            default, on CUDA), a prompt-embedding cache, and merging of concurrent requests for one
            pipeline into one batched call. Off by default, so the default image is exactly what
            the hand-written diffusers call gives.
        gpu_hour_usd: price of an hour of this device; default: the catalog's setting.
        memory_budget_bytes: bytes of loaded pipelines to keep (least recently used evicted
            first); default 85 % of the GPU's memory, or half the RAM on CPU.
        compile: "auto" (regional on CUDA when ``fast``, else none), "none", "regional", "full".
        compile_options: extra ``torch.compile`` arguments, e.g. ``{"mode": "max-autotune"}``.
        batch_max_images: most images one merged call may hold (fast path).
        variant: weights variant to load, e.g. "fp16" (files ``*.fp16.safetensors``).
        png_compress_level: zlib level of the PNG bytes (1 is fast; 9 is small).
    """

    name: ClassVar[str] = LOCAL
    client_package: ClassVar[str | None] = "diffusers"
    no_bill: ClassVar[str] = "a local run has no bill"
    extra: ClassVar[str | None] = "local"
    per_offer_availability: ClassVar[bool] = True  # weights present or not, offer by offer

    def __init__(self, device: Device = "auto", dtype: DType | str = "auto", *,
                 paths: dict[str, str | os.PathLike[str]] | None = None,
                 pipelines: dict[str, Any] | None = None, fast: bool = False,
                 gpu_hour_usd: float | None = None, memory_budget_bytes: int | None = None,
                 compile: Literal["auto", "none", "regional", "full"] = "auto",
                 compile_options: dict[str, Any] | None = None, batch_max_images: int = 8,
                 variant: str | None = None, png_compress_level: int = 1) -> None:
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise InvalidRequest(f"dtype {dtype!r}: use auto, float32, bfloat16 or float16",
                                 field="dtype")
        if compile not in ("auto", "none", "regional", "full"):
            raise InvalidRequest(f"compile {compile!r}: use auto, none, regional or full",
                                 field="compile")
        self.device = device
        self.dtype = dtype
        self.paths = {k: Path(v).expanduser() for k, v in (paths or {}).items()}
        self.pipelines = dict(pipelines or {})
        self.fast = fast
        self.gpu_hour_usd = gpu_hour_usd
        self.memory_budget_bytes = memory_budget_bytes
        self.compile = compile
        self.compile_options = dict(compile_options or {})
        self.batch_max_images = max(1, batch_max_images)
        self.variant = variant
        self.png_compress_level = png_compress_level
        self._availability: Availability | None = None
        self._cache: PipelineCache | None = None
        self._cache_mutex = threading.Lock()
        self._measured: dict[str, deque[tuple[float, int]]] = {}
        self._stack: dict[str, str] = {}

    def __repr__(self) -> str:
        return (f"LocalBackend(device={self.device!r}, dtype={self.dtype!r}, fast={self.fast}, "
                f"paths={sorted(self.paths)}, pipelines={sorted(self.pipelines)})")

    # -- availability ---------------------------------------------------------------------------
    def availability(self) -> Availability:
        """torch and diffusers importable and the device usable (checked once)."""
        if self._availability is None:
            self._availability = device_availability(str(self.device), bool(self.pipelines))
        return self._availability

    def offer_availability(self, offer: OfferView) -> Availability:
        """Eligible only where the weights are here: a ready pipeline, a folder, or the HF cache."""
        if offer.provider != self.name:
            return Availability(False, f"{offer.key} is not a local offer")
        missing_pkgs = [m for m in ("torch", "diffusers", "transformers")
                        if importlib.util.find_spec(m) is None]
        if missing_pkgs:
            return self.availability()  # says what to install, without importing anything
        # Weights first: on a machine without them, routing never pays torch's import.
        kind, source = self._source(offer)
        if kind == "missing":
            return Availability(False, self._fetch_hint(offer))
        base = self.availability()
        if not base.ok:
            return base
        pipe_cls = offer.offer.pipeline
        if pipe_cls and pipe_cls not in ("DiffusionPipeline", "AutoPipelineForText2Image"):
            import diffusers

            if not hasattr(diffusers, pipe_cls):
                return Availability(False, f"diffusers {diffusers.__version__} has no {pipe_cls} "
                                           f"(needed by {offer.key}); upgrade diffusers")
        if kind == "pipeline":
            return Availability(True, "ready pipeline given")
        if kind == "folder" and inspect_folder(source) is None:
            return Availability(False, f"paths[{offer.model_id!r}] = {source} is not a "
                                       "diffusers folder (no model_index.json); save one with "
                                       "pipe.save_pretrained(folder)")
        missing = Recipe.of(offer).missing(offer, self.paths)
        if missing:
            return Availability(False, missing)
        if kind == "folder":
            return Availability(True, f"folder {source}")
        return Availability(True, f"in the Hugging Face cache at {source}")

    def _source(self, offer: OfferView) -> tuple[str, Any]:
        # An offer assembled from a base model (SDXL-Lightning) loads that base's folder.
        repo = Recipe.of(offer).base_model or offer.endpoint
        names = (offer.key, offer.model_id, repo)
        for n in names:
            if n in self.pipelines:
                return "pipeline", n
        for n in names:
            if n in self.paths:
                return "folder", self.paths[n]
        snap = cached_snapshot(repo)
        if snap is not None:
            return "cache", snap
        return "missing", None

    @staticmethod
    def _fetch_hint(offer: OfferView) -> str:
        return fetch_hint(offer.model_id, Recipe.of(offer).base_model or offer.endpoint)

    # -- payload and cost (pure) ----------------------------------------------------------------
    def build_payload(self, planned: Planned, offer: OfferView) -> tuple[dict[str, Any], dict[str, Fate]]:
        """The diffusers call as a JSON-ready dict (see ``_families.build_local_payload``)."""
        return build_local_payload(planned, offer)

    def cost_estimate(self, offer: OfferView, width: int, height: int, n: int,
                      steps: int | None) -> CostEstimate | None:
        """From GPU-seconds measured here once the offer has run (warm), else None (catalog's)."""
        runs = self._measured.get(offer.key)
        if not runs:
            return None
        from ...catalog import CostEstimate

        rate = statistics.median(r for r, _ in runs)  # seconds per megapixel-step, one pass
        c = offer.controls
        use_steps = steps or (int(c.steps.default) if c.steps and c.steps.default else runs[-1][1])
        secs = rate * width * height / 1e6 * use_steps
        hour = self._hour_usd(offer)
        each = secs * hour / 3600
        return CostEstimate(each * n, each,
                            f"{secs:.2f} GPU-s/image measured here (median of {len(runs)} runs, "
                            f"scaled to {width}x{height}, {use_steps} steps) × ${hour:g}/GPU-h × {n}",
                            approximate=True)

    def _hour_usd(self, offer: OfferView) -> float:
        return self.gpu_hour_usd if self.gpu_hour_usd is not None else offer.gpu_hour_usd

    # -- pipelines --------------------------------------------------------------------------------
    def pipeline(self, offer: OfferView) -> Any:
        """The loaded diffusers pipeline for ``offer`` (loading it now if needed)."""
        return self._entry(offer).pipe

    def loaded(self) -> list[str]:
        """Keys of the pipelines in memory, least recently used first."""
        return self._pipelines().keys()

    def evict(self, key: str) -> bool:
        """Drop a loaded pipeline (a key from :meth:`loaded`)."""
        return self._pipelines().evict(key)

    def close(self) -> None:
        """Drop every loaded pipeline and free device memory."""
        if self._cache is not None:
            self._cache.clear()

    def _pipelines(self) -> PipelineCache:
        with self._cache_mutex:
            if self._cache is None:
                self._cache = PipelineCache(self._budget(), on_evict=self._free)
            return self._cache

    def _entry(self, offer: OfferView) -> PipelineEntry:
        kind, source = self._source(offer)
        cache = self._pipelines()
        if kind == "pipeline":
            key = f"pipeline:{source}"
            entry = cache.peek(key)
            if entry is None:
                with self._cache_mutex:  # two first callers must not optimise one pipeline twice
                    entry = cache.peek(key)
                    if entry is None:
                        pipe = self.pipelines[source]
                        applied = optimise(pipe, compile=self._compile_mode(),
                                           compile_options=self.compile_options) if self.fast else []
                        entry = cache.add(PipelineEntry(
                            key, pipe, family_for(type(pipe).__name__), module_bytes(pipe),
                            pinned=True, fast=applied,
                            embeddings=EmbeddingCache() if self.fast else None))
            return entry
        if kind == "missing":
            raise ProviderUnavailable(self._fetch_hint(offer), provider="local")
        key = f"{offer.model_id}:{source}"
        info = inspect_folder(source)
        estimate = info.memory_bytes(self._dtype_name()) if info else 0
        return cache.get(key, lambda: self._load(key, offer, source), estimate)

    def _load(self, key: str, offer: OfferView, source: Path) -> PipelineEntry:
        import diffusers

        name = offer.offer.pipeline or "DiffusionPipeline"
        cls = getattr(diffusers, name, None) or diffusers.DiffusionPipeline
        recipe = Recipe.of(offer)
        kwargs: dict[str, Any] = {"local_files_only": True, dtype_kw(): self._torch_dtype()}
        if self.variant:
            kwargs["variant"] = self.variant
        started = time.perf_counter()
        try:
            kwargs.update(recipe.components(self.paths, self._torch_dtype()))
            pipe = cls.from_pretrained(str(source), **kwargs)
            assembled = recipe.apply(pipe, offer, self.paths)
        except (OSError, ValueError) as exc:
            raise ProviderUnavailable(
                f"could not load {offer.model_id!r} from {source}: {exc}. The folder may be "
                f"incomplete. {self._fetch_hint(offer)}", provider="local") from exc
        if assembled:
            log.info("local: assembled %s: %s", key, ", ".join(assembled))
        pipe.to(self._device())
        pipe.set_progress_bar_config(disable=True)
        applied = optimise(pipe, compile=self._compile_mode(),
                           compile_options=self.compile_options) if self.fast else []
        load_s = time.perf_counter() - started
        log.info("local: loaded %s (%s, %s) in %.1fs%s", key, type(pipe).__name__,
                 self._dtype_name(), load_s, f" fast: {', '.join(applied)}" if applied else "")
        return PipelineEntry(key, pipe, family_for(type(pipe).__name__), module_bytes(pipe),
                             load_s=load_s, fast=applied,
                             embeddings=EmbeddingCache() if self.fast else None)

    def _free(self, entry: PipelineEntry) -> None:
        gc.collect()
        if str(self._device()).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- generation -------------------------------------------------------------------------------
    def job(self, call: ProviderCall, *, timeout_s: float, resume: str | None = None,
            on_submitted: Callable[[str], None] | None = None
            ) -> Generator[Step, Any, ProviderOutput]:
        """One step: the pipeline run on this machine (its PNG bytes made there too, off the
        event loop when awaited)."""
        return (yield Wire(self, "run", (call, timeout_s)))  # type: ignore[no-any-return]

    def wire(self) -> _Run:
        return _Run(self, asynchronous=False)

    def awire(self) -> _Run:
        return _Run(self, asynchronous=True)

    def generate_batch(self, calls: list[ProviderCall], *, timeout_s: float = math.inf,
                       return_exceptions: bool = False) -> list[ProviderOutput | BaseException]:
        """Run several calls, merging those for one pipeline with the same size, steps, guidance and
        sampler into one diffusers call (prompt embeddings concatenated, one generator per image).

        With ``return_exceptions``, a failed call's error takes its place in the list; otherwise
        the first error is raised.
        """
        prepared = [self._prepare(c, timeout_s, None) for c in calls]
        for entry, job, _, _ in prepared:
            if entry.embeddings is None and entry.family.embeddings:
                entry.embeddings = EmbeddingCache()
        for entry, job, _, _ in prepared:  # queue them all before the first runs, so they merge
            with entry.queue_mutex:
                entry.queue.append(job)
        out: list[ProviderOutput | BaseException] = []
        for call, (entry, job, payload, t0) in zip(calls, prepared, strict=True):
            try:
                result = submit(entry, job, merge=True, max_images=self.batch_max_images,
                                enqueue=False)
                out.append(self._output(call.offer, entry, payload, result, t0))
            except Exception as exc:
                if not return_exceptions:
                    raise
                out.append(exc)
        return out

    def _prepare(self, call: ProviderCall, timeout_s: float,
                 cancel: threading.Event | None) -> tuple[PipelineEntry, Job, dict[str, Any], float]:
        t0 = time.monotonic()
        deadline = t0 + timeout_s if timeout_s and math.isfinite(timeout_s) else math.inf
        payload = dict(call.payload) if call.payload.get("prompt") is not None \
            else self.build_payload(call.planned, call.offer)[0]
        n = int(payload.get("num_images_per_prompt", 1))
        seeds = payload.get("seeds")
        if seeds is None:  # the offer does not promise seeds; draw some so the image is repeatable
            rng = random.SystemRandom()
            seeds = payload["seeds"] = [rng.randrange(0, 2**32) for _ in range(n)]
        if len(seeds) != n:
            raise InvalidRequest(f"payload has {len(seeds)} seeds for {n} images", field="seeds")
        avail = self.offer_availability(call.offer)
        if not avail.ok:
            raise ProviderUnavailable(avail.reason, provider="local")
        entry = self._entry(call.offer)
        return entry, Job(payload, deadline, cancel), payload, t0

    def _generate(self, call: ProviderCall, timeout_s: float,
                  cancel: threading.Event | None) -> ProviderOutput:
        entry, job, payload, t0 = self._prepare(call, timeout_s, cancel)
        result = submit(entry, job, merge=self.fast, max_images=self.batch_max_images)
        return self._output(call.offer, entry, payload, result, t0)

    def _output(self, offer: OfferView, entry: PipelineEntry, payload: dict[str, Any],
                result: RunResult, t0: float) -> ProviderOutput:
        seeds = payload["seeds"]
        if result.nsfw and any(result.nsfw):
            flagged = [i for i, f in enumerate(result.nsfw) if f]
            raise ContentRejected(
                f"the safety checker of {offer.key} flagged image(s) {flagged} (seeds "
                f"{[seeds[i] for i in flagged]}); no image is returned. Change the prompt",
                provider="local", code="nsfw_content_detected")
        images = []
        for img, seed in zip(result.images, seeds, strict=True):
            buf = io.BytesIO()
            img.save(buf, format="PNG", compress_level=self.png_compress_level)
            images.append(RawImage(data=buf.getvalue(), mime="image/png", width=img.width,
                                   height=img.height, seed=int(seed)))
        hour = self._hour_usd(offer)
        self._record(offer, entry, payload, result)
        extra = {**stack_of(entry, self._device(), self._stack), "scheduler": result.scheduler,
                 "sampler": payload.get("sampler"), "gpu_seconds": round(result.seconds, 4),
                 "gpu_hour_usd": hour, "batch_images": result.batch_images,
                 "warm": result.warm, "fast": list(entry.fast) if self.fast else [],
                 "pipeline": type(entry.pipe).__name__, "seeds": list(seeds),
                 "reproducible_on": "the same stack (extra['stack']): device, dtype, library "
                                    "versions, CPU thread count, fast-path options"}
        if result.embeddings:
            extra["prompt_embeddings"] = result.embeddings
        return ProviderOutput(
            images=images, cost_usd=result.seconds * hour / 3600,
            timings={"total_s": time.monotonic() - t0, "gpu_s": result.seconds,
                     "call_s": result.call_seconds, "load_s": entry.load_s},
            extra=extra)

    def _record(self, offer: OfferView, entry: PipelineEntry, payload: dict[str, Any],
                result: RunResult) -> None:
        if not result.warm:  # first call: one-off setup (and compile) would skew the estimate
            return
        steps = payload.get("num_inference_steps") or 50
        # FLUX's true CFG is an extra pass the planner prices by doubling; Qwen-Image's is its
        # ordinary CFG (like SD's, part of the rate).
        passes = 2 if payload.get("true_cfg_scale") and entry.family.guidance != "true_cfg" else 1
        mp = payload["width"] * payload["height"] / 1e6
        per_image = result.seconds / max(1, len(result.images))
        self._measured.setdefault(offer.key, deque(maxlen=16)).append(
            (per_image / passes / mp / steps, int(steps)))

    # -- device, dtype, memory (see ._device) ---------------------------------------------------
    def _device(self) -> str:
        return resolve_device(str(self.device))

    def _dtype_name(self) -> str:
        return dtype_name(self.dtype, self._device() if self.dtype == "auto" else "")

    def _torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self._dtype_name())

    def _compile_mode(self) -> str:
        if self.compile != "auto":
            return self.compile
        return "regional" if self._device().startswith("cuda") else "none"

    def _budget(self) -> int | None:
        if self.memory_budget_bytes is not None:
            return self.memory_budget_bytes
        return memory_budget(self._device())


class _Run:
    """The local wire: ``run`` blocks until the images are ready; awaited, it runs on a worker
    thread, and cancelling it stops the pipeline between steps."""

    def __init__(self, backend: LocalBackend, *, asynchronous: bool) -> None:
        self.backend = backend
        self.asynchronous = asynchronous

    def run(self, call: ProviderCall, timeout_s: float) -> Any:
        if not self.asynchronous:
            return self.backend._generate(call, timeout_s, None)
        return self._arun(call, timeout_s)

    async def _arun(self, call: ProviderCall, timeout_s: float) -> ProviderOutput:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self.backend._generate, call, timeout_s, cancel)
        except asyncio.CancelledError:
            cancel.set()
            raise
