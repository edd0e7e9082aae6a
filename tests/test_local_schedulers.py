"""Local backend: unified sampler names → diffusers schedulers, per pipeline family."""

from __future__ import annotations

import numpy as np
import pytest
from _local_fixtures import EPS_SAMPLERS, PIPELINE, offer_view, pixels, plan, tiny_folder

from modelglass.errors import InvalidRequest
from modelglass.plan import Planned
from modelglass.providers.local import LocalBackend, scheduler_for
from modelglass.result import FateKind

EXPECTED_EPS = {
    "euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler", "dpmpp_2m_karras": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler", "unipc": "UniPCMultistepScheduler", "lcm": "LCMScheduler",
}
EXPECTED_FLOW = {"euler": "FlowMatchEulerDiscreteScheduler",
                 "dpmpp_2m": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler"}


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend(device="cpu", paths={k: tiny_folder(k) for k in PIPELINE})


def test_sampler_table_maps_karras_to_dpm_solver_with_karras_sigmas():
    assert scheduler_for("dpmpp_2m_karras", "eps").overrides == {"use_karras_sigmas": True}
    assert scheduler_for("dpmpp_2m", "eps").overrides == {}
    flow = scheduler_for("dpmpp_2m", "flow").overrides
    assert flow == {"use_flow_sigmas": True, "prediction_type": "flow_prediction",
                    "use_dynamic_shifting": True}


def test_every_sd_sampler_runs_its_scheduler_and_they_differ(backend):
    view = offer_view("sd", "sd")
    images = {}
    for sampler in EPS_SAMPLERS:
        out = backend.generate(plan(view, backend, sampler=sampler, cfg=6, steps=3), timeout_s=60)
        assert out.extra["scheduler"] == EXPECTED_EPS[sampler], sampler
        images[sampler] = pixels(out.images[0])
    assert not np.array_equal(images["dpmpp_2m"], images["dpmpp_2m_karras"])  # the Karras flag acts
    assert not np.array_equal(images["euler"], images["euler_a"])


def test_flux_runs_flow_matching_schedulers_only(backend):
    view = offer_view("flux-dev", "flux-dev")
    for sampler, cls in EXPECTED_FLOW.items():
        out = backend.generate(plan(view, backend, sampler=sampler, steps=3), timeout_s=60)
        assert out.extra["scheduler"] == cls
        assert pixels(out.images[0]).std() > 0


@pytest.mark.parametrize("sampler", ["euler_a", "dpmpp_2m_karras", "ddim", "lcm"])
def test_a_sampler_that_does_not_apply_to_flux_is_refused_up_front(backend, sampler):
    view = offer_view("flux-dev", "flux-dev")
    planned = Planned(prompt="a fox", width=64, height=64, n=1, steps=2, seeds=(0,),
                      sampler=sampler)
    with pytest.raises(InvalidRequest, match="flow-matching"):
        backend.build_payload(planned, view)


def test_the_planner_drops_a_sampler_the_offer_does_not_list(backend):
    call = plan(offer_view("flux-dev", "flux-dev"), backend, sampler="euler_a")
    assert call.fate("sampler").kind is FateKind.dropped
    assert "scheduler" not in call.payload


def test_a_sampler_swap_lasts_one_call_and_the_original_scheduler_comes_back(backend):
    view = offer_view("sd", "sd")
    pipe = backend.pipeline(view)
    original = pipe.scheduler
    before = pixels(backend.generate(plan(view, backend, cfg=6), timeout_s=60).images[0])
    backend.generate(plan(view, backend, cfg=6, sampler="euler_a"), timeout_s=60)
    assert pipe.scheduler is original
    after = backend.generate(plan(view, backend, cfg=6), timeout_s=60)
    assert after.extra["scheduler"] == type(original).__name__ == "DDIMScheduler"
    assert np.array_equal(before, pixels(after.images[0]))
