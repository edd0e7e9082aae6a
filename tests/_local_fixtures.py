"""Shared helpers for the local-backend tests: tiny pipelines on disk and offers that point at them.

The tiny pipelines are built once per test session (``tiny_folder`` is cached at module level,
so every test file that imports it shares the same folders) and loaded through the real
``from_pretrained`` path by ``LocalBackend(paths=...)``.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import torch

from modelglass.catalog import OfferView
from modelglass.catalog._schema import Controls, Geometry, Licence, Model, Offer, Price

# CPU results are bit-identical run to run only at a fixed thread count. One thread: tiny models
# gain nothing from more, and OpenMP threads spin when other processes share the cores (4× the
# CPU time on a loaded 2-core CI machine).
torch.set_num_threads(1)

_ROOT = Path(tempfile.mkdtemp(prefix="mg-local-tests-"))
atexit.register(shutil.rmtree, _ROOT, True)

PIPELINE = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
            "flux-dev": "FluxPipeline", "flux-schnell": "FluxPipeline"}
EPS_SAMPLERS = ["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "unipc", "lcm"]


@functools.cache
def tiny_folder(kind: str) -> Path:
    """A saved tiny pipeline of ``kind`` (built on first use, shared by every test)."""
    from modelglass.testing.tiny_pipes import save_tiny

    return save_tiny(kind, _ROOT / kind)


def offer_view(model_id: str, kind: str, *, controls: Controls | None = None,
               defaults: dict[str, Any] | None = None, **offer_kw: Any) -> OfferView:
    """A local catalog offer for a tiny pipeline, with toy geometry and the real control kinds.

    ``controls`` and ``defaults`` replace the offer's (e.g. a Turbo-like offer: guidance none).
    """
    flux = kind.startswith("flux")
    if controls is not None:
        pass
    elif kind == "flux-schnell":
        controls = Controls(negative_prompt="none", guidance={"kind": "none"},
                            steps={"min": 1, "max": 8, "default": 2}, seed=True, max_images_per_call=4,
                            samplers=["euler", "dpmpp_2m", "unipc"])
    elif flux:
        controls = Controls(negative_prompt="true-cfg-extra",
                            guidance={"kind": "distilled", "min": 0, "max": 10, "default": 3.5},
                            steps={"min": 1, "max": 50, "default": 2}, seed=True, max_images_per_call=4,
                            samplers=["euler", "dpmpp_2m", "unipc"])
    else:
        controls = Controls(negative_prompt="native",
                            guidance={"kind": "true-cfg", "min": 0, "max": 20,
                                      "default": 7.5 if kind == "sd" else 5.0},
                            steps={"min": 1, "max": 50, "default": 2}, seed=True, max_images_per_call=4,
                            samplers=EPS_SAMPLERS)
    geometry = Geometry(multiple_of=16 if flux else 8, min_side=64, max_side=256,
                        default_size="64x64")
    offer = Offer(provider="local", endpoint=f"modelglass-tests/tiny-{kind}",
                  pipeline=PIPELINE[kind],
                  price=Price(kind="gpu_seconds", seconds=6.5, at_steps=50),
                  as_of=dt.date(2026, 11, 22), source="tests",
                  defaults=defaults if defaults is not None
                  else ({"max_sequence_length": 48} if flux else {}), **offer_kw)
    model = Model(name=f"tiny {kind}", family=kind, licence=Licence(id="test"),
                  controls=controls, geometry=geometry, offers=[offer])
    return OfferView(model_id, model, offer, model.controls.merged(offer.controls),
                     model.geometry.merged(offer.geometry), 2.0)


def plan(view: OfferView, backend: Any = None, **request: Any) -> Any:
    """``plan_call`` for a request on ``view`` (no size: the offer's tiny default size)."""
    import modelglass as mg

    request.setdefault("prompt", "a photo of a fox")
    request.setdefault("seed", 0)
    return mg.plan_call(mg.ImageRequest(**request), view, provider=backend)


def pixels(raw_image: Any) -> Any:
    """The RGB pixels of a RawImage (or GeneratedImage) as a numpy array."""
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(raw_image.data)).convert("RGB"))


def hand_written(folder: Path, kind: str, **kwargs: Any) -> list[Any]:
    """What a user gets writing the diffusers call by hand: a fresh pipeline, PIL images."""
    import diffusers

    pipe = getattr(diffusers, PIPELINE[kind]).from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe(**kwargs).images


def tiny_catalog(*kinds: str) -> Any:
    """The shipped catalog's settings and quality axes with one local model per tiny ``kind``
    (model id = kind, offer ``<kind>@local`` pointing at ``modelglass-tests/tiny-<kind>``)."""
    from modelglass.catalog import Catalog

    base = Catalog.default()
    return Catalog(base.settings, base.quality_axes, {k: offer_view(k, k).model for k in kinds})
