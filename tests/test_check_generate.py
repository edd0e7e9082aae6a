"""``generate(check=..., on_fail=...)`` end to end: the official clients against the simulators,
the real OCR on the simulated images, the budget, the observed store and the provenance."""

from __future__ import annotations

import threading

import _sim_fixtures
import pytest

import modelglass as mg
from modelglass._provenance import read_metadata
from modelglass.catalog._observed import ObservedStore
from modelglass.result import GeneratedImage
from modelglass.testing import Simulator
from modelglass.testing._images import spells_right
from modelglass.testing._openai import render_seed

sim = _sim_fixtures.sim
_fresh = _sim_fixtures.fresh

SIGN = 'a shop sign that says "OPEN LATE"'
FAL = "flux-schnell@fal"
ENDPOINT = "fal-ai/flux/schnell"


@pytest.fixture
def store() -> ObservedStore:
    return ObservedStore(":memory:")


def _client(store: ObservedStore, **kw: object) -> mg.Client:
    return mg.Client(available=["fal", "replicate"], observed=store, **kw)  # type: ignore[arg-type]


def _text(result: mg.ImageResult) -> mg.CheckResult:
    return next(c for c in result.checks if c.name == "text")


def test_a_model_that_always_spells_right_passes(sim: Simulator, store: ObservedStore) -> None:
    sim.text_accuracy("flux-schnell", 1.0)
    with _client(store) as client:
        r = client.generate(SIGN, model="flux-schnell", provider="fal", seed=3, check=True)
    assert [c.name for c in r.checks] == ["blank", "same-bytes", "text"]
    assert all(c.verdict == "pass" for c in r.checks)
    assert _text(r).observed == "open late" and _text(r).expected == "OPEN LATE"
    assert store.check_rate(FAL, check="text") == (1, 1)
    assert store.check_rate(FAL, check="text", prompt_class="latin") == (1, 1)
    assert store.check_rate(FAL, check="text", prompt_class="other") == (0, 0)


def test_a_model_that_never_spells_right_fails_and_keep_pays_once(
        sim: Simulator, store: ObservedStore) -> None:
    sim.text_accuracy("flux-schnell", 0.0)
    with _client(store) as client:
        r = client.generate(SIGN, model="flux-schnell", provider="fal", seed=3, check=True)
    assert _text(r).verdict == "fail" and _text(r).observed != "open late"
    assert len(r.attempts) == 1 and r.rejected == []
    assert len(sim.requests("fal", stage="submit")) == 1
    assert store.check_rate(FAL) == (0, 1)


def _seed_failing_then_passing(p: float) -> int:
    return next(s for s in range(1000) if not spells_right(p, ENDPOINT, SIGN, s)
                and spells_right(p, ENDPOINT, SIGN, s + 1))


def test_retry_pays_twice_and_returns_the_passing_image(sim: Simulator,
                                                        store: ObservedStore) -> None:
    sim.text_accuracy(FAL, 0.5)
    seed = _seed_failing_then_passing(0.5)
    budget = mg.Budget(1.0)
    with _client(store, budget=budget) as client:
        once = client.plan(SIGN, model="flux-schnell", provider="fal", seed=seed).estimate.usd
        r = client.generate(SIGN, model="flux-schnell", provider="fal", seed=seed, check=True,
                            on_fail="retry")
    assert _text(r).verdict == "pass" and r.images[0].seed == seed + 1
    assert len(sim.requests("fal", stage="submit")) == 2
    assert r.cost_usd == pytest.approx(2 * once) and budget.spent == pytest.approx(2 * once)
    assert [a.offer_id for a in r.attempts] == [FAL, FAL]
    (rejected,) = r.rejected
    assert rejected.seed == seed and rejected.metadata["checks"][-1]["verdict"] == "fail"
    assert r.extra["checks"]["tries"] == 2
    assert store.check_rate(FAL) == (1, 2)
    assert r.to_dict()["rejected"][0]["seed"] == seed


def test_a_retry_on_openai_gets_a_new_image_that_can_pass(sim: Simulator,
                                                         store: ObservedStore) -> None:
    """OpenAI takes no seed: a retry is a new draw, not the same bytes again."""
    # scripted: the first answer after reset misspells, the next spells right
    assert not spells_right(0.3, "gpt-image-2", SIGN, render_seed(0, 0))
    sim.text_accuracy("gpt-image-2@openai", 0.3)
    with mg.Client(available=["openai"], observed=store) as client:
        r = client.generate(SIGN, model="gpt-image-2", provider="openai", quality="thumbnail",
                            check=True, on_fail="retry")
    assert len(sim.requests("openai")) == 2
    assert all(c.verdict == "pass" for c in r.checks), r.checks
    (rejected,) = r.rejected
    assert rejected.data != r.images[0].data
    assert next(c for c in rejected.metadata["checks"] if c["name"] == "text")["verdict"] == "fail"
    assert store.check_rate("gpt-image-2@openai") == (1, 2)


def test_retries_stop_at_max_check_retries_and_return_the_best_try(
        sim: Simulator, store: ObservedStore) -> None:
    sim.text_accuracy(FAL, 0.0)
    with _client(store) as client:
        r = client.generate(SIGN, model="flux-schnell", provider="fal", seed=3, check=True,
                            on_fail="retry", max_check_retries=2)
    assert len(sim.requests("fal", stage="submit")) == 3
    assert _text(r).verdict == "fail" and len(r.rejected) == 2
    assert store.check_rate(FAL) == (0, 3)


def test_escalate_moves_to_the_next_offer_in_the_ranking(sim: Simulator,
                                                         store: ObservedStore) -> None:
    with _client(store) as client:
        first, second = (c.key for c in client.route(SIGN, model="flux-schnell").ranked[:2])
        sim.text_accuracy(first, 0.0)
        sim.text_accuracy(second, 1.0)
        r = client.generate(SIGN, model="flux-schnell", seed=3, check=True, on_fail="escalate")
    assert r.plan is not None and r.plan.offer.key == second
    assert _text(r).verdict == "pass"
    assert [a.offer_id for a in r.attempts] == [first, second]
    assert store.check_rate(first) == (0, 1) and store.check_rate(second) == (1, 1)


def test_a_retry_the_budget_cannot_hold_is_not_sent(sim: Simulator, store: ObservedStore) -> None:
    sim.text_accuracy(FAL, 0.0)
    with _client(store) as client:
        once = client.plan(SIGN, model="flux-schnell", provider="fal", seed=3).estimate.usd
        client.budget = mg.Budget(once * 1.5)
        r = client.generate(SIGN, model="flux-schnell", provider="fal", seed=3, check=True,
                            on_fail="retry")
    assert len(sim.requests("fal", stage="submit")) == 1
    assert _text(r).verdict == "fail"
    assert "BudgetExceeded" in r.extra["checks"]["notes"][0]


def test_expect_text_names_text_the_prompt_does_not_quote(sim: Simulator,
                                                          store: ObservedStore) -> None:
    with _client(store) as client:
        r = client.generate("a shop sign", model="flux-schnell", provider="fal", seed=3,
                            check=["text"], expect_text="OPEN LATE")
    (text,) = r.checks
    assert text.verdict == "fail" and "not found" in text.detail  # nothing was drawn


class _Recorder:
    """A user's own checker: fails the first image it sees, records the thread it ran on."""

    name = "picky"

    def __init__(self) -> None:
        self.threads: list[int] = []

    def applies(self, request: mg.ImageRequest) -> bool:
        return True

    def check(self, image: GeneratedImage, request: mg.ImageRequest) -> mg.CheckResult:
        self.threads.append(threading.get_ident())
        verdict = "fail" if len(self.threads) == 1 else "pass"
        return mg.CheckResult(self.name, verdict, float(verdict == "pass"), checker="picky 1")


async def test_async_checks_run_off_the_event_loop_and_your_checker_can_retry(
        sim: Simulator, store: ObservedStore) -> None:
    judge = _Recorder()
    async with mg.AsyncClient(available=["fal"], observed=store) as client:
        r = await client.generate("a red fox", model="flux-schnell", provider="fal", seed=3,
                                  check=[judge, "blank"], on_fail="retry")
    assert [c.verdict for c in r.checks] == ["pass", "pass"] and len(r.rejected) == 1
    assert threading.get_ident() not in judge.threads and len(judge.threads) == 2
    assert store.check_rate(FAL, check="picky", prompt_class="none") == (1, 2)


def test_a_checker_that_raises_gives_unknown_and_keeps_the_image(sim: Simulator,
                                                                 store: ObservedStore) -> None:
    class Broken:
        name = "broken"

        def applies(self, request: mg.ImageRequest) -> bool:
            return True

        def check(self, image: GeneratedImage, request: mg.ImageRequest) -> mg.CheckResult:
            raise RuntimeError("weights missing")

    with _client(store) as client:
        r = client.generate("a red fox", model="flux-schnell", provider="fal", seed=3,
                            check=[Broken()], on_fail="retry")
    (c,) = r.checks
    assert c.verdict == "unknown" and "weights missing" in c.detail
    assert len(r.images) == 1 and len(sim.requests("fal", stage="submit")) == 1


def test_checks_are_in_the_saved_images_provenance(sim: Simulator, store: ObservedStore,
                                                   tmp_path: object) -> None:
    with _client(store) as client:
        r = client.generate(SIGN, model="flux-schnell", provider="fal", seed=3, check=True)
    path = r.images[0].save(tmp_path / "sign.png")  # type: ignore[operator]
    meta = read_metadata(path)
    assert [c["name"] for c in meta["checks"]] == ["blank", "same-bytes", "text"]
    assert meta["checks"][-1]["verdict"] == "pass"


def test_text_accuracy_by_model_id_scripts_every_offer_of_it(sim: Simulator,
                                                              store: ObservedStore) -> None:
    sim.text_accuracy("flux-schnell", 0.0)
    with _client(store) as client:
        for provider in ("fal", "replicate"):
            r = client.generate(SIGN, model="flux-schnell", provider=provider, seed=3,
                                check=["text"])
            assert r.checks[0].verdict == "fail", provider
    with pytest.raises(ValueError, match="probability"):
        sim.text_accuracy("flux-schnell", 1.5)


def test_a_batch_checks_every_job_and_its_manifest_and_journal_keep_the_checks(
        sim: Simulator, store: ObservedStore, tmp_path: object) -> None:
    sim.text_accuracy(FAL, 0.0)
    reqs = [{"id": f"j{i}", "prompt": SIGN, "model": "flux-schnell", "provider": "fal",
             "seed": 10 + i} for i in range(2)]
    journal = tmp_path / "run.db"  # type: ignore[operator]
    with _client(store) as client:
        report = client.generate_many(reqs, concurrency=2, budget=1.0, journal=journal,
                                      limits={}, check=True, on_fail="retry")
        assert report.counts() == {"done": 2}
        assert len(sim.requests("fal", stage="submit")) == 4  # each job paid for its retry
        for outcome in report:
            entry = outcome.manifest()
            assert [c["name"] for c in entry["checks"]] == ["blank", "same-bytes", "text"]
            assert entry["checks"][-1]["verdict"] == "fail"
        again = client.generate_many(reqs, concurrency=2, journal=journal, limits={},
                                     check=True, on_fail="retry")
    assert again.counts() == {"skipped": 2}
    assert again[0].manifest()["checks"][-1]["verdict"] == "fail"  # read back from the journal
    assert store.check_rate(FAL) == (0, 4)
    with pytest.raises(mg.InvalidRequest):
        client.generate_many(reqs, on_fail="retry")  # a retry without a check, refused first
