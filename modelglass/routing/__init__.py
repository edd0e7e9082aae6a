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
(:class:`Candidate`). :class:`Policy` holds the rules (a YAML file; the shipped default is
``catalog/policies/default.yaml``), :class:`HealthBoard` the providers cooling down.
"""

from ._decision import CONSTRAINTS, Candidate, Rejection, RoutingDecision
from ._health import HealthBoard
from ._policy import HealthRules, Policy, load_policy
from ._route import clear_cache, route
from ._scoring import Scoring
from ._signals import Signals, prompt_signals
from ._sizing import SIZE_TOLERANCE

__all__ = ["CONSTRAINTS", "SIZE_TOLERANCE", "Candidate", "HealthBoard", "HealthRules", "Policy",
           "Rejection", "RoutingDecision", "Scoring", "Signals", "clear_cache", "load_policy",
           "prompt_signals", "route"]
