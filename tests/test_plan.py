"""Planning: one fate per requested control, geometry snapping, guidance kinds, seeds, strict."""

from __future__ import annotations

import random

import pytest
from _catalogs import catalog, model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelglass as mg
from modelglass.catalog._schema import Geometry
from modelglass.plan import geometry_fits, plan_call, snap_size
from modelglass.result import FateKind


def offer(**kw):  # type: ignore[no-untyped-def]
    return catalog({"m": model(**kw)}).offer("m@fal")


def req(**kw):  # type: ignore[no-untyped-def]
    kw.setdefault("prompt", "a fox in the snow")
    return mg.ImageRequest(**kw)


def test_every_requested_control_gets_exactly_one_fate() -> None:
    call = plan_call(req(negative_prompt="blurry", cfg=6, steps=20, seed=3, size="1024x1024", n=2,
                         sampler="euler"), offer())
    assert [f.control for f in call.fates] == ["prompt", "negative_prompt", "cfg", "steps", "seed",
                                               "size", "n", "sampler"]
    assert all(f.kind is FateKind.honored for f in call.fates if f.control not in ("size", "sampler"))
    sampler = call.fate("sampler")  # the test offer lists samplers but names no wire field for one
    assert sampler is not None and sampler.kind is FateKind.dropped and "no request field" in sampler.reason
    size = call.fate("size")
    assert size is not None and size.kind is FateKind.mapped and size.applied == "square_hd"
    assert call.payload["image_size"] == "square_hd"


def test_unrequested_controls_get_no_fate_but_offer_defaults_apply() -> None:
    call = plan_call(req(), offer())
    assert [f.control for f in call.fates] == ["prompt"]
    assert call.planned.steps == 30 and call.planned.guidance == 7


def test_steps_and_cfg_are_clamped_with_the_delta() -> None:
    call = plan_call(req(cfg=30, steps=80), offer())
    cfg, steps = call.fate("cfg"), call.fate("steps")
    assert cfg is not None and cfg.kind is FateKind.approximated and cfg.applied == 20
    assert "clamped from 30 to 20" in (cfg.delta or "")
    assert steps is not None and steps.applied == 50 and call.planned.steps == 50


def test_distilled_guidance_maps_cfg_to_the_embedded_scale() -> None:
    o = offer(controls={"negative_prompt": "true-cfg-extra", "seed": True,
                        "guidance": {"kind": "distilled", "min": 1, "max": 10, "default": 3.5},
                        "steps": {"min": 1, "max": 50, "default": 28}})
    call = plan_call(req(cfg=5), o)
    fate = call.fate("cfg")
    assert fate is not None and fate.kind is FateKind.mapped and "embedded" in fate.reason
    assert call.planned.guidance == 5 and call.planned.true_cfg is None


def test_negative_prompt_on_flux_style_model_needs_true_cfg_and_doubles_cost() -> None:
    controls = {"negative_prompt": "true-cfg-extra", "seed": True,
                "guidance": {"kind": "distilled", "min": 1, "max": 10, "default": 3.5}}
    priced = [{"provider": "local", "endpoint": "org/flux", "as_of": "2026-11-01", "source": "T",
               "pipeline": "FluxPipeline",
               "price": {"kind": "gpu_seconds", "seconds": 10, "at_steps": 28}}]
    o = catalog({"m": model(controls=controls, offers=priced)}).offer("m@local")
    plain = plan_call(req(), o)
    with_neg = plan_call(req(negative_prompt="blurry"), o)
    fate = with_neg.fate("negative_prompt")
    assert fate is not None and fate.kind is FateKind.mapped and "twice" in fate.reason
    assert with_neg.planned.true_cfg == 4.0 and with_neg.planned.negative_prompt == "blurry"
    assert plain.estimate.usd is not None and with_neg.estimate.usd is not None
    assert with_neg.estimate.usd == pytest.approx(2 * plain.estimate.usd)


def test_no_guidance_model_drops_cfg_with_a_reason() -> None:
    o = offer(controls={"negative_prompt": "none", "guidance": {"kind": "none"}, "seed": True})
    call = plan_call(req(cfg=7, negative_prompt="x"), o)
    assert call.fate("cfg").kind is FateKind.dropped  # type: ignore[union-attr]
    assert "distilled" in call.fate("cfg").reason  # type: ignore[union-attr]
    assert call.fate("negative_prompt").kind is FateKind.dropped  # type: ignore[union-attr]
    assert call.planned.guidance is None and call.planned.negative_prompt is None


def test_negative_prompt_is_dropped_when_cfg_turns_guidance_off() -> None:
    call = plan_call(req(cfg=1.0, negative_prompt="blurry"), offer())
    fate = call.fate("negative_prompt")
    assert fate is not None and fate.kind is FateKind.dropped and "≤ 1" in fate.reason


def test_seed_given_gives_each_image_seed_plus_i() -> None:
    call = plan_call(req(seed=2**32 - 2, n=3), offer())
    assert call.planned.seeds == (2**32 - 2, 2**32 - 1, 0)
    assert not call.seed_drawn


def test_no_seed_draws_one_and_reports_it() -> None:
    call = plan_call(req(n=2), offer(), rng=random.Random(1))
    assert call.seed_drawn and call.planned.seeds is not None
    assert call.planned.seeds[1] == (call.planned.seeds[0] + 1) % 2**32
    assert call.fate("seed") is None  # not requested, so no fate; the seed is still reported


def test_seed_is_dropped_where_the_provider_has_none() -> None:
    o = offer(controls={"seed": False, "negative_prompt": "none"})
    call = plan_call(req(seed=7), o)
    assert call.fate("seed").kind is FateKind.dropped and call.planned.seeds is None  # type: ignore[union-attr]


def test_fixed_size_list_snaps_nearest_aspect_first_then_area() -> None:
    geo = Geometry(sizes=["1024x1024", "1536x1024", "1024x1536"])
    assert snap_size(geo, 1800, 1200) == snap_size(geo, 1536, 1024)
    assert (snap_size(geo, 600, 900).width, snap_size(geo, 600, 900).height) == (1024, 1536)
    o = offer(geometry={"sizes": ["1024x1024", "1536x1024", "1024x1536"]})
    call = plan_call(req(size="1600x900"), o)
    fate = call.fate("size")
    assert fate is not None and fate.kind is FateKind.approximated
    assert fate.applied == "1536x1024" and "aspect off by" in (fate.delta or "")


def test_aspect_ratio_table_maps_the_size_to_a_ratio() -> None:
    o = offer(geometry={"aspect_ratios": {"1:1": "1024x1024", "16:9": "1344x768", "9:16": "768x1344"}})
    call = plan_call(req(aspect_ratio="16:9"), o)
    assert call.planned.aspect_ratio == "16:9" and (call.planned.width, call.planned.height) == (1344, 768)
    assert call.fate("size").kind is FateKind.mapped  # type: ignore[union-attr]
    off = plan_call(req(aspect_ratio="21:9"), o)
    assert off.fate("size").kind is FateKind.approximated  # type: ignore[union-attr]
    assert off.planned.aspect_ratio == "16:9"


def test_free_range_respects_multiple_and_megapixels() -> None:
    geo = Geometry(multiple_of=16, min_side=256, max_side=1440, max_megapixels=2.0)
    c = snap_size(geo, 4000, 3000)
    assert c.width % 16 == 0 and c.height % 16 == 0
    assert c.width * c.height <= 2.0e6 and max(c.width, c.height) <= 1440
    assert abs(c.width / c.height - 4 / 3) < 0.02


def test_print_size_needs_upscale_when_the_offer_is_too_small() -> None:
    o = offer(geometry={"multiple_of": 8, "max_side": 2048, "max_megapixels": 4.2})
    call = plan_call(req(quality="print", print_size="8x10in", dpi=300), o)
    assert call.upscale is not None and call.upscale["to"] == "2400x3000"
    fate = call.fate("size")
    assert fate is not None and fate.kind is FateKind.approximated and "upscale" in fate.reason


def test_print_size_that_fits_is_honored_without_upscale() -> None:
    o = offer(geometry={"multiple_of": 8, "max_side": 4096, "max_megapixels": 16})
    call = plan_call(req(quality="print", print_size="8x10in", dpi=300), o)
    assert call.upscale is None and call.fate("size").kind is FateKind.honored  # type: ignore[union-attr]
    assert (call.planned.width, call.planned.height) == (2400, 3000)


def test_no_geometry_uses_the_quality_axis_target_size() -> None:
    assert (plan_call(req(quality="thumbnail"), offer()).planned.width) == 512
    assert (plan_call(req(quality="draft"), offer()).planned.width) == 1024


def test_n_is_split_by_the_offer_images_per_call() -> None:
    call = plan_call(req(n=10), offer())
    assert call.chunks == [4, 4, 2]
    assert call.fate("n").kind is FateKind.mapped  # type: ignore[union-attr]
    assert call.planned.chunk(4, 4).seeds == call.planned.seeds[4:8]  # type: ignore[index]


def test_long_prompt_is_truncated_with_a_fate() -> None:
    o = offer(controls={"max_prompt_chars": 10, "seed": True})
    call = plan_call(req(prompt="x" * 25), o)
    fate = call.fate("prompt")
    assert fate is not None and fate.kind is FateKind.approximated and "25 to 10" in (fate.delta or "")
    assert call.planned.prompt == "x" * 10


def test_strict_request_refuses_approximated_aspect() -> None:
    o = offer(geometry={"sizes": ["1024x1024"]})
    with pytest.raises(mg.InvalidRequest, match="strict=True") as e:
        plan_call(req(size="1536x1024", strict=True), o)
    assert e.value.field == "size"


def test_strict_request_accepts_mapped_controls() -> None:
    o = offer(geometry={"aspect_ratios": {"1:1": "1024x1024", "16:9": "1344x768"}})
    call = plan_call(req(aspect_ratio="16:9", strict=True), o)
    assert call.fate("size").kind is FateKind.mapped  # type: ignore[union-attr]


def test_unknown_price_estimates_none_not_zero() -> None:
    o = offer(offers=[{"provider": "fal", "endpoint": "x", "as_of": "2026-11-01", "source": "T",
                       "price": {"kind": "unknown"}}])
    assert plan_call(req(), o).estimate.usd is None


# -- properties ------------------------------------------------------------------------------------
geometries = st.one_of(
    st.builds(lambda sizes: Geometry(sizes=sizes),
              st.lists(st.sampled_from(["512x512", "1024x1024", "1536x1024", "1024x1536", "1792x1024"]),
                       min_size=1, max_size=5, unique=True)),
    st.builds(lambda ratios: Geometry(aspect_ratios=ratios),
              st.dictionaries(st.sampled_from(["1:1", "16:9", "9:16", "3:2", "2:3", "21:9"]),
                              st.sampled_from(["1024x1024", "1344x768", "768x1344", "1216x832"]),
                              min_size=1, max_size=6)),
    st.builds(lambda m, lo, hi, mp, asp: Geometry(multiple_of=m, min_side=lo, max_side=hi,
                                                  max_megapixels=mp, max_aspect=asp),
              st.sampled_from([1, 8, 16, 32, 64]), st.sampled_from([64, 256, 512]),
              st.sampled_from([1024, 1440, 2048, 3840]), st.sampled_from([None, 1.0, 2.0, 4.2, 8.3]),
              st.sampled_from([None, 3.0, 7.0 / 3.0])),
)

ranges = st.tuples(st.integers(1, 10), st.integers(10, 60))


def _ratio(size: str) -> float:
    w, h = (int(x) for x in size.split("x"))
    return w / h


requests = st.builds(
    lambda prompt, neg, cfg, steps, seed, geo, n, sampler, strict: mg.ImageRequest(
        prompt=prompt, negative_prompt=neg, cfg=cfg, steps=steps, seed=seed, n=n, sampler=sampler,
        strict=strict, **geo),
    st.text(min_size=1, max_size=60).filter(lambda s: s.strip() and "\x00" not in s),  # NUL: refused
    st.none() | st.just("blurry"),
    st.none() | st.floats(0, 50, allow_nan=False),
    st.none() | st.integers(1, 500),
    st.none() | st.integers(0, 2**32 - 1),
    st.one_of(st.just({}),
              # sizes within 1:8 .. 8:1, like aspect ratios (issue 8, item 13)
              st.builds(lambda w, h: {"size": f"{w}x{h}"}, st.integers(64, 5000), st.integers(64, 5000))
              .filter(lambda g: 1 / 8 <= _ratio(g["size"]) <= 8),
              st.builds(lambda a, b: {"aspect_ratio": f"{a}:{b}"}, st.integers(1, 7), st.integers(1, 7)),
              st.builds(lambda w, h, d: {"print_size": f"{w}x{h}in", "dpi": d},
                        st.integers(1, 20), st.integers(1, 20), st.sampled_from([72, 150, 300]))),
    st.integers(1, 16),
    st.none() | st.sampled_from(["euler", "ddim", "lcm"]),
    st.booleans(),
)

controls = st.builds(
    lambda neg, kind, g, s, seed, per_call: {
        "negative_prompt": neg, "seed": seed, "max_images_per_call": per_call,
        "guidance": None if kind is None else {"kind": kind, "min": g[0], "max": g[1]},
        "steps": None if s is None else {"min": s[0], "max": s[1]}, "samplers": ["euler"]},
    st.sampled_from(["native", "true-cfg-extra", "none", None]),
    st.sampled_from(["true-cfg", "distilled", "none", None]),
    ranges, st.none() | ranges, st.sampled_from([True, False, None]), st.sampled_from([1, 2, 4, 8]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests, geometries, controls)
def test_plan_properties(request: mg.ImageRequest, geo: Geometry, ctl: dict) -> None:  # type: ignore[type-arg]
    o = offer(geometry=geo.model_dump(exclude_none=True), controls=ctl)
    try:
        call = plan_call(request, o)
    except mg.InvalidRequest:
        # Only strict requests may be refused, and only when some control would not be faithful.
        assert request.strict
        relaxed = plan_call(request.model_copy(update={"strict": False}), o)
        assert any(not f.faithful for f in relaxed.fates)
        return
    p, c = call.planned, o.controls
    # Never beyond the offer's limits.
    assert geometry_fits(o.geometry, p.width, p.height), (p.width, p.height, o.geometry)
    if p.steps is not None and c.steps is not None:
        assert (c.steps.min or 0) <= p.steps <= (c.steps.max or 10**6)
    if p.guidance is not None and c.guidance is not None:
        assert (c.guidance.min or 0) <= p.guidance <= (c.guidance.max or 10**6)
    assert sum(call.chunks) == request.n and max(call.chunks) <= (c.max_images_per_call or 1)
    # Exactly one fate per requested control, in order.
    assert [f.control for f in call.fates] == request.requested_controls()
    # A strict plan never approximates or drops.
    if request.strict:
        assert all(f.faithful for f in call.fates)
    # Seeds: one per image, consecutive.
    if p.seeds is not None:
        assert len(p.seeds) == request.n
        assert all((b - a) % 2**32 == 1 for a, b in zip(p.seeds, p.seeds[1:]))
