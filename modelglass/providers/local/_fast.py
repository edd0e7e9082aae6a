"""The opt-in fast path: load-time optimisations and the prompt-embedding cache.

Everything here is what diffusers itself offers, applied once: fused QKV projections,
channels_last memory format for convolutional models, ``torch.compile`` (regional, on the
repeated blocks, by default), and ``encode_prompt`` results reused across calls. None of it is
lossy by design; each option's measured drift is in docs/local.md.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from ._families import Family

__all__ = ["TEXT_OPTIONS", "EmbeddingCache", "denoiser", "optimise"]

log = logging.getLogger("modelglass")

#: Call options that change how the prompt is encoded; with any of them, embeddings are not cached.
TEXT_OPTIONS = frozenset({"prompt_2", "negative_prompt_2", "clip_skip", "cross_attention_kwargs",
                          "joint_attention_kwargs", "prompt_embeds", "negative_prompt_embeds",
                          "pooled_prompt_embeds", "negative_pooled_prompt_embeds", "ip_adapter_image"})


def denoiser(pipe: Any) -> Any:
    """The pipeline's denoising network: ``transformer`` (FLUX, SD3, PixArt) or ``unet``."""
    model = getattr(pipe, "transformer", None)
    return model if model is not None else getattr(pipe, "unet", None)


def optimise(pipe: Any, *, compile: str, compile_options: dict[str, Any] | None,
             channels_last: bool = True, fuse_qkv: bool = True) -> list[str]:
    """Apply the fast-path options to a loaded pipeline; return the names of those applied.

    ``compile``: "none", "regional" (``compile_repeated_blocks``: the transformer blocks, compiled
    once and reused: a fraction of the compile time of a full compile) or "full".
    ``compile_options`` go to ``torch.compile`` (e.g. ``{"backend": "eager"}`` for a CPU check,
    ``{"mode": "max-autotune-no-cudagraphs"}``).
    """
    import torch

    applied: list[str] = []
    den = denoiser(pipe)
    vae = getattr(pipe, "vae", None)
    if fuse_qkv:
        for name, module in (("denoiser", den), ("vae", vae)):
            if module is not None and hasattr(module, "fuse_qkv_projections"):
                try:
                    module.fuse_qkv_projections()
                    applied.append(f"fuse_qkv:{name}")
                except Exception as exc:  # noqa: BLE001 - an architecture without fusable attention
                    log.info("local fast path: fuse_qkv_projections on %s skipped: %s", name, exc)
    if channels_last:
        unet = getattr(pipe, "unet", None)
        for name, module in (("unet", unet), ("vae", vae)):
            if module is not None:
                module.to(memory_format=torch.channels_last)
                applied.append(f"channels_last:{name}")
    if compile != "none" and den is not None:
        opts: dict[str, Any] = {"fullgraph": True, **(compile_options or {})}
        if compile == "regional" and getattr(den, "_repeated_blocks", None) \
                and hasattr(den, "compile_repeated_blocks"):
            den.compile_repeated_blocks(**opts)
            applied.append("compile:regional")
        else:
            den.compile(**opts)
            applied.append("compile:full")
    return applied


class EmbeddingCache:
    """``encode_prompt`` results per (prompt, negative prompt, settings), least recently used out.

    Each entry holds the embeddings for one image (batch dimension 1); :meth:`merged` repeats and
    concatenates them for a call of several images or several requests.
    """

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._store: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, pipe: Any, family: Family, prompt: str, negative: str | None, *,
            do_cfg: bool, true_cfg: bool, max_sequence_length: int | None) -> dict[str, Any]:
        """The prompt-embedding keyword arguments for one image, computed once and reused."""
        key = (family.name, prompt, negative, do_cfg, true_cfg, max_sequence_length)
        found = self._store.get(key)
        if found is not None:
            self._store.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        embeds = _encode(pipe, family, prompt, negative, do_cfg=do_cfg, true_cfg=true_cfg,
                         max_sequence_length=max_sequence_length)
        self._store[key] = embeds
        if len(self._store) > self.capacity:
            self._store.popitem(last=False)
        return embeds

    @staticmethod
    def merged(parts: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
        """One keyword dict for a batch: each part's embeddings repeated ``count`` times, in order."""
        import torch

        keys = parts[0][0].keys()
        return {k: torch.cat([e[k].repeat(count, *([1] * (e[k].dim() - 1))) for e, count in parts])
                for k in keys}


def _encode(pipe: Any, family: Family, prompt: str, negative: str | None, *, do_cfg: bool,
            true_cfg: bool, max_sequence_length: int | None) -> dict[str, Any]:
    """Call the pipeline's own ``encode_prompt`` exactly as its ``__call__`` would."""
    import torch

    device = pipe._execution_device
    with torch.no_grad():
        if family.name == "sd":
            pe, ne = pipe.encode_prompt(prompt, device, 1, do_cfg, negative)
            out = {"prompt_embeds": pe}
            if do_cfg:
                out["negative_prompt_embeds"] = ne
            return out
        if family.name == "sdxl":
            pe, ne, ppe, npe = pipe.encode_prompt(
                prompt=prompt, device=device, num_images_per_prompt=1,
                do_classifier_free_guidance=do_cfg, negative_prompt=negative)
            out = {"prompt_embeds": pe, "pooled_prompt_embeds": ppe}
            if do_cfg:
                out.update(negative_prompt_embeds=ne, negative_pooled_prompt_embeds=npe)
            return out
        if family.name == "flux":
            msl = max_sequence_length or 512
            pe, ppe, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device,
                                            num_images_per_prompt=1, max_sequence_length=msl)
            out = {"prompt_embeds": pe, "pooled_prompt_embeds": ppe}
            if true_cfg and negative is not None:
                npe, nppe, _ = pipe.encode_prompt(prompt=negative, prompt_2=None, device=device,
                                                  num_images_per_prompt=1,
                                                  max_sequence_length=msl)
                out.update(negative_prompt_embeds=npe, negative_pooled_prompt_embeds=nppe)
            return out
    raise ValueError(f"no prompt-embedding support for family {family.name!r}")
