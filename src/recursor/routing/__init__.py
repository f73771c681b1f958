"""Routing between a direct call, a REPL-only run and a recursive run (issue 14, point 5).

* :mod:`~recursor.routing.choose`: the routes and the ``auto`` rule;
* :mod:`~recursor.routing.classify`: the one cheap call that estimates a question's complexity;
* :mod:`~recursor.routing.policy`: releasing a policy from bench results, and loading it;
* :mod:`~recursor.routing.run`: a routed completion, with the cost circuit breaker's fallback.
"""

from __future__ import annotations

from recursor.routing.choose import COMPLEXITIES, ROUTES, Choice, Complexity, Route, route_for
from recursor.routing.policy import Bars, Policy, load_policy, release

__all__ = [
    "COMPLEXITIES",
    "ROUTES",
    "Bars",
    "Choice",
    "Complexity",
    "Policy",
    "Route",
    "load_policy",
    "release",
    "route_for",
]
