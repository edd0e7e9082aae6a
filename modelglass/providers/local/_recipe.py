"""Offers whose pipeline is assembled at load time, from catalog data.

Some local offers are not one diffusers folder: LCM-LoRA is the SDXL base plus a LoRA,
SDXL-Lightning is the SDXL base with a distilled UNet from another repo, HiDream needs a Llama
text encoder from a gated repo. The catalog says so in the offer's ``defaults`` (the keys in
``_families.LOAD_KEYS``); this module checks that every piece is on this machine and assembles
the pipeline the way each model card does. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._weights import cached_file, cached_repo

if TYPE_CHECKING:
    from ...catalog import OfferView

__all__ = ["Recipe"]


@dataclass(frozen=True)
class Recipe:
    """How one offer's pipeline is put together (all None: load the folder as it is)."""

    lora: str | None = None  # LoRA repo id, loaded with pipe.load_lora_weights
    base_model: str | None = None  # the diffusers repo that provides every other component
    unet_weights: str | None = None  # a UNet state dict file in the offer's endpoint repo
    llama_model: str | None = None  # HiDream's 4th text encoder (a Llama repo id)

    @classmethod
    def of(cls, offer: OfferView) -> Recipe:
        d = offer.offer.defaults
        return cls(lora=d.get("lora"), base_model=d.get("base_model"),
                   unet_weights=d.get("unet_weights"), llama_model=d.get("llama_model"))

    def __bool__(self) -> bool:
        return any((self.lora, self.base_model, self.unet_weights, self.llama_model))

    # -- where the pieces are -------------------------------------------------------------------
    @staticmethod
    def _repo(repo_id: str, paths: dict[str, Path]) -> Path | None:
        return paths.get(repo_id) or cached_repo(repo_id)

    def _unet_file(self, endpoint: str, paths: dict[str, Path]) -> Path | None:
        assert self.unet_weights is not None
        folder = paths.get(endpoint)
        if folder is not None:
            return folder / self.unet_weights if (folder / self.unet_weights).is_file() else None
        return cached_file(endpoint, self.unet_weights)

    def missing(self, offer: OfferView, paths: dict[str, Path]) -> str | None:
        """Why this offer cannot be assembled here (with how to fix it), or None."""
        if self.lora:
            if importlib.util.find_spec("peft") is None:
                return (f"{offer.key} loads the LoRA {self.lora}, and diffusers needs peft for "
                        "LoRAs: pip install peft")
            if self._repo(self.lora, paths) is None:
                return (f"{offer.key} needs the LoRA {self.lora}, which is not on this machine: "
                        f"`huggingface-cli download {self.lora}`, or "
                        f"LocalBackend(paths={{{self.lora!r}: '/path/to/lora'}})")
        if self.unet_weights and self._unet_file(offer.endpoint, paths) is None:
            return (f"{offer.key} needs {self.unet_weights} from {offer.endpoint}: "
                    f"`huggingface-cli download {offer.endpoint} {self.unet_weights}`, or "
                    f"LocalBackend(paths={{{offer.endpoint!r}: '/folder/holding/that/file'}})")
        if self.llama_model and self._repo(self.llama_model, paths) is None:
            return (f"{offer.key} needs the text encoder {self.llama_model} (a gated repo: accept "
                    f"its licence on huggingface.co first): "
                    f"`huggingface-cli download {self.llama_model}`, or "
                    f"LocalBackend(paths={{{self.llama_model!r}: '/path/to/llama'}})")
        return None

    # -- assembling -----------------------------------------------------------------------------
    def components(self, paths: dict[str, Path], torch_dtype: Any) -> dict[str, Any]:
        """Components to hand to ``from_pretrained`` (HiDream's Llama encoder and tokenizer)."""
        if not self.llama_model:
            return {}
        from transformers import AutoTokenizer, LlamaForCausalLM

        folder = self._repo(self.llama_model, paths)
        assert folder is not None  # checked by missing()
        return {"tokenizer_4": AutoTokenizer.from_pretrained(str(folder), local_files_only=True),
                "text_encoder_4": LlamaForCausalLM.from_pretrained(
                    str(folder), local_files_only=True, output_hidden_states=True,
                    output_attentions=True, dtype=torch_dtype)}

    def apply(self, pipe: Any, offer: OfferView, paths: dict[str, Path]) -> list[str]:
        """Put the offer's own pieces into a loaded pipeline; return what was applied."""
        applied = []
        if self.unet_weights:
            from safetensors.torch import load_file

            path = self._unet_file(offer.endpoint, paths)
            assert path is not None  # checked by missing()
            pipe.unet.load_state_dict(load_file(str(path), device=str(pipe.unet.device)))
            applied.append(f"unet:{self.unet_weights}")
        if self.lora:
            folder = self._repo(self.lora, paths)
            assert folder is not None
            pipe.load_lora_weights(str(folder))
            applied.append(f"lora:{self.lora}")
        return applied
