"""Tiny random-weight diffusers pipelines, built offline, for testing code that runs pipelines.

Nothing here touches the Hugging Face Hub: the tokenizers are written from a locally generated
vocabulary (a byte-level BPE for CLIP, a Unigram model for T5) and the models are diffusers' and
transformers' own classes at toy sizes (the shapes follow diffusers' ``get_dummy_components``).
Every builder returns a real pipeline; :func:`save_tiny` writes one with ``save_pretrained`` so the
real ``from_pretrained`` path can load it back::

    from modelglass.testing.tiny_pipes import save_tiny
    folder = save_tiny("sdxl", tmp_path / "sdxl")            # a diffusers folder, ~3 MB
    backend = mg.LocalBackend(device="cpu", paths={"sdxl": folder})

Kinds: ``sd`` (StableDiffusionPipeline), ``sdxl`` (StableDiffusionXLPipeline), ``flux-dev``
(FluxPipeline with guidance embeddings) and ``flux-schnell`` (FluxPipeline without). Sizes that
work: multiples of 8 for SD/SDXL (64×64 is quick), multiples of 16 for FLUX (32×32 is quick); pass
``max_sequence_length`` ≤ 64 to FLUX calls.

Requires ``torch``, ``diffusers``, ``transformers`` and ``tokenizers`` (``modelglass[local]``).
Outputs are transformers-5 tokenizers; build them at test time rather than committing them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "CLIP_MAX_LENGTH",
    "KINDS",
    "build_tiny",
    "clip_tokenizer",
    "eval_mode",
    "safety_checker",
    "save_tiny",
    "t5_tokenizer",
]

#: Real CLIP pads to 77 tokens; pipelines read the length from the tokenizer, so it must be set.
CLIP_MAX_LENGTH = 77

#: The pipeline kinds :func:`build_tiny` knows, with their diffusers class names.
KINDS: dict[str, str] = {
    "sd": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "flux-dev": "FluxPipeline",
    "flux-schnell": "FluxPipeline",
}


def _byte_symbols() -> list[str]:
    """The 256 printable symbols GPT-2/CLIP byte-level BPE uses for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in sorted(symbols)]


def clip_tokenizer(directory: str | os.PathLike[str], *, pad_token: str = "<|endoftext|>") -> Any:
    """A CLIP BPE tokenizer that can encode any text, written to ``directory`` and loaded from it.

    The vocabulary is every byte symbol with and without the ``</w>`` word ending, a few merges,
    and the two specials last (as in real CLIP, end-of-text has the largest id): 521 ids in all.
    SDXL's second tokenizer pads with ``"!"``; pass ``pad_token="!"`` for it.
    """
    from transformers import CLIPTokenizer

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    merges = ["t h", "th e</w>", "a n", "i n", "e r</w>", "o n</w>", "a t</w>"]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    for merge in merges:
        joined = merge.replace(" ", "")
        if joined not in tokens:
            tokens.append(joined)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)},
                                                  ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": CLIP_MAX_LENGTH, "tokenizer_class": "CLIPTokenizer"}), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder), pad_token=pad_token,
                                         model_max_length=CLIP_MAX_LENGTH)


def t5_tokenizer(directory: str | os.PathLike[str], *, max_length: int = 512) -> Any:
    """A T5-style Unigram tokenizer (``tokenizers`` library, no sentencepiece), saved and loaded."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]  # a 5.x alias

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    space = "\u2581"
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), (space, -2.0)]
    pieces += [(c, -5.0) for c in chars] + [(space + c, -4.0) for c in chars]
    pieces += [(space + w, -1.0) for w in ("the", "a", "of", "painting", "photo", "cat", "dog", "fox")]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=space, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=space, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": max_length, "tokenizer_class": "T5Tokenizer", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "extra_ids": 0}), encoding="utf-8")
    return T5TokenizerFast.from_pretrained(str(folder))


def _clip_config(tok: Any, hidden: int, layers: int, **kw: Any) -> Any:
    from transformers import CLIPTextConfig

    # The special ids come from the tokenizer. An eos_token_id of 2 would switch CLIPTextModel to
    # its legacy pooling (argmax of input ids) and only work by accident.
    base: dict[str, Any] = {
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id, "hidden_size": hidden, "intermediate_size": 37,
        "layer_norm_eps": 1e-5, "num_attention_heads": 4, "num_hidden_layers": layers,
        "vocab_size": 1000, "max_position_embeddings": CLIP_MAX_LENGTH}
    base.update(kw)
    return CLIPTextConfig(**base)


def _unet(**kw: Any) -> Any:
    """The SD-family UNet at toy size (seeded): one plain and one cross-attention block each way,
    4 latent channels in and out; ``kw`` sets the widths and the rest."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **kw)


def _vae(**kw: Any) -> Any:
    """The SD-family VAE at toy size (seeded): two blocks each way, RGB, 4 latent channels."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, **kw)


def _sd(work: Path, safety_checker: Any = None, feature_extractor: Any = None) -> Any:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    tok = clip_tokenizer(work / "tokenizer")
    unet = _unet(block_out_channels=(4, 8), layers_per_block=1, cross_attention_dim=8,
                 norm_num_groups=2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    vae = _vae(block_out_channels=[4, 8], norm_num_groups=2)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_config(tok, hidden=8, layers=2, num_attention_heads=2,
                                              intermediate_size=16))
    return StableDiffusionPipeline(
        unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok,
        safety_checker=safety_checker, feature_extractor=feature_extractor, image_encoder=None,
        requires_safety_checker=False)


def _sdxl(work: Path) -> Any:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = clip_tokenizer(work / "tokenizer")
    tok2 = clip_tokenizer(work / "tokenizer_2", pad_token="!")  # as the real SDXL
    unet = _unet(
        block_out_channels=(2, 4), layers_per_block=2, attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 × time embed dim + text_encoder_2 projection
        cross_attention_dim=64,  # hidden size of te1 + te2
        norm_num_groups=1)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    vae = _vae(block_out_channels=[32, 64], sample_size=128)
    torch.manual_seed(0)
    te = CLIPTextModel(_clip_config(tok, 32, 5, hidden_act="gelu", projection_dim=32))
    te2 = CLIPTextModelWithProjection(_clip_config(tok2, 32, 5, hidden_act="gelu",
                                                   projection_dim=32))
    return StableDiffusionXLPipeline(
        unet=unet, scheduler=scheduler, vae=vae, text_encoder=te, tokenizer=tok,
        text_encoder_2=te2, tokenizer_2=tok2, image_encoder=None, feature_extractor=None)


def _flux(work: Path, guidance_embeds: bool) -> Any:
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tok = clip_tokenizer(work / "tokenizer")
    tok2 = t5_tokenizer(work / "tokenizer_2")
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8], guidance_embeds=guidance_embeds)
    torch.manual_seed(0)
    te = CLIPTextModel(_clip_config(tok, 32, 5, hidden_act="gelu", projection_dim=32))
    torch.manual_seed(0)
    te2 = T5EncoderModel(T5Config(
        vocab_size=len(tok2), d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
        is_encoder_decoder=False, use_cache=False, pad_token_id=0, eos_token_id=1))
    torch.manual_seed(0)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,),
                        layers_per_block=1, latent_channels=1, norm_num_groups=1,
                        use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                        scaling_factor=1.5035,
                        # One block keeps the latent at full size: its mid-block self-attention
                        # would attend over every pixel (65,536 tokens at the 256 x 256 the
                        # catalog's smallest flux size; ~10 s of CPU per decode). The published
                        # VAE attends over 1/64 of the pixels; the tiny one need not attend.
                        mid_block_add_attention=False)
    # dev shifts its schedule with the resolution; schnell does not (as the published configs).
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0 if guidance_embeds else 1.0, use_dynamic_shifting=guidance_embeds,
        base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, text_encoder=te, text_encoder_2=te2, tokenizer=tok,
                        tokenizer_2=tok2, transformer=transformer, vae=vae, image_encoder=None,
                        feature_extractor=None)


def safety_checker(*, flag: bool) -> tuple[Any, Any]:
    """A tiny real ``StableDiffusionSafetyChecker`` and its feature extractor, for SD pipelines.

    It is diffusers' own checker (a CLIP vision tower and concept embeddings) at toy size. A random
    tower cannot tell unsafe content, so the concept thresholds decide: ``flag=True`` puts them
    below any cosine similarity (every image is flagged and blacked out, as the real checker does
    for unsafe content), ``flag=False`` above (nothing is). Pass both to :func:`build_tiny`::

        checker, extractor = safety_checker(flag=True)
        pipe = build_tiny("sd", work, safety_checker=checker, feature_extractor=extractor)
    """
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
                     "num_hidden_layers": 1, "vocab_size": 1000},
        vision_config={"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
                       "num_hidden_layers": 1, "image_size": 32, "patch_size": 8},
        projection_dim=8)
    checker = StableDiffusionSafetyChecker(config).eval()
    threshold = -2.0 if flag else 2.0  # cosine similarity lies in [-1, 1]
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32},
                                   crop_size={"height": 32, "width": 32})
    return checker, extractor


def build_tiny(kind: str, workdir: str | os.PathLike[str], **components: Any) -> Any:
    """Build a tiny random-weight pipeline of ``kind`` (see :data:`KINDS`), in memory, on CPU.

    ``workdir`` receives the tokenizer files. Extra ``components`` (SD only: ``safety_checker``,
    ``feature_extractor``) are handed to the pipeline's constructor. Weights are seeded, so two
    builds are identical.
    """
    work = Path(workdir)
    if kind == "sd":
        pipe = _sd(work, **components)
    elif components:
        raise TypeError(f"extra components are only supported for kind 'sd', not {kind!r}")
    elif kind == "sdxl":
        pipe = _sdxl(work)
    elif kind in ("flux-dev", "flux-schnell"):
        pipe = _flux(work, guidance_embeds=kind == "flux-dev")
    else:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}; one of {', '.join(KINDS)}")
    return eval_mode(pipe)


def eval_mode(pipe: Any) -> Any:
    """Put every model of ``pipe`` in eval mode, as ``from_pretrained`` does.

    Models built from configs start in training mode, where dropout (T5's rate is 0.1) makes
    every call draw different noise: a seed would not reproduce the image.
    """
    import torch

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def save_tiny(kind: str, directory: str | os.PathLike[str]) -> Path:
    """Build a tiny pipeline of ``kind`` and ``save_pretrained`` it (safetensors) to ``directory``.

    Returns the folder, ready for ``DiffusionPipeline.from_pretrained(folder,
    local_files_only=True)`` or ``LocalBackend(paths={model_id: folder})``.
    """
    import tempfile

    folder = Path(directory)
    with tempfile.TemporaryDirectory(prefix="mg-tiny-") as work:
        pipe = build_tiny(kind, work)
        pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
