"""The observed store: per-offer latency, reported cost, failures, sizes and seeds in SQLite."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import modelglass as mg
from modelglass.catalog._observed import (
    MIN_SAMPLES,
    ObservedStore,
    default_path,
    observe_failure,
    request_fingerprint,
)


@pytest.fixture
def store(tmp_path: Path) -> ObservedStore:
    return ObservedStore(tmp_path / "obs.sqlite")


def test_latency_p90_needs_min_samples_then_is_a_latency_that_happened(store: ObservedStore) -> None:
    for i in range(MIN_SAMPLES - 1):
        store.record_result("a@fal", latency_s=1.0 + i)
    assert store.latency_p90("a@fal") is None
    for lat in (3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 30.0):
        store.record_result("a@fal", latency_s=lat)
    assert store.latency_p90("a@fal") == 9.0        # nearest rank of 10 values
    assert store.latency_p50("a@fal") == 5.0
    assert store.latency_p90("b@fal") is None


def test_failure_rate_counts_failed_attempts_against_results(store: ObservedStore) -> None:
    assert store.failure_rate("a@fal") is None
    for _ in range(3):
        store.record_result("a@fal", latency_s=1)
    store.record_failure("a@fal", "RateLimited")
    assert store.failure_rate("a@fal") == pytest.approx(0.25)
    assert store.observations("a@fal").error_types == {"RateLimited": 1}


def test_only_reported_costs_count_as_observed_cost(store: ObservedStore) -> None:
    for _ in range(MIN_SAMPLES):
        store.record_result("a@openai", cost_usd=0.012, cost_reported=True, n=2)
        store.record_result("a@openai", cost_usd=9.99, cost_reported=False, n=1)
    assert store.cost_per_image("a@openai") == pytest.approx(0.006)


def test_poisoned_numbers_never_enter_the_statistics(store: ObservedStore) -> None:
    for bad in (float("nan"), float("inf"), -1.0):
        store.record_result("a@fal", latency_s=bad, cost_usd=bad, cost_reported=True)
    for _ in range(MIN_SAMPLES):
        store.record_result("a@fal", latency_s=2.0, cost_usd=0.03, cost_reported=True)
    assert store.latency_p90("a@fal") == 2.0
    assert store.cost_per_image("a@fal") == pytest.approx(0.03)


def test_sizes_and_seed_reproducibility(store: ObservedStore) -> None:
    fp = request_fingerprint(prompt="a fox", width=1000, height=1000)
    store.record_result("a@fal", width=1024, height=1024, requested_size="1000x1000",
                        seeds=[7, 8], sha256=["h1", "h2"], fingerprint=fp)
    store.record_result("a@fal", width=1024, height=1024, requested_size="1000x1000",
                        seeds=[7], sha256=["h1"], fingerprint=fp)
    obs = store.observations("a@fal")
    assert obs.sizes == ("1024x1024",) and obs.size_changes == {"1000x1000": "1024x1024"}
    assert (obs.seed_groups, obs.seed_mismatches) == (1, 0)
    store.record_result("a@fal", width=1024, height=1024, seeds=[7], sha256=["other"],
                        fingerprint=fp)
    assert store.observations("a@fal").seed_mismatches == 1


def test_fingerprint_ignores_the_seed_and_hides_the_prompt() -> None:
    a = request_fingerprint(prompt="secret prompt", seed=1)
    assert a == request_fingerprint(prompt="secret prompt", seed=2)
    assert a != request_fingerprint(prompt="other prompt", seed=1)
    assert "secret" not in a


def test_disabled_store_records_nothing(tmp_path: Path) -> None:
    off = ObservedStore(tmp_path / "off.sqlite", enabled=False)
    off.record_result("a@fal", latency_s=1)
    off.record_failure("a@fal", "ProviderError")
    assert not (tmp_path / "off.sqlite").exists()
    assert off.failure_rate("a@fal") is None


def test_env_opt_out_and_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(tmp_path / "x.sqlite"))
    monkeypatch.setenv("MODELGLASS_OBSERVE", "0")
    assert not ObservedStore.default().enabled
    monkeypatch.setenv("MODELGLASS_OBSERVE", "1")
    store = ObservedStore.default()
    assert store.enabled and store.path == tmp_path / "x.sqlite" == default_path()


def test_default_path_is_the_platform_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from platformdirs import user_cache_dir

    monkeypatch.delenv("MODELGLASS_OBSERVED_DB")
    assert default_path() == Path(user_cache_dir("modelglass")) / "observed.sqlite"


def test_an_unusable_database_turns_observing_off_instead_of_failing(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()  # a directory where the file should be
    store = ObservedStore(tmp_path / "dir.sqlite")
    store.record_result("a@fal", latency_s=1)
    assert not store.enabled


def test_concurrent_writers_lose_nothing(store: ObservedStore) -> None:
    def work() -> None:
        for _ in range(25):
            store.record_result("a@fal", latency_s=1.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.observations("a@fal").results == 100


def test_forget(store: ObservedStore) -> None:
    store.record_result("a@fal", latency_s=1, seeds=[1], sha256=["x"])
    store.record_failure("b@fal", "ProviderError")
    store.forget("a@fal")
    assert store.offers() == ["b@fal"]


def test_observe_failure_never_raises_and_skips_without_an_offer(store: ObservedStore) -> None:
    class C:
        observed = store

    observe_failure(C(), None, RuntimeError("x"))
    observe_failure(C(), "a@fal", mg.RateLimited("slow down"))
    assert store.observations("a@fal").error_types == {"RateLimited": 1}


# --- the client hook ------------------------------------------------------------------------------

def test_client_records_latency_reported_cost_sizes_and_failures(tmp_path: Path) -> None:
    from modelglass.testing import simulate

    store = ObservedStore(tmp_path / "client.sqlite")
    with simulate() as sim:
        client = mg.Client(max_retries=0, observed=store)  # an explicit store (False: none)
        sim.fail("openai", status=500, times=1)
        with pytest.raises(mg.ModelglassError):
            client.generate("a red bicycle", model="gpt-image-2", provider="openai")
        result = client.generate("a red bicycle", model="gpt-image-2", provider="openai", seed=3)
        client.close()
    assert result.plan is not None
    obs = store.observations(result.plan.offer.key)
    assert obs.results == 1 and obs.failures == 1 and obs.failure_rate == pytest.approx(0.5)
    assert obs.sizes == (f"{result.images[0].width}x{result.images[0].height}",)
    assert obs.cost_samples == (0 if result.cost_is_estimate else 1)


def test_client_with_observed_false_records_nothing(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from modelglass.testing import simulate

    monkeypatch.setenv("MODELGLASS_OBSERVE", "1")
    with simulate():
        client = mg.Client(observed=False)
        client.generate("a red bicycle", model="gpt-image-2", provider="openai")
        client.close()
        assert not ObservedStore.default().offers()


async def test_async_client_records_too(tmp_path: Path) -> None:
    from modelglass.testing import simulate

    store = ObservedStore(tmp_path / "async.sqlite")
    async with simulate(), mg.AsyncClient(observed=store) as client:
        result = await client.generate("a red bicycle", model="gpt-image-2",
                                       provider="openai")
    assert result.plan is not None
    assert store.observations(result.plan.offer.key).results == 1


def test_old_events_are_pruned(store: ObservedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelglass.catalog import _observed

    monkeypatch.setattr(_observed, "KEEP", 5)
    monkeypatch.setattr(_observed, "_PRUNE_EVERY", 10)
    for i in range(10):
        store.record_result("a@fal", latency_s=float(i), seeds=[i], sha256=[str(i)])
    assert store.observations("a@fal").results == 5
    assert sorted(store.latencies("a@fal")) == [5.0, 6.0, 7.0, 8.0, 9.0]


def test_clients_share_one_default_store_per_path(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from modelglass.catalog._observed import _store_of

    class C:
        observed = None

    monkeypatch.setenv("MODELGLASS_OBSERVE", "1")
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(tmp_path / "a.sqlite"))
    first = _store_of(C())
    assert first is not None and first is _store_of(C())
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(tmp_path / "b.sqlite"))
    assert _store_of(C()) is not first
    monkeypatch.setenv("MODELGLASS_OBSERVE", "0")
    assert _store_of(C()) is None


def test_many_threads_through_the_hook_lose_nothing(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from modelglass.catalog._observed import observe_failure

    monkeypatch.setenv("MODELGLASS_OBSERVE", "1")
    monkeypatch.setenv("MODELGLASS_OBSERVED_DB", str(tmp_path / "t.sqlite"))

    class C:
        observed = None

    def work() -> None:
        for _ in range(20):
            observe_failure(C(), "a@fal", mg.ProviderError("x"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ObservedStore.default().observations("a@fal").failures == 160


def test_check_rates_count_per_offer_check_and_prompt_class(store: ObservedStore) -> None:
    for verdict, cls in (("pass", "latin"), ("fail", "latin"), ("pass", "other"),
                         ("unknown", "other"), ("fail", "none")):
        store.record_check("a@fal", "text", verdict, prompt_class=cls, score=0.5)
    store.record_check("a@fal", "blank", "pass")
    store.record_check("b@fal", "text", "fail", prompt_class="latin")
    assert store.check_rate("a@fal", check="text") == (2, 4)  # unknown counts in neither
    assert store.check_rate("a@fal", check="text", prompt_class="latin") == (1, 2)
    assert store.check_rate("a@fal", check="text", prompt_class="other") == (1, 1)
    assert store.check_rate("a@fal", check="blank") == (1, 1)
    assert store.check_rate("b@fal") == (0, 1) and store.check_rate("c@fal") == (0, 0)
    assert "b@fal" in store.offers()
    with pytest.raises(ValueError, match="verdict"):
        store.record_check("a@fal", "text", "maybe")
    store.forget("a@fal")
    assert store.check_rate("a@fal") == (0, 0) and store.check_rate("b@fal") == (0, 1)


def test_a_disabled_store_records_no_check(tmp_path: Path) -> None:
    off = ObservedStore(tmp_path / "off.sqlite", enabled=False)
    off.record_check("a@fal", "text", "pass", prompt_class="latin")
    assert off.check_rate("a@fal") == (0, 0)
