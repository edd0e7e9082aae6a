"""Loopback simulators of the OpenAI, fal and Replicate image APIs, for tests without internet.

>>> from modelglass.testing import simulate
>>> with simulate() as sim:                                   # doctest: +SKIP
...     sim.fail("fal", status=429, times=2, retry_after=1)
...     ...                                                   # official clients hit 127.0.0.1
...     sim.requests("fal")

Importing this package imports neither the provider clients nor ``trustme``; the simulators
speak the providers' wire protocols, so the *unmodified* official clients run against them.
See ``docs/testing.md``.
"""

from ._faults import FAULT_KINDS, STAGES, Fault
from ._images import SIMULATED_MARKER, is_simulated, render_image
from ._server import RecordedRequest
from ._simulate import PROVIDERS, Simulator, simulate
from ._verify_sim import simulate_verify

__all__ = [
    "FAULT_KINDS",
    "PROVIDERS",
    "SIMULATED_MARKER",
    "STAGES",
    "Fault",
    "RecordedRequest",
    "Simulator",
    "is_simulated",
    "render_image",
    "simulate",
    "simulate_verify",
]
