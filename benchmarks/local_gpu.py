#!/usr/bin/env python3
"""Local backend speed: hand-written diffusers vs ``client.generate(provider="local")``.

Three ways to make the same image on the same pipeline object:

  A  hand-written diffusers: ``pipe(prompt=..., generator=..., ...)`` as a user writes it
  B  ``mg.Client(local=mg.LocalBackend(...)).generate(..., provider="local")``, the default
     path (must equal A pixel for pixel, and cost nothing: target B/A ≥ 1.0×)
  C  the same with ``LocalBackend(fast=True)``: fused QKV, channels_last, ``torch.compile``
     (regional on transformer blocks), prompt-embedding cache (target ≥ 1.5× on SDXL and FLUX);
     then C×K: K concurrent requests, which the fast path merges into one batched call

Speed does not depend on weight values, so the full-size SD1.5, SDXL and FLUX.1 architectures
are built from their published configs with random weights, directly on the GPU in the target
dtype: nothing is downloaded. Tokenizers are the offline ones from
``modelglass.testing.tiny_pipes``; they pad to the real lengths (77 CLIP, 512/256 T5 tokens), so
text-encoder cost is real. ``--tiny`` runs the same harness on tiny random pipelines on the CPU:
a check that the script runs, not a speed measurement.

  python benchmarks/local_gpu.py --model sdxl                  # 30 steps, 1024², bf16, CUDA
  python benchmarks/local_gpu.py --model flux-dev --iters 3    # 28 steps
  python benchmarks/local_gpu.py --model all --json $OUT/local_gpu.json
  python benchmarks/local_gpu.py --tiny --model all            # CPU dry run, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

import modelglass as mg
from modelglass.testing import tiny_pipes

PROMPT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
NEGATIVE = "blurry, low quality"

#: Benchmark name → (catalog model id, steps, resolution, guidance) as the model cards use them.
MODELS: dict[str, tuple[str, int, int, float]] = {
    "sd15": ("sd-1.5", 30, 512, 7.5),
    "sdxl": ("sdxl", 30, 1024, 5.0),
    "flux-schnell": ("flux-schnell", 4, 1024, 0.0),
    "flux-dev": ("flux-dev", 28, 1024, 3.5),
}
TINY_KIND = {"sd15": "sd", "sdxl": "sdxl", "flux-schnell": "flux-schnell", "flux-dev": "flux-dev"}

# -- published architecture configs (config.json of each repo; see research/local-backend.md §4.2)
SD15_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
SDXL_UNET = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
SD_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SDXL_VAE = dict(SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
FLUX_TRANSFORMER = {
    "attention_head_dim": 128,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
    "axes_dims_rope": [16, 56, 56],
}
FLUX_VAE = dict(
    SD_VAE,
    latent_channels=16,
    sample_size=1024,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
)
CLIP_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
CLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
T5_XXL = {
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "is_encoder_decoder": False,
    "use_cache": False,
}


@contextlib.contextmanager
def _on(device: str, dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def build_full(name: str, device: str, dtype: torch.dtype, work: Path) -> Any:
    """A full-size pipeline with random weights, created on ``device`` in ``dtype``."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    tok = tiny_pipes.clip_tokenizer(work / "tokenizer")
    # The special ids must be the tokenizer's, so the text encoder pools at the real EOS.
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    euler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    torch.manual_seed(0)
    with _on(device, dtype):
        if name == "sd15":
            return StableDiffusionPipeline(
                unet=UNet2DConditionModel(**SD15_UNET),
                vae=AutoencoderKL(**SD_VAE),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
                tokenizer=tok,
                scheduler=euler,
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        if name == "sdxl":
            tok2 = tiny_pipes.clip_tokenizer(work / "tokenizer_2", pad_token="!")
            ids2 = dict(ids, pad_token_id=tok2.pad_token_id)
            return StableDiffusionXLPipeline(
                unet=UNet2DConditionModel(**SDXL_UNET),
                vae=AutoencoderKL(**SDXL_VAE),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG, **ids2)),
                tokenizer=tok,
                tokenizer_2=tok2,
                scheduler=euler,
            )
        dev = name == "flux-dev"
        scheduler = FlowMatchEulerDiscreteScheduler(
            shift=3.0 if dev else 1.0,
            use_dynamic_shifting=dev,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
        return FluxPipeline(
            transformer=FluxTransformer2DModel(**FLUX_TRANSFORMER, guidance_embeds=dev),
            vae=AutoencoderKL(**FLUX_VAE),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)),
            text_encoder_2=T5EncoderModel(T5Config(**T5_XXL)),
            tokenizer=tok,
            tokenizer_2=tiny_pipes.t5_tokenizer(work / "tokenizer_2"),
            scheduler=scheduler,
        )


def tiny_catalog(model_id: str) -> mg.Catalog:
    """The shipped catalog with ``model_id``'s geometry opened to tiny sizes (tiny pipelines)."""
    from modelglass.catalog._schema import Geometry

    base = mg.Catalog.default()
    model = base.models[model_id]
    offers = [o.model_copy(update={"geometry": None}) for o in model.offers]
    tiny = model.model_copy(
        update={
            "offers": offers,
            "geometry": Geometry(multiple_of=16, min_side=32, max_side=256, default_size="64x64"),
        }
    )
    return mg.Catalog(base.settings, base.quality_axes, {**base.models, model_id: tiny})


# -- the three ways ------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hand_written_kwargs(name: str, args: argparse.Namespace, guidance: float) -> dict[str, Any]:
    """What a user passes for this model (the model card's call)."""
    kw: dict[str, Any] = {"num_inference_steps": args.steps, "width": args.res, "height": args.res}
    if name.startswith("flux"):
        kw["max_sequence_length"] = args.max_sequence_length
        if name == "flux-dev":
            kw["guidance_scale"] = guidance
    else:
        kw.update(guidance_scale=guidance, negative_prompt=NEGATIVE)
    return kw


def timed(fn: Any, *, images: int, warmup: int, iters: int, device: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    for i in range(warmup):
        fn(10_000 + i)
    sync(device)
    warm = time.perf_counter() - t0
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    last = None
    for i in range(iters):
        sync(device)
        t = time.perf_counter()
        last = fn(i)
        sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    row = {
        "warmup_s": round(warm, 2),
        "median_s": round(med, 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "images": images,
        "images_per_s": round(images / med, 3),
    }
    row["peak_gib"] = (
        round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None
    )
    return {"row": row, "last": last}


def _pixels(img: Any) -> np.ndarray:
    if hasattr(img, "data"):  # a modelglass GeneratedImage
        import io

        from PIL import Image

        img = Image.open(io.BytesIO(img.data))
    return np.asarray(img.convert("RGB")).astype(int)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    model_id, steps, res, guidance = MODELS[name]
    args.steps = args.steps_override or (2 if args.tiny else steps)
    args.res = args.res_override or (64 if args.tiny else res)
    args.max_sequence_length = 48 if args.tiny else (512 if name == "flux-dev" else 256)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    out: dict[str, Any] = {
        "model": name,
        "catalog_model": model_id,
        "steps": args.steps,
        "res": args.res,
        "dtype": args.dtype,
        "device": args.device,
        "tiny": args.tiny,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        if args.tiny:
            pipe = tiny_pipes.build_tiny(TINY_KIND[name], tmp)
            if (args.device, dtype) != ("cpu", torch.float32):
                pipe = pipe.to(args.device, dtype)
        else:
            pipe = tiny_pipes.eval_mode(build_full(name, args.device, dtype, Path(tmp)))
        pipe.set_progress_bar_config(disable=True)
        sync(args.device)
        out["build_s"] = round(time.perf_counter() - t, 1)
        out["params_b"] = round(
            sum(
                p.numel()
                for c in pipe.components.values()
                if isinstance(c, torch.nn.Module)
                for p in c.parameters()
            )
            / 1e9,
            3,
        )
        catalog = tiny_catalog(model_id) if args.tiny else mg.Catalog.default()
        kw = hand_written_kwargs(name, args, guidance)
        gen = lambda seed: [torch.Generator("cpu").manual_seed(seed)]
        request = {
            "model": model_id,
            "provider": "local",
            "size": f"{args.res}x{args.res}",
            "steps": args.steps,
            "quality": "thumbnail",
            "max_cost_usd": 100.0,
        }
        if name != "flux-schnell":
            request["cfg"] = guidance
        if not name.startswith("flux"):
            request["negative_prompt"] = NEGATIVE
        else:  # the same T5 length as the hand-written call (the model card's)
            request["provider_options"] = {
                "local": {"max_sequence_length": args.max_sequence_length}
            }

        # A: hand-written diffusers
        a = timed(
            lambda s: pipe(prompt=PROMPT, generator=gen(s), **kw).images,
            images=1,
            warmup=args.warmup,
            iters=args.iters,
            device=args.device,
        )
        out["runs"]["A hand-written diffusers"] = a["row"]
        ref = _pixels(a["last"][0])

        # B: client.generate, default path
        default = mg.Client(
            local=mg.LocalBackend(
                device=args.device, dtype=args.dtype_name, pipelines={model_id: pipe}
            ),
            catalog=catalog,
        )
        b = timed(
            lambda s: default.generate(PROMPT, seed=s, **request).images,
            images=1,
            warmup=args.warmup,
            iters=args.iters,
            device=args.device,
        )
        out["runs"]["B client.generate (default)"] = b["row"]
        out["default_equals_hand_written"] = bool(np.array_equal(_pixels(b["last"][0]), ref))

        # C: client.generate, fast path (optimises `pipe` in place, so it runs last)
        backend = mg.LocalBackend(
            device=args.device,
            dtype=args.dtype_name,
            fast=True,
            pipelines={model_id: pipe},
            compile=args.compile,
            compile_options=args.compile_options,
        )
        fast = mg.Client(local=backend, catalog=catalog)
        c = timed(
            lambda s: fast.generate(PROMPT, seed=s, **request).images,
            images=1,
            warmup=args.warmup + 1,
            iters=args.iters,
            device=args.device,
        )
        out["runs"]["C client.generate (fast)"] = c["row"]
        got = _pixels(c["last"][0])
        out["fast_drift_max_8bit"] = int(np.abs(got - ref).max())
        out["fast_drift_mean_8bit"] = round(float(np.abs(got - ref).mean()), 4)
        out["fast_options"] = list(backend._entry(catalog.offer(f"{model_id}@local")).fast)

        # C×K: K concurrent requests (different prompts and seeds), merged into one call
        k = args.concurrency

        def together(seed: int) -> list[Any]:
            results: list[Any] = [None] * k

            def one(i: int) -> None:
                results[i] = fast.generate(
                    f"{PROMPT}, variation {i}", seed=seed * k + i, **request
                ).images[0]

            threads = [threading.Thread(target=one, args=(i,)) for i in range(k)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            return results

        if k > 1:
            ck = timed(
                together, images=k, warmup=1, iters=max(1, args.iters // 2), device=args.device
            )
            out["runs"][f"C×{k} fast, {k} concurrent requests"] = ck["row"]
    base = out["runs"]["A hand-written diffusers"]["images_per_s"]
    for row in out["runs"].values():
        row["x_hand_written"] = round(row["images_per_s"] / base, 3)
    return out


def print_table(result: dict[str, Any]) -> None:
    r = result
    label = "CPU DRY RUN (tiny random pipelines; not a speed figure)" if r["tiny"] else r["device"]
    print(
        f"\n{r['model']} ({r['params_b']} B params, {r['dtype']}, {r['steps']} steps, "
        f"{r['res']}², {label}); build {r['build_s']} s"
    )
    print(
        f"  {'variant':42} {'s/call':>9} {'images/s':>9} {'× A':>7} {'peak GiB':>9} {'warm-up s':>10}"
    )
    for name, row in r["runs"].items():
        peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
        print(
            f"  {name:42} {row['median_s']:9.4f} {row['images_per_s']:9.3f} "
            f"{row['x_hand_written']:6.2f}× {peak:>9} {row['warmup_s']:10.2f}"
        )
    print(
        f"  default == hand-written, pixel for pixel: {r['default_equals_hand_written']}; "
        f"fast-path drift: max {r['fast_drift_max_8bit']}/255, mean {r['fast_drift_mean_8bit']}"
        f"/255; fast options: {', '.join(r['fast_options'])}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sdxl", choices=[*MODELS, "all"])
    ap.add_argument("--tiny", action="store_true", help="tiny random pipelines on the CPU")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny")
    ap.add_argument(
        "--dtype",
        default=None,
        choices=["bf16", "fp16", "fp32"],
        help="default: bf16, or fp32 with --tiny",
    )
    ap.add_argument("--steps", dest="steps_override", type=int, default=None)
    ap.add_argument("--res", dest="res_override", type=int, default=None)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=4, help="requests at once for C×K (1: skip)")
    ap.add_argument("--compile", default="auto", choices=["auto", "none", "regional", "full"])
    ap.add_argument(
        "--compile-backend",
        default=None,
        help="torch.compile backend (default inductor; 'eager' checks plumbing on CPU)",
    )
    ap.add_argument("--compile-mode", default=None, help="e.g. max-autotune-no-cudagraphs")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    args.dtype = args.dtype or ("fp32" if args.tiny else "bf16")
    args.dtype_name = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[args.dtype]
    args.compile_options = {
        k: v for k, v in (("backend", args.compile_backend), ("mode", args.compile_mode)) if v
    }
    if args.tiny and args.compile == "auto" and not args.compile_backend:
        args.compile, args.compile_options = "regional", {"backend": "eager"}
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("no CUDA GPU here; run with --tiny for a CPU dry run of the harness")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(max(1, torch.get_num_threads()))
    names = list(MODELS) if args.model == "all" else [args.model]
    env = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "modelglass": mg.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    import diffusers

    env["diffusers"] = diffusers.__version__
    print(json.dumps(env))
    results = []
    for name in names:
        result = bench_model(name, args)
        print_table(result)
        results.append(result)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=1))


if __name__ == "__main__":
    main()
