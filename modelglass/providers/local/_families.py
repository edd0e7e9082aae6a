"""Pipeline families and the payload a local call sends. Pure: no torch, no diffusers import.

A *family* is what a diffusers pipeline class means for the controls: whether the negative prompt
rides on classifier-free guidance (SD, SDXL, SD3, PixArt) or needs FLUX's ``true_cfg_scale``
second pass, whether guidance is CFG or an embedding (FLUX dev), and which schedulers can drive it
(noise-prediction "eps" schedulers, or flow-matching ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ...errors import InvalidRequest
from ...result import Fate, FateKind

if TYPE_CHECKING:
    from ...catalog import OfferView
    from ...plan import Planned

__all__ = [
    "LOAD_KEYS",
    "PAYLOAD_ONLY_KEYS",
    "SAMPLERS",
    "SCHEDULER_CONFIG_KEYS",
    "Family",
    "SchedulerChoice",
    "build_local_payload",
    "family_for",
    "scheduler_for",
]

SchedulerKind = Literal["eps", "flow"]


@dataclass(frozen=True)
class Family:
    """How one kind of pipeline takes the controls."""

    name: str
    #: "cfg": negative prompt works through classifier-free guidance (guidance_scale > 1);
    #: "true_cfg": only through ``true_cfg_scale`` (a second denoiser pass); "none": not at all.
    negative: Literal["cfg", "true_cfg", "none"]
    #: "cfg": guidance_scale is classifier-free; "embedded": fed to the denoiser as an embedding;
    #: "true_cfg": the CFG scale is ``true_cfg_scale`` (``guidance_scale`` is for distilled
    #: checkpoints only), and CFG runs only with a negative prompt (Qwen-Image).
    guidance: Literal["cfg", "embedded", "true_cfg"]
    schedulers: SchedulerKind
    #: encode_prompt → prompt_embeds round trip is implemented (fast path cache and batching).
    embeddings: bool = False


FAMILIES: dict[str, Family] = {
    "StableDiffusionPipeline": Family("sd", "cfg", "cfg", "eps", embeddings=True),
    "StableDiffusionXLPipeline": Family("sdxl", "cfg", "cfg", "eps", embeddings=True),
    "FluxPipeline": Family("flux", "true_cfg", "embedded", "flow", embeddings=True),
    "StableDiffusion3Pipeline": Family("sd3", "cfg", "cfg", "flow"),
    "PixArtSigmaPipeline": Family("pixart", "cfg", "cfg", "eps"),
    "PixArtAlphaPipeline": Family("pixart", "cfg", "cfg", "eps"),
    "Flux2Pipeline": Family("flux2", "none", "embedded", "flow"),
    "QwenImagePipeline": Family("qwen", "true_cfg", "true_cfg", "flow"),
    "HiDreamImagePipeline": Family("hidream", "cfg", "cfg", "flow"),
    "SanaPipeline": Family("sana", "cfg", "cfg", "flow"),
    "LatentConsistencyModelPipeline": Family("lcm", "none", "embedded", "eps"),
}
_GENERIC = Family("generic", "cfg", "cfg", "eps")


def family_for(pipeline_class: str | None) -> Family:
    """The family of a diffusers pipeline class name (a generic CFG family when unknown)."""
    if pipeline_class and pipeline_class in FAMILIES:
        return FAMILIES[pipeline_class]
    return _GENERIC


@dataclass(frozen=True)
class SchedulerChoice:
    """A diffusers scheduler class name and the config overrides a unified sampler maps to."""

    cls: str
    overrides: dict[str, Any]


_EPS: dict[str, SchedulerChoice] = {
    "euler": SchedulerChoice("EulerDiscreteScheduler", {}),
    "euler_a": SchedulerChoice("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": SchedulerChoice("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": SchedulerChoice("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "ddim": SchedulerChoice("DDIMScheduler", {}),
    "unipc": SchedulerChoice("UniPCMultistepScheduler", {}),
    "lcm": SchedulerChoice("LCMScheduler", {}),
}
# Flow-matching pipelines pass ``mu`` (a resolution-dependent shift) to set_timesteps, so the
# multistep solvers need flow sigmas and dynamic shifting to accept it.
_FLOW: dict[str, SchedulerChoice] = {
    "euler": SchedulerChoice("FlowMatchEulerDiscreteScheduler", {}),
    "dpmpp_2m": SchedulerChoice("DPMSolverMultistepScheduler", {
        "use_flow_sigmas": True, "prediction_type": "flow_prediction",
        "use_dynamic_shifting": True}),
    "unipc": SchedulerChoice("UniPCMultistepScheduler", {
        "use_flow_sigmas": True, "prediction_type": "flow_prediction",
        "use_dynamic_shifting": True}),
}
#: Unified sampler name → scheduler, per scheduler kind.
SAMPLERS: dict[SchedulerKind, dict[str, SchedulerChoice]] = {"eps": _EPS, "flow": _FLOW}


def scheduler_for(sampler: str, kind: SchedulerKind, *, where: str = "") -> SchedulerChoice:
    """The scheduler for a unified sampler name on a pipeline of scheduler ``kind``.

    Raises :class:`InvalidRequest` when the sampler does not apply (e.g. ``euler_a`` on FLUX,
    which only runs flow-matching schedulers).
    """
    table = SAMPLERS[kind]
    if sampler not in table:
        what = "flow-matching" if kind == "flow" else "noise-prediction"
        raise InvalidRequest(
            f"sampler {sampler!r} does not apply to {where or 'this pipeline'} ({what} "
            f"schedulers only); use one of {', '.join(table)}, or leave sampler unset",
            field="sampler")
    return table[sampler]


#: Payload keys that are modelglass's, not arguments of the pipeline's ``__call__``.
PAYLOAD_ONLY_KEYS = frozenset({"model", "pipeline", "seeds", "sampler", "scheduler",
                               "scheduler_config", "load"})

#: Offer defaults that describe how to assemble the pipeline at load time (catalog data such as
#: ``lora: latent-consistency/lcm-lora-sdxl``), carried in the payload under ``load``.
LOAD_KEYS = frozenset({"lora", "base_model", "unet_weights", "llama_model"})

#: Offer defaults that are scheduler settings, not call arguments (``timestep_spacing:
#: trailing`` for SDXL-Turbo, ``shift`` for HiDream), carried under ``scheduler_config``.
SCHEDULER_CONFIG_KEYS = frozenset({
    "timestep_spacing", "shift", "use_dynamic_shifting", "use_karras_sigmas", "use_flow_sigmas",
    "use_exponential_sigmas", "use_beta_sigmas", "prediction_type", "steps_offset",
    "rescale_betas_zero_snr", "final_sigmas_type", "algorithm_type", "flow_shift"})

#: The negative prompt Qwen-Image's reference code sends when the user gives none: its pipeline
#: runs CFG only with a negative prompt, so without one ``cfg`` would do nothing.
_EMPTY_NEGATIVE = " "


def build_local_payload(planned: Planned, offer: OfferView) -> tuple[dict[str, Any], dict[str, Fate]]:
    """The diffusers call for ``planned`` on ``offer``, as a JSON-ready dict, and fate overrides.

    Keys are the pipeline's own argument names (``prompt``, ``negative_prompt``,
    ``guidance_scale``, ``true_cfg_scale``, ``num_inference_steps``, ``width``, ``height``,
    ``num_images_per_prompt``) plus modelglass's ``model``, ``pipeline``, ``seeds`` (one per
    image), ``sampler``/``scheduler``/``scheduler_config`` and ``load`` (how the offer's pipeline
    is assembled). Controls the family does not take are left out, with a fate saying why.

    The catalog's guidance kind drives guidance: ``true-cfg`` and ``distilled`` send the planned
    scale (as ``guidance_scale``, or ``true_cfg_scale`` for Qwen-Image); ``none`` sends
    ``guidance_scale=0`` to CFG pipelines, because their default (5 to 7.5) would run CFG on a
    checkpoint distilled to work without it (SDXL-Turbo, SD3.5 Large Turbo, HiDream dev).
    """
    from ...catalog._schema import GuidanceKind

    fam = family_for(offer.offer.pipeline)
    fates: dict[str, Fate] = {}
    pipeline = offer.offer.pipeline or "DiffusionPipeline"
    payload: dict[str, Any] = {"model": offer.endpoint, "pipeline": pipeline,
                               "prompt": planned.prompt}
    guidance_kind = offer.controls.guidance.kind if offer.controls.guidance else None
    scale = float(planned.guidance) if planned.guidance is not None else None
    if guidance_kind is GuidanceKind.none:
        if fam.guidance == "cfg":
            payload["guidance_scale"] = 0.0
    elif scale is not None:
        payload["true_cfg_scale" if fam.guidance == "true_cfg" else "guidance_scale"] = scale

    _negative_prompt(planned, fam, pipeline, scale, payload, fates)

    if planned.steps is not None:
        payload["num_inference_steps"] = int(planned.steps)
    payload["width"] = int(planned.width)
    payload["height"] = int(planned.height)
    payload["num_images_per_prompt"] = int(planned.n)
    if planned.seeds is not None:
        payload["seeds"] = [int(s) for s in planned.seeds]

    _defaults_and_options(planned, offer, fam, pipeline, payload)
    return payload, fates


def _negative_prompt(planned: Planned, fam: Family, pipeline: str, scale: float | None,
                     payload: dict[str, Any], fates: dict[str, Fate]) -> None:
    """The negative prompt into ``payload`` where the family's guidance makes it act, else a
    ``dropped`` fate saying why."""
    negative = planned.negative_prompt
    if negative is not None:
        if fam.negative == "true_cfg":
            # The negative prompt acts through true_cfg_scale > 1: the CFG scale itself
            # (Qwen-Image), or a second pass the plan enabled and priced (FLUX).
            true_scale = scale if fam.guidance == "true_cfg" else planned.true_cfg
            if true_scale is not None and true_scale > 1:
                payload["negative_prompt"] = negative
                payload["true_cfg_scale"] = float(true_scale)
            else:
                fates["negative_prompt"] = Fate(
                    "negative_prompt", FateKind.dropped, negative, None,
                    f"{pipeline} ignores a negative prompt unless true_cfg_scale > 1 "
                    "(a second pass per step); the plan did not enable it")
        elif fam.negative == "cfg":
            g = payload.get("guidance_scale")
            if g is not None and g <= 1:
                fates["negative_prompt"] = Fate(
                    "negative_prompt", FateKind.dropped, negative, None,
                    f"guidance_scale {g:g} ≤ 1 turns classifier-free guidance off, so the "
                    "negative prompt would have no effect; raise cfg above 1 to use it")
            else:
                payload["negative_prompt"] = negative
        else:
            fates["negative_prompt"] = Fate(
                "negative_prompt", FateKind.dropped, negative, None,
                f"{pipeline} takes no negative prompt")
    elif fam.guidance == "true_cfg" and (payload.get("true_cfg_scale") or 0) > 1:
        payload["negative_prompt"] = _EMPTY_NEGATIVE


def _defaults_and_options(planned: Planned, offer: OfferView, fam: Family, pipeline: str,
                          payload: dict[str, Any]) -> None:
    """The offer's defaults (load-time recipe, scheduler settings, call arguments), the
    sampler, then the user's ``provider_options["local"]``, into ``payload``."""
    # Offer defaults: load-time recipe, scheduler settings, then call arguments (e.g. FLUX
    # schnell's max_sequence_length=256); the user's provider_options["local"] last.
    load: dict[str, Any] = {}
    scheduler_config: dict[str, Any] = {}
    for key, value in offer.offer.defaults.items():
        if key in LOAD_KEYS:
            load[key] = value
        elif key in SCHEDULER_CONFIG_KEYS:
            scheduler_config[key] = value
        elif key == "scheduler":
            payload["scheduler"] = str(value)
        else:
            payload[key] = value
    if planned.sampler is not None:
        choice = scheduler_for(planned.sampler, fam.schedulers, where=f"{offer.key} ({pipeline})")
        payload["sampler"] = planned.sampler
        payload["scheduler"] = choice.cls
        scheduler_config.update(choice.overrides)
    for key, value in planned.options.items():
        if key in PAYLOAD_ONLY_KEYS - {"scheduler_config"}:
            raise InvalidRequest(f"provider option {key!r} is reserved by modelglass",
                                 field=f"provider_options.local.{key}")
        if key == "scheduler_config":
            scheduler_config.update(value)
        else:
            payload[key] = value
    if scheduler_config:
        payload["scheduler_config"] = scheduler_config
    if load:
        payload["load"] = load
