"""The job engine as a pure state machine: the steps it asks for, the outcomes it takes, its
events, interrupts and resume (issue 9, deliverables 1 and 2).

The first tests drive ``Job.steps()`` by hand with a provider that does no I/O, so what the
engine decides is visible step by step; the last ones resume real jobs on the simulators.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import _sim_fixtures
import pytest
from test_client import PROMPT, make_client, submits

import modelglass as mg
from modelglass._download import verify_bytes
from modelglass.errors import OutcomeUnknown
from modelglass.jobs import JobEvent, Resume
from modelglass.jobs._delivery import Download
from modelglass.jobs._steps import Wait, Wire
from modelglass.providers.base import Provider, ProviderOutput, RawImage
from modelglass.providers.fal import FalProvider
from modelglass.testing import Simulator, render_image


class _Steps(Provider):
    """A fal-shaped provider with a resumable job and no I/O: the test answers every step."""

    name = "fal"

    def __init__(self) -> None:
        self.inner = FalProvider()

    def availability(self) -> Any:
        from modelglass.providers.base import Availability

        return Availability(True, "test")

    def build_payload(self, planned: Any, offer: Any) -> Any:
        return self.inner.build_payload(planned, offer)

    resumable = True

    def job(self, call: Any, *, timeout_s: float, resume: str | None = None,
            on_submitted: Any = None) -> Generator[Any, Any, ProviderOutput]:
        rid = resume if resume is not None else (yield Wire(self, "submit", (call.payload,)))
        on_submitted(rid)
        while (yield Wire(self, "status", (rid,))) != "COMPLETED":
            yield Wait(0.01)
        url = yield Wire(self, "result", (rid,))
        return ProviderOutput(images=[RawImage(url=url, mime="image/png")], request_id=rid)

    def cancel_job(self, call: Any, request_id: str) -> Generator[Any, Any, bool]:
        return (yield Wire(self, "cancel", (request_id,))) == "CANCELLATION_REQUESTED"

    def wire(self) -> Any:
        raise AssertionError("the test answers every step")

    awire = wire


def _call(step: Any) -> tuple[str, tuple[Any, ...]]:
    assert isinstance(step, Wire)
    return step.name, step.args


def _job(budget: mg.Budget | None = None, **kw: Any) -> tuple[Any, list[JobEvent]]:
    client = mg.Client(providers={"fal": _Steps()}, available=["fal"], budget=budget)
    events: list[JobEvent] = []
    job = client._job(PROMPT, {"quality": "draft", "provider": "fal", "seed": 3},
                      job_id="j1", events=events.append, resume=kw.pop("resume", None),
                      allow_double_payment=None, deadline_s=None)
    return job, events


def _image() -> Any:
    return verify_bytes(render_image(PROMPT, 3, 1024, 1024, "png"), "image/png")


def test_a_job_asks_for_steps_and_takes_their_outcomes() -> None:
    budget = mg.Budget(1.0)
    job, events = _job(budget)
    steps = job.steps()
    step = next(steps)
    assert _call(step)[0] == "submit"
    assert budget.reserved == pytest.approx(0.003)  # held before anything is sent
    step = steps.send("rid-7")
    assert _call(step) == ("status", ("rid-7",))
    assert [e.state for e in events][-1] == "submitted" and events[-1].request_id == "rid-7"
    assert isinstance(steps.send("IN_PROGRESS"), Wait)
    assert isinstance(steps.send(None), Wire)
    step = steps.send("COMPLETED")
    assert _call(step)[0] == "result"
    step = steps.send("https://img.example/1.png")
    assert isinstance(step, Download) and step.images[0].url == "https://img.example/1.png"
    with pytest.raises(StopIteration) as done:
        steps.send([_image()])
    result = done.value.value
    assert len(result.images) == 1 and result.job_id == "j1"
    # "sending" comes before the create's first byte may leave (issue 16: a journal that never
    # saw it knows nothing was sent).
    assert [e.state for e in events] == ["pending", "pending", "sending", "submitted",
                                         "generated", "downloaded", "done"]
    assert events[4].urls == ("https://img.example/1.png",) and events[4].cost_usd == 0.003
    assert events[5].sha256 == (result.images[0].sha256,)
    assert {e.job_id for e in events} == {"j1"} and events[1].offer_key == "flux-schnell@fal"
    assert budget.spent == pytest.approx(0.003) and budget.reserved == 0


def test_an_interrupt_while_polling_cancels_by_id_then_goes_on() -> None:
    budget = mg.Budget(1.0)
    job, events = _job(budget)
    steps = job.steps()
    next(steps)
    steps.send("rid-9")  # submitted; now polling
    step = steps.throw(KeyboardInterrupt())
    assert _call(step) == ("cancel", ("rid-9",))
    with pytest.raises(KeyboardInterrupt):
        steps.send("CANCELLATION_REQUESTED")
    assert budget.reserved == 0 and budget.spent == pytest.approx(0.003)  # it may bill
    assert events[-1].state == "failed" and events[-1].possibly_charged
    assert job.attempts[0].possibly_charged
    assert "job was cancelled" in job.attempts[0].error


def test_a_cancel_the_provider_did_not_confirm_is_not_called_done() -> None:
    job, _ = _job(mg.Budget(1.0))
    steps = job.steps()
    next(steps)
    steps.send("rid-9")
    steps.throw(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        steps.throw(TimeoutError("no answer to the cancel"))
    assert "not confirmed" in job.attempts[0].error


def test_an_interrupt_before_anything_was_sent_releases_the_reservation() -> None:
    budget = mg.Budget(1.0)
    job, events = _job(budget)
    steps = job.steps()
    next(steps)  # the submit is about to go out, but has not
    job._inflight.sent = False  # as when the interrupt lands before the step ran
    with pytest.raises(KeyboardInterrupt):
        steps.throw(KeyboardInterrupt())
    assert budget.reserved == 0 and budget.spent == 0
    assert not events[-1].possibly_charged


def test_an_abandoned_job_still_settles_its_budget() -> None:
    budget = mg.Budget(1.0)
    job, _ = _job(budget)
    steps = job.steps()
    next(steps)
    steps.send("rid-1")
    steps.close()  # the driver went away mid-job
    assert budget.reserved == 0 and budget.spent == pytest.approx(0.003)


def test_resume_polls_the_given_id_and_never_submits() -> None:
    job, events = _job(resume=Resume("flux-schnell@fal", "rid-old"))
    steps = job.steps()
    step = next(steps)
    assert _call(step) == ("status", ("rid-old",))
    assert any(e.state == "submitted" and e.request_id == "rid-old" for e in events)


def test_resume_on_a_provider_without_job_ids_is_refused_as_possibly_charged() -> None:
    client = mg.Client(available=["openai"])
    with pytest.raises(OutcomeUnknown, match="not re-sent"):
        client.generate(PROMPT, quality="thumbnail", provider="openai",
                        resume=Resume("gpt-image-2@openai", "req-1"))  # any OpenAI offer


def test_a_provider_without_job_ids_is_one_wire_call_announced_as_submitted() -> None:
    class _OneCall(_Steps):
        resumable = False

        def job(self, call: Any, **kw: Any) -> Any:
            reply = yield Wire(self, "generate", (call.payload,))
            return ProviderOutput(images=[RawImage(url=reply, mime="image/png")])

    events: list[JobEvent] = []
    client = mg.Client(providers={"fal": _OneCall()}, available=["fal"])
    job = client._job(PROMPT, {"quality": "draft", "provider": "fal"}, job_id=None,
                      events=events.append, resume=None, allow_double_payment=None,
                      deadline_s=None)
    steps = job.steps()
    assert _call(next(steps))[0] == "generate"
    # No id to wait for: "submitted" before the request goes out, and no "sending".
    assert [e.state for e in events] == ["pending", "pending", "submitted"]
    assert isinstance(steps.send("https://img.example/1.png"), Download)


# -- resume on the simulators ---------------------------------------------------------------------

sim = _sim_fixtures.sim  # one simulator for the module; each test resets it


def test_resume_fetches_a_fal_job_submitted_before(sim: Simulator) -> None:
    sim.reset()
    with make_client() as client:
        call = client.plan(PROMPT, quality="draft", provider="fal", seed=4)
        handle = client.provider("fal").wire().submit(call.offer.endpoint, call.payload)
        before = len(submits(sim, "fal"))
        events: list[JobEvent] = []
        r = client.generate(PROMPT, quality="draft", provider="fal", seed=4, events=events.append,
                            resume=Resume(call.offer.key, handle.request_id))
    assert len(submits(sim, "fal")) == before == 1  # polled, never re-submitted
    assert len(r.images) == 1 and r.extra["request_ids"] == [handle.request_id]
    assert r.extra["resumed"]["request_id"] == handle.request_id


def test_async_resume_fetches_a_replicate_prediction_created_before(sim: Simulator) -> None:
    sim.reset()

    async def main() -> Any:
        async with make_client(mg.AsyncClient) as client:
            call = client.plan(PROMPT, quality="draft", provider="replicate", seed=4)
            wire = client.provider("replicate").awire()
            pred = await wire.create_model(call.offer.endpoint, call.payload)
            r = await client.generate(PROMPT, quality="draft", provider="replicate", seed=4,
                                      resume=Resume(call.offer.key, pred.id))
            return r, pred.id

    r, pid = asyncio.run(main())
    assert len(submits(sim, "replicate")) == 1
    assert r.extra["request_ids"] == [pid] and len(r.images) == 1


def test_a_failing_events_sink_does_not_strand_a_paid_job() -> None:
    budget = mg.Budget(1.0)
    client = mg.Client(providers={"fal": _Steps()}, available=["fal"], budget=budget)

    def sink(event: JobEvent) -> None:
        if event.state == "submitted":
            raise OSError("journal disk full")

    job = client._job(PROMPT, {"quality": "draft", "provider": "fal"}, job_id=None,
                      events=sink, resume=None, allow_double_payment=None, deadline_s=None)
    steps = job.steps()
    next(steps)
    step = steps.send("rid-3")  # the sink fails on 'submitted'; polling goes on
    assert _call(step) == ("status", ("rid-3",))
    steps.send("COMPLETED")
    steps.send("https://img.example/3.png")
    with pytest.raises(StopIteration) as done:
        steps.send([_image()])
    assert len(done.value.value.images) == 1
    assert budget.spent == pytest.approx(0.003) and budget.reserved == 0


def test_a_bug_after_a_create_counts_the_job_as_possibly_charged() -> None:
    budget = mg.Budget(1.0)
    job, _ = _job(budget)
    steps = job.steps()
    next(steps)
    steps.send("rid-4")
    with pytest.raises(KeyError):
        steps.throw(KeyError("a parsing bug"))
    assert budget.reserved == 0 and budget.spent == pytest.approx(0.003)
    assert job.attempts[0].possibly_charged
