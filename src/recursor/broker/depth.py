"""What the sub-call functions do at each depth of a run tree, decided in one place.

The REPL of the run at ``depth`` makes its sub-calls one level down, at ``depth + 1``:

* ``llm_query`` is one plain call of the model for ``depth + 1``, while ``depth + 1 <=
  max_depth``; past it (``max_depth=0``) it is not available;
* ``rlm_query`` spawns a child RLM at ``depth + 1`` while ``depth + 1 < max_depth``; at the last
  level (``depth + 1 == max_depth``) it falls back to one plain call of that level's model,
  with its context appended to the prompt; past it, it is not available.

The system prompt tells the model what the functions do here (:mod:`recursor.rlm`) and the
broker does what it was told (:mod:`recursor.broker.batch`): both read this plan, so the two
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recursor.errors import ConfigurationError

#: what a sub-call does: run a child RLM, make one plain model call, or refuse
Mode = Literal["child", "plain", "none"]
#: the two families of sub-call functions (``*_batched`` are the same kinds)
Kind = Literal["llm", "rlm"]


@dataclass(frozen=True, slots=True)
class DepthPlan:
    """The rule for a tree of ``max_depth`` (0: REPL only; 1: + llm_query; >= 2: child RLMs)."""

    max_depth: int

    def __post_init__(self) -> None:
        if self.max_depth < 0:
            raise ConfigurationError("max_depth must be >= 0")

    def mode(self, depth: int, kind: Kind) -> Mode:
        """What a ``kind`` sub-call made by the REPL at ``depth`` does."""
        target = depth + 1
        if target > self.max_depth:
            return "none"
        if kind == "rlm" and target < self.max_depth:
            return "child"
        return "plain"

    def max_workers(self, concurrency: int) -> int:
        """How many REPL workers the tree can run at once: the root's, and ``concurrency``
        child runs at each level that spawns them (the memory cap shares the machine by it)."""
        return 1 + concurrency * max(0, self.max_depth - 1)

    def llm_query(self, depth: int) -> bool:
        """Whether ``llm_query`` works in the REPL at ``depth``."""
        return self.mode(depth, "llm") != "none"

    def rlm_query(self, depth: int) -> Mode:
        """What ``rlm_query`` does in the REPL at ``depth``."""
        return self.mode(depth, "rlm")

    def refusal(self, depth: int, kind: Kind) -> str:
        """What the model is told when it calls a function its depth does not offer."""
        name = "llm_query" if kind == "llm" else "rlm_query"
        only = " (REPL only)" if self.max_depth == 0 else ""
        return (
            f"{name} is not available at depth {depth}: this RLM runs with "
            f"max_depth={self.max_depth}{only}; solve the task with code"
        )
