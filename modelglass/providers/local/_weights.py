"""Where local weights are, and how big they are. Reads files only: no torch, no network.

A diffusers folder has a ``model_index.json`` naming its components; each component folder holds
safetensors files. The parameter count comes from the safetensors headers (the first bytes of the
file: a JSON table of dtype and shape per tensor), so the memory a pipeline needs in bf16 or fp32
is known before loading anything.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["WeightsInfo", "bytes_for_dtype", "cached_file", "cached_pipelines", "cached_repo",
           "cached_snapshot", "fetch_hint", "hf_cache_dir", "inspect_folder"]

log = logging.getLogger("modelglass")

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_SHARD = re.compile(r"-\d{5}-of-\d{5}")


def bytes_for_dtype(dtype: str) -> int:
    """Bytes per parameter for a torch dtype name ("bfloat16", "float16", "float32")."""
    return {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}.get(dtype.removeprefix("torch."), 4)


@dataclass
class WeightsInfo:
    """A diffusers folder on disk: its pipeline class and what its weights weigh."""

    path: Path
    pipeline: str | None
    params: int = 0
    bytes_on_disk: int = 0
    components: dict[str, int] = field(default_factory=dict)  # component → parameters

    def memory_bytes(self, dtype: str = "bfloat16") -> int:
        """Bytes the weights take once loaded in ``dtype`` (activations come on top)."""
        return self.params * bytes_for_dtype(dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "pipeline": self.pipeline, "params": self.params,
                "bytes_on_disk": self.bytes_on_disk, "components": self.components,
                "weights_gib_bf16": round(self.memory_bytes("bfloat16") / 2**30, 2),
                "weights_gib_fp32": round(self.memory_bytes("float32") / 2**30, 2)}


def _safetensors_params(path: Path) -> int:
    """Number of parameters in one safetensors file, from its header alone."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    total = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in meta.get("shape", []):
            count *= int(dim)
        total += count
    return total


def _variant(name: str) -> str:
    """"diffusion_pytorch_model.fp16.safetensors" → "fp16"; no variant → ""."""
    stem = _SHARD.sub("", name.removesuffix(".safetensors"))
    parts = stem.split(".")
    return parts[-1] if len(parts) > 1 else ""


def inspect_folder(path: str | Path) -> WeightsInfo | None:
    """Parameters and sizes of the diffusers folder at ``path``, or None if it is not one.

    Where a component has several variants (``.fp16.safetensors`` next to the full files), one is
    counted: the parameter count is the same in each.
    """
    root = Path(path)
    index = root / "model_index.json"
    if not index.is_file():
        return None
    try:
        meta = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("cannot read %s: %s", index, exc)
        return None
    info = WeightsInfo(path=root, pipeline=meta.get("_class_name"))
    for comp, spec in meta.items():
        if comp.startswith("_") or not isinstance(spec, list) or not (root / comp).is_dir():
            continue
        by_variant: dict[str, list[Path]] = {}
        for f in sorted((root / comp).glob("*.safetensors")):
            by_variant.setdefault(_variant(f.name), []).append(f)
        if not by_variant:
            continue
        files = by_variant.get("") or next(iter(by_variant.values()))
        try:
            params = sum(_safetensors_params(f) for f in files)
        except (OSError, ValueError, struct.error) as exc:
            log.warning("cannot read safetensors header in %s: %s", root / comp, exc)
            continue
        info.components[comp] = params
        info.params += params
        info.bytes_on_disk += sum(f.stat().st_size for f in files)
    return info


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of ``repo_id`` in the local Hugging Face cache, or None. Never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, "model_index.json")
    except Exception as exc:  # noqa: BLE001 - a malformed repo id is "not cached"
        log.debug("HF cache lookup for %s failed: %s", repo_id, exc)
        return None
    if isinstance(found, str):
        return Path(found).parent
    return None


def cached_repo(repo_id: str) -> Path | None:
    """The snapshot folder of any repo (a LoRA, a text encoder) in the local HF cache, or None."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - absent, malformed id, or offline: "not cached"
        log.debug("HF cache lookup for %s failed: %s", repo_id, exc)
        return None


def cached_file(repo_id: str, filename: str) -> Path | None:
    """One file of ``repo_id`` in the local Hugging Face cache, or None. Never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception as exc:  # noqa: BLE001
        log.debug("HF cache lookup for %s/%s failed: %s", repo_id, filename, exc)
        return None
    return Path(found) if isinstance(found, str) else None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub resolves it (read at call time)."""
    import os

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        xdg = os.environ.get("XDG_CACHE_HOME")
        return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def cached_pipelines(cache_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """``(repo id, snapshot folder)`` of every diffusers pipeline in the HF cache (no network).

    The snapshot is the one ``refs/main`` points at, else the most recently modified one.
    """
    root = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    found = []
    for repo in sorted(root.glob("models--*")):
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        ref = repo / "refs" / "main"
        snap = snapshots / ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
        if snap is None or not (snap / "model_index.json").is_file():
            candidates = [d for d in snapshots.iterdir() if (d / "model_index.json").is_file()]
            if not candidates:
                continue
            snap = max(candidates, key=lambda d: d.stat().st_mtime)
        found.append((repo.name.removeprefix("models--").replace("--", "/"), snap))
    return found


def fetch_hint(model_id: str, repo_id: str) -> str:
    """How to get the weights of ``model_id`` onto this machine."""
    return (f"weights for {model_id!r} ({repo_id}) are not on this machine; modelglass never "
            f"downloads behind your back. Fetch them with `huggingface-cli download {repo_id}` "
            f"(or `hf download {repo_id}`), or point at a diffusers folder with "
            f"LocalBackend(paths={{{model_id!r}: '/path/to/folder'}})")
