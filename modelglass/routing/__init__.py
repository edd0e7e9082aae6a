"""Routing: pick the model and provider for a job by its quality axis, and explain the choice.

>>> import modelglass as mg
>>> from modelglass.routing import route
>>> decision = route(mg.ImageRequest(prompt="a red bicycle", quality="draft"),
...                  mg.Catalog.default(), available={"fal", "replicate"})  # doctest: +SKIP
>>> print(decision.explain())                                               # doctest: +SKIP

``route`` is pure (no network, no clock beyond ``today``): candidates are the offers of
non-retired models on available providers; hard constraints reject offers with a reason each
(:class:`Rejection`); the rest are scored by the axis weights, adjusted by the prompt's
:class:`Signals`, traded against cost as the axis says, and ranked into a fallback order
(:class:`Candidate`). :class:`Policy` holds the tunable numbers.
"""

from ._decision import CONSTRAINTS, Candidate, Rejection, RoutingDecision
from ._policy import Policy
from ._route import clear_cache, route
from ._signals import Signals, prompt_signals

__all__ = ["CONSTRAINTS", "Candidate", "Policy", "Rejection", "RoutingDecision", "Signals",
           "clear_cache", "prompt_signals", "route"]
