"""The routes, and the rule ``route="auto"`` follows.

Three routes, smallest first:

* ``direct``: one call to the root with the whole context, when it fits the root's window (from
  its profile, or ``RLM(context_windows=...)``) with a margin;
* ``repl``: an RLM at depth 0 (code over the context, no sub-calls);
* ``recursive``: an RLM at depth 1, or 2 for pairs questions when the RLM allows depth 2.

The estimate of the question's information complexity (constant: a lookup; linear: a count or
aggregation over items; quadratic: pairs) comes from one cheap call to the sub-model
(:mod:`recursor.routing.classify`). The rule takes the smallest route the estimate allows:

=========== ======================== =====================
complexity  context fits the window  it does not
=========== ======================== =====================
constant    direct                   repl
linear      direct                   recursive, depth 1
quadratic   recursive, depth 1       recursive, depth 2*
=========== ======================== =====================

(*) at most the RLM's own ``max_depth``, and at least 1. A pairs question is never sent whole to
one call even when it fits: quadratic work over a context is what one call does worst.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Route = Literal["direct", "repl", "recursive"]
Complexity = Literal["constant", "linear", "quadratic"]
ROUTES: tuple[Route, ...] = ("direct", "repl", "recursive")
COMPLEXITIES: tuple[Complexity, ...] = ("constant", "linear", "quadratic")

#: characters per token when sizing a context against a window (as the direct baseline cuts:
#: digits and code tokenize denser than prose's 4)
CHARS_PER_TOKEN = 3
#: share of the window kept free for the instructions, the question and the reply
WINDOW_MARGIN = 0.25


@dataclass(frozen=True, slots=True)
class Choice:
    """A route and its depth (None for direct), with the reason in words."""

    route: Route
    depth: int | None
    reason: str


def context_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def fits(chars: int, window: int | None, margin: float = WINDOW_MARGIN) -> bool:
    """Whether a context of ``chars`` characters fits ``window`` tokens with ``margin`` free;
    an unknown window never fits (sending a context whole to a model of unknown size is a guess)."""
    return window is not None and context_tokens(chars) <= window * (1 - margin)


def route_for(complexity: Complexity, fit: bool, max_depth: int) -> Choice:
    """The smallest route ``complexity`` allows (the table of the module docstring)."""
    size = "fits the root's window" if fit else "does not fit the root's window"
    if complexity == "quadratic":
        depth = 1 if fit else max(1, min(2, max_depth))
        return Choice("recursive", depth, f"a pairs question; the context {size}")
    if fit:
        return Choice("direct", None, f"a {complexity} question and the context {size}")
    if complexity == "constant":
        return Choice("repl", 0, f"a lookup and the context {size}: code can find it")
    return Choice("recursive", 1, f"a linear question and the context {size}: sub-calls per part")


def route_of_method(method: str) -> tuple[Route, int | None] | None:
    """The route a ``recursor bench`` method measures (None: the method is not a route)."""
    fixed: dict[str, tuple[Route, int | None]] = {
        "direct": ("direct", None),
        "rlm-d0": ("repl", 0),
        "rlm-d1": ("recursive", 1),
        "rlm-d2": ("recursive", 2),
    }
    return fixed.get(method)
