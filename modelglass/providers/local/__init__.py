"""The local provider: catalog offers run on this machine through Hugging Face diffusers.

>>> import modelglass as mg
>>> local = mg.LocalBackend(device="cuda", paths={"sdxl": "/models/sdxl"})   # doctest: +SKIP
>>> mg.Client(local=local).generate("a watercolor fox", model="sdxl", provider="local")  # doctest: +SKIP

Modules: ``_backend`` (:class:`LocalBackend`), ``_families`` (pipeline families, sampler →
scheduler mapping, the payload; pure), ``_cache`` (loaded pipelines bounded by device memory),
``_run`` (one call per pipeline at a time, merged batches), ``_fast`` (the opt-in fast path),
``_weights`` (weights on disk and in the Hugging Face cache), ``_recipe`` (offers assembled at
load time: LoRA, replacement UNet, extra text encoder). See docs/local.md. torch and diffusers are imported
only when a pipeline is loaded or a device is probed.
"""

from __future__ import annotations

from ._backend import LocalBackend
from ._families import SAMPLERS, Family, SchedulerChoice, family_for, scheduler_for
from ._weights import WeightsInfo, cached_snapshot, inspect_folder

__all__ = [
           "SAMPLERS",
           "Family",
           "LocalBackend",
           "SchedulerChoice",
           "WeightsInfo",
           "cached_snapshot",
           "family_for",
           "inspect_folder",
           "scheduler_for",
]
