"""The local machine: which device and dtype a pipeline runs on, how much memory it may hold,
and the software stack a seed reproduces on. torch is imported only when asked."""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

from ..base import Availability

if TYPE_CHECKING:
    from ._cache import PipelineEntry

__all__ = ["device_availability", "dtype_name", "memory_budget", "mps_ok", "resolve_device",
           "stack_of"]

log = logging.getLogger("modelglass")

INSTALL_HINT = ("pip install 'modelglass[local]' (install torch first: `pip install torch`, or "
                "the CPU wheel `pip install torch --index-url https://download.pytorch.org/whl/cpu`)")


def device_availability(device: str, has_pipelines: bool) -> Availability:
    """torch, diffusers and transformers importable, and ``device`` usable."""
    missing = [m for m in ("torch", "diffusers", "transformers")
               if importlib.util.find_spec(m) is None]
    if missing:
        return Availability(False, f"{', '.join(missing)} not installed: {INSTALL_HINT}")
    if device == "cpu":
        return Availability(True, "CPU (slow: fine for tests and tiny models)")
    import torch

    ver = torch.__version__
    if device == "auto":
        if torch.cuda.is_available():
            return Availability(True, f"CUDA: {torch.cuda.get_device_name()}")
        if mps_ok(torch):
            return Availability(True, "Apple MPS")
        if has_pipelines:
            return Availability(True, "ready pipelines given (no GPU found)")
        return Availability(False, f"no GPU found (torch {ver}: CUDA and MPS unavailable); "
                                   "LocalBackend(device='cpu') runs on the CPU, slowly")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        return Availability(False, f"device {device!r} but torch {ver} sees no CUDA GPU "
                                   "(a CPU-only torch build, or no driver)")
    if device == "mps" and not mps_ok(torch):
        return Availability(False, f"device 'mps' but torch {ver} has no usable MPS backend")
    return Availability(True, f"{device}")


def stack_of(entry: PipelineEntry, device_default: str, libs: dict[str, str]) -> dict[str, Any]:
    """The stack a seed reproduces on: device, dtype, library versions, and what changes
    low bits (CPU threads; CUDA, cuDNN; the fast-path options applied)."""
    import torch

    if not libs:  # once per backend: the library versions do not change in a process
        import platform

        import diffusers
        import transformers

        libs.update({"torch": torch.__version__, "diffusers": diffusers.__version__,
                       "transformers": transformers.__version__,
                       "python": platform.python_version()})
        if torch.version.cuda:
            libs["cuda"] = torch.version.cuda
            cudnn = torch.backends.cudnn.version()
            if cudnn:
                libs["cudnn"] = str(cudnn)
    pipe = entry.pipe
    device = str(getattr(pipe, "device", device_default))
    name = device
    if device.startswith("cuda"):
        name = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    stack: dict[str, Any] = {"device": name,
                             "dtype": str(getattr(pipe, "dtype", "")).removeprefix("torch."),
                             **libs}
    if device == "cpu":
        stack["cpu_threads"] = torch.get_num_threads()
    stack["fast"] = list(entry.fast)
    # Flat keys too: the client stamps device, dtype and versions into image provenance.
    return {**{k: stack[k] for k in ("device", "dtype", "torch", "diffusers",
                                     "transformers")}, "stack": stack}


def resolve_device(device: str) -> str:
    """``auto`` → CUDA, else MPS, else CPU; any other device as given."""
    if device != "auto":
        return str(device)
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "mps" if mps_ok(torch) else "cpu"


def dtype_name(dtype: str, device: str) -> str:
    """``auto`` → bfloat16 on CUDA (float16 without bf16), float16 on MPS, float32 on CPU."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float16" if device == "mps" else "float32"


def memory_budget(device: str) -> int | None:
    """Bytes of loaded pipelines to keep: 85 % of the GPU's memory, or half the RAM on CPU."""
    try:
        import torch

        if device.startswith("cuda"):
            return int(torch.cuda.mem_get_info(torch.device(device))[1] * 0.85)
        if device == "mps":
            return int(torch.mps.recommended_max_memory() * 0.85)
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError, RuntimeError) as exc:
        log.info("local: no memory budget (%s)", exc)
        return None


def mps_ok(torch: Any) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def dtype_kw() -> str:
    """diffusers ≥ 0.36 spells it ``dtype``; older releases only know ``torch_dtype``."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return "torch_dtype"
    return "dtype"

