"""One simulator per test module, reset before each test (faults, logs, service times).

Import both fixtures into a test module that talks to the simulators:
``sim = _sim_fixtures.sim`` and ``_fresh = _sim_fixtures.fresh`` (autouse).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelglass.testing import Simulator, simulate


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with simulate() as s:
        yield s


@pytest.fixture(autouse=True)
def fresh(sim: Simulator) -> Iterator[None]:
    sim.reset()
    yield
    for p in ("openai", "fal", "replicate"):
        sim.service_time(p, 0)  # type: ignore[arg-type]
