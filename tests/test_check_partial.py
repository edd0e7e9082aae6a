"""Outcome checks on a partial result: every image that was paid for and came back gets its
verdicts (the missing ones are no failed check), and a retry after a failed check is paid for
once, on top of the partial try (settled once too); a resumed job's retry is sent anew."""

from __future__ import annotations

import _sim_fixtures
import pytest
from test_client import _FailFromCall, fast_providers

import modelglass as mg
from modelglass.catalog._observed import ObservedStore
from modelglass.errors import DownloadFailed
from modelglass.result import GeneratedImage
from modelglass.testing import Simulator

sim = _sim_fixtures.sim
_fresh = _sim_fixtures.fresh

SIGN = 'a shop sign that says "OPEN LATE"'
FAL = "flux-schnell@fal"


class _FailsTheFirstTry:
    """A cheap checker (no OCR): fails every image of the first seed it sees, passes the rest."""

    name = "picky"

    def __init__(self) -> None:
        self.first_seed: int | None = None
        self.seen: list[tuple[int | None, int]] = []

    def applies(self, request: mg.ImageRequest) -> bool:
        return True

    def check(self, image: GeneratedImage, request: mg.ImageRequest) -> mg.CheckResult:
        if self.first_seed is None:
            self.first_seed = request.seed
        self.seen.append((request.seed, image.index))
        verdict = "fail" if request.seed == self.first_seed else "pass"
        return mg.CheckResult(self.name, verdict, float(verdict == "pass"), checker="picky 1")


def _client(**kw: object) -> mg.Client:
    kw.setdefault("providers", fast_providers())
    return mg.Client(available=["fal"], observed=ObservedStore(":memory:"),  # type: ignore[arg-type]
                     retry_backoff_s=0.01, deadline_s=30, **kw)


def test_the_images_of_a_partial_download_are_checked(sim: Simulator) -> None:
    sim.fail("fal", kind="expired", times=1)  # one of the three URLs is gone
    sim.text_accuracy(FAL, 1.0)
    budget = mg.Budget(1.0)
    with _client(budget=budget) as client:
        once = client.plan(SIGN, model="flux-schnell", provider="fal", n=3, seed=5).estimate.usd
        r = client.generate(SIGN, model="flux-schnell", provider="fal", n=3, seed=5, check=True)
    assert r.partial and len(r.images) == 2
    # three checks on each image that came back, none on the missing one
    assert sorted({c.image for c in r.checks}) == [img.index for img in r.images] == [0, 1]
    assert [c.name for c in r.checks if c.image == 0] == ["blank", "same-bytes", "text"]
    assert all(c.verdict == "pass" for c in r.checks)
    for img in r.images:
        assert [c["name"] for c in img.metadata["checks"]] == ["blank", "same-bytes", "text"]
    # all passed: no retry; the call was paid for once
    assert len(sim.requests("fal", stage="submit")) == 1
    assert r.cost_usd == pytest.approx(once) and budget.spent == pytest.approx(once)
    assert budget.reserved == 0


def test_a_failed_check_on_a_partial_result_retries_and_pays_each_try_once(
        sim: Simulator) -> None:
    sim.fail("fal", kind="expired", times=1)
    judge = _FailsTheFirstTry()
    budget = mg.Budget(1.0)
    with _client(budget=budget) as client:
        once = client.plan("a red fox", model="flux-schnell", provider="fal", n=2,
                           seed=5).estimate.usd
        r = client.generate("a red fox", model="flux-schnell", provider="fal", n=2, seed=5,
                            check=[judge], on_fail="retry")
    # the partial try's one image was checked (and failed); the retry's two passed
    assert judge.seen == [(5, 0), (7, 0), (7, 1)]
    assert not r.partial and [img.seed for img in r.images] == [7, 8]
    assert [c.verdict for c in r.checks] == ["pass", "pass"]
    (rejected,) = r.rejected
    assert rejected.seed in (5, 6) and rejected.metadata["checks"][0]["verdict"] == "fail"
    assert len(sim.requests("fal", stage="submit")) == 2
    # the partial call was paid in full (the gone URL was billed), the retry once, no more
    assert r.cost_usd == pytest.approx(2 * once) and budget.spent == pytest.approx(2 * once)
    assert budget.reserved == 0 and r.extra["checks"]["tries"] == 2


def test_a_later_call_failing_leaves_the_first_calls_images_checked(sim: Simulator) -> None:
    # n=6 on flux-schnell@fal is two calls (4 + 2); the second answers 500 every time
    provider = _FailFromCall(sim, fail_from=2)
    judge = _FailsTheFirstTry()
    budget = mg.Budget(1.0)
    with _client(providers={"fal": provider}, max_retries=1, budget=budget) as client:
        r = client.generate("a red fox", model="flux-schnell", provider="fal", n=6, seed=1,
                            check=[judge, "blank"])
    assert r.partial and len(r.images) == 4
    assert sorted({c.image for c in r.checks}) == [0, 1, 2, 3]
    assert [c.verdict for c in r.checks if c.name == "picky"] == ["fail"] * 4  # kept: on_fail
    assert [c.verdict for c in r.checks if c.name == "blank"] == ["pass"] * 4
    assert budget.spent == pytest.approx(r.cost_usd) and budget.reserved == 0


def test_a_retry_that_comes_back_partial_is_checked_and_its_images_kept(sim: Simulator) -> None:
    # the first try's two calls deliver; the retry's first call delivers, its second fails
    provider = _FailFromCall(sim, fail_from=4)
    judge = _FailsTheFirstTry()
    budget = mg.Budget(1.0)
    with _client(providers={"fal": provider}, max_retries=1, budget=budget) as client:
        r = client.generate("a red fox", model="flux-schnell", provider="fal", n=6, seed=1,
                            check=[judge], on_fail="retry")
    assert r.extra["checks"]["tries"] == 2
    assert "ProviderError" in r.extra["checks"]["notes"][0]
    # the retry's four images passed: returned (partial), the first try's six kept as rejected
    assert r.partial and len(r.images) == 4 and {img.seed for img in r.images} == {7, 8, 9, 10}
    assert [c.verdict for c in r.checks] == ["pass"] * 4
    assert len(r.rejected) == 6 and all(i.metadata["checks"] for i in r.rejected)
    assert budget.spent == pytest.approx(r.cost_usd) and budget.reserved == 0


def test_a_strict_partial_result_is_raised_with_its_images_checked(sim: Simulator) -> None:
    sim.fail("fal", kind="expired", times=1)
    with _client() as client, pytest.raises(DownloadFailed) as info:
        client.generate("a red fox", model="flux-schnell", provider="fal", n=2, seed=5,
                        strict=True, check=["blank"], on_fail="retry")
    part = info.value.partial  # type: ignore[attr-defined]
    assert len(part.images) == 1 and [c.name for c in part.checks] == ["blank"]
    assert part.images[0].metadata["checks"][0]["verdict"] == "pass"
    assert len(sim.requests("fal", stage="submit")) == 1


def test_a_resumed_jobs_retry_is_sent_anew_not_the_old_request_paid_twice(
        sim: Simulator) -> None:
    from modelglass.jobs._events import Resume

    sim.text_accuracy(FAL, 0.0)
    budget = mg.Budget(1.0)
    with _client(budget=budget) as client:
        call = client.plan(SIGN, model="flux-schnell", provider="fal", seed=4)
        handle = client.provider("fal").wire().submit(call.offer.endpoint, call.payload)
        r = client.generate(SIGN, model="flux-schnell", provider="fal", seed=4, check=["text"],
                            on_fail="retry", resume=Resume(call.offer.key, handle.request_id))
    # the crash's request polled once; the retry a new request with the next seed
    assert len(sim.requests("fal", stage="submit")) == 2
    assert sorted(i.seed for i in [*r.images, *r.rejected]) == [4, 5]
    assert r.extra["resumed"]["request_id"] == handle.request_id  # the first try, returned
    assert budget.spent == pytest.approx(2 * call.estimate.usd) == r.cost_usd
