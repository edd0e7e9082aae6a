"""Errors people can act on, from ``generate`` (issue 10, deliverable 5, the generate side).

``generate`` raises the typed error that ended the job, with every attempt on it and
``__cause__`` set; ``AllAttemptsFailed`` only when the attempts failed in different ways, and
then still catchable by what they share. Chunks are not tries; partial results say so.
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import _sim_fixtures
import pytest
from test_client import PROMPT, _FailFromCall, make_client, submits

import modelglass as mg
from modelglass.errors import AllAttemptsFailed, ProviderUnavailable
from modelglass.providers.fal import FalProvider
from modelglass.providers.replicate import ReplicateProvider
from modelglass.result import Attempt, Missing
from modelglass.testing import Simulator

sim = _sim_fixtures.sim  # one simulator per module, reset before each test
_fresh = _sim_fixtures.fresh


def test_a_pinned_429_raises_rate_limited_with_its_retry_after(sim: Simulator) -> None:
    sim.fail("fal", status=429, times=10, retry_after=0.05)
    with make_client(max_retries=2) as client, pytest.raises(mg.RateLimited) as info:
        client.generate(PROMPT, quality="draft", provider="fal")
    err = info.value
    assert not isinstance(err, AllAttemptsFailed)
    assert err.retryable and err.retry_after == pytest.approx(0.05)
    attempts = err.attempts  # type: ignore[attr-defined]
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.retry_after for a in attempts] == [pytest.approx(0.05)] * 3
    assert isinstance(err.__cause__, mg.RateLimited) and err.__cause__ is not err
    assert "try 3" in str(err)


def test_a_pinned_hang_raises_generation_timeout(sim: Simulator) -> None:
    sim.service_time("fal", 10)  # the job runs past the call's timeout and is cancelled
    with make_client(timeout_s=0.6, deadline_s=20) as client, \
            pytest.raises(mg.GenerationTimeout) as info:
        client.generate(PROMPT, quality="draft", provider="fal")
    assert [a.error_type for a in info.value.attempts] == ["GenerationTimeout"]  # type: ignore[attr-defined]
    assert len(sim.requests("fal", stage="cancel")) == 1


def test_only_retryable_failures_leave_the_error_retryable(sim: Simulator) -> None:
    sim.fail("fal", status=503, times=10)
    sim.fail("replicate", status=500, times=10)
    with make_client(max_retries=1, available=["fal", "replicate"]) as client, \
            pytest.raises(AllAttemptsFailed) as info:
        client.generate(PROMPT, quality="draft")
    assert info.value.retryable is True
    assert all(a.retryable for a in info.value.attempts)


def test_a_missing_key_says_to_set_it_not_to_check_the_providers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "REPLICATE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    providers = {"fal": FalProvider(), "replicate": ReplicateProvider()}  # no keys anywhere
    client = mg.Client(providers=providers, available=["fal", "replicate"], retry_backoff_s=0.01)
    with pytest.raises(ProviderUnavailable) as info:
        client.generate(PROMPT, quality="draft")
    text = str(info.value)
    assert "key" in text and "providers' status" not in text
    assert len(info.value.attempts) >= 2  # type: ignore[attr-defined]


def test_chunk_calls_are_not_counted_as_tries(sim: Simulator) -> None:
    with make_client() as client:
        r = client.generate(PROMPT, quality="draft", provider="fal", n=6, seed=1)
    assert [(a.number, a.chunk, a.chunks) for a in r.attempts] == [(1, 0, 2), (1, 1, 2)]
    assert len(submits(sim, "fal")) == 2


def test_a_partial_result_says_which_images_are_missing_and_why(sim: Simulator) -> None:
    provider = _FailFromCall(sim, fail_from=2)
    with make_client(providers={"fal": provider}, max_retries=1) as client:
        r = client.generate(PROMPT, quality="draft", provider="fal", n=6, seed=1)
    assert r.partial is True and len(r.images) == 4
    assert r.missing == [Missing(chunk=1, count=2, reason=r.missing[0].reason,
                                 error_type="ProviderError", paid=False)]
    assert "HTTP 500" in r.missing[0].reason
    assert [(a.number, a.chunk) for a in r.attempts] == [(1, 0), (1, 1), (2, 1)]
    assert "2 missing" in repr(r)


def test_a_complete_result_is_not_partial(sim: Simulator) -> None:
    with make_client() as client:
        r = client.generate(PROMPT, quality="draft", provider="replicate")
    assert r.partial is False and r.missing == []


def _attempt(**kw: Any) -> Attempt:
    base = {"number": 1, "model": "m", "provider": "p", "offer_id": "m@p", "started_at": 0.0,
            "error": "boom"}
    return Attempt(**{**base, **kw})


def test_all_attempts_failed_is_catchable_by_the_class_its_attempts_share() -> None:
    cls = AllAttemptsFailed.of(mg.RateLimited)
    err = cls("two kinds of rate limit", [_attempt(retry_after=2.0)], retryable=True,
              retry_after=2.0)
    assert isinstance(err, AllAttemptsFailed) and isinstance(err, mg.RateLimited)
    assert AllAttemptsFailed.of(mg.RateLimited) is cls  # one class per common kind
    assert AllAttemptsFailed.of(mg.ProviderError) is AllAttemptsFailed
    back = pickle.loads(pickle.dumps(err))  # errors cross process boundaries (Ray, batch)
    assert type(back) is cls and back.retry_after == 2.0 and back.retryable is True
    assert back.attempts[0].retry_after == 2.0


def test_different_failures_raise_all_attempts_failed_with_what_to_do(sim: Simulator) -> None:
    sim.fail("fal", status=429, times=10)
    sim.fail("replicate", status=403, times=10)
    t0 = time.monotonic()
    with make_client(max_retries=0, available=["fal", "replicate"]) as client, \
            pytest.raises(AllAttemptsFailed) as info:
        client.generate(PROMPT, quality="draft")
    assert time.monotonic() - t0 < 5
    err = info.value
    assert err.retryable is False  # a 403 will not go away by retrying
    assert "rate limited" in str(err)
    assert isinstance(err.__cause__, mg.ProviderError) and err.__cause__.status == 403


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True])
def test_a_per_call_deadline_must_be_a_positive_number(sim: Simulator, bad: Any) -> None:
    with make_client() as client, pytest.raises(mg.InvalidRequest, match="deadline_s"):
        client.generate(PROMPT, quality="draft", provider="fal", deadline_s=bad)
    assert sim.requests() == []


def test_a_per_call_deadline_bounds_that_call(sim: Simulator) -> None:
    sim.service_time("fal", 10)
    with make_client(deadline_s=60) as client, pytest.raises(mg.GenerationTimeout):
        t0 = time.monotonic()
        client.generate(PROMPT, quality="draft", provider="fal", deadline_s=0.8)
    assert time.monotonic() - t0 < 2


def test_attempt_json_drops_the_query_of_signed_urls() -> None:
    a = _attempt(urls=("https://cdn.example/i/1.png?sig=SECRET&se=2026",))
    assert a.to_dict()["urls"] == ["https://cdn.example/i/1.png"]
    assert "SECRET" in a.urls[0]  # the attempt itself keeps what fetches the paid image
