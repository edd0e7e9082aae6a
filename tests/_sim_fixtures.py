"""The simulator fixture, shared by every test module that talks to the simulators.

Most modules want one simulator per module, reset before each test (faults, logs, service
times)::

    sim = _sim_fixtures.sim          # one simulator per module
    _fresh = _sim_fixtures.fresh     # autouse: reset before each test, service times back to 0

A module that needs it otherwise makes its own from the same factory, e.g. a quick Replicate
poll, one simulator per test, or extra environment variables set while it runs::

    sim = _sim_fixtures.sim_fixture(poll_interval=0.01)
    sim = _sim_fixtures.sim_fixture(scope="function", env={"FAL_KEY": "..."})

``fresh_when_used`` resets only in tests that ask for ``sim`` (a module whose other tests should
not start the simulators).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pytest

from modelglass.testing import Simulator, simulate


def sim_fixture(*, poll_interval: float = 0.05, service_time: float = 0.0,
                scope: Literal["module", "function"] = "module",
                env: Mapping[str, str] | None = None) -> Any:
    """A ``sim`` fixture: :func:`modelglass.testing.simulate` with these options, for ``scope``;
    ``env`` is set after the simulators start (and undone when they stop)."""

    @pytest.fixture(scope=scope, name="sim")
    def _sim() -> Iterator[Simulator]:
        with simulate(poll_interval=poll_interval, service_time=service_time) as s, \
                pytest.MonkeyPatch.context() as mp:
            for name, value in (env or {}).items():
                mp.setenv(name, value)
            yield s

    return _sim


sim = sim_fixture()


@pytest.fixture(autouse=True)
def fresh(sim: Simulator) -> Iterator[None]:
    sim.reset()
    yield
    for p in ("openai", "fal", "replicate"):
        sim.service_time(p, 0)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fresh_when_used(request: pytest.FixtureRequest) -> None:
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()
