"""What a broker serving one REPL knows about its run tree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recursor._cancel import Cancel
from recursor.broker.depth import DepthPlan
from recursor.broker.runtime import BrokerRuntime
from recursor.limits import Ledger
from recursor.lm.base import LM
from recursor.trace import Trace

#: runs a child RLM: (prompt, context, depth, cancel scope) -> (answer or None, stop_reason,
#: child run id); the child stops early once the scope is set
ChildRunner = Callable[[str, Any, int, Cancel], tuple[str | None, str, str]]


@dataclass(slots=True)
class BrokerScope:
    """What a broker serving one REPL needs to know about its run tree."""

    depth: int
    #: what llm_query / rlm_query do at each depth
    plan: DepthPlan
    run_id: str
    ledger: Ledger
    trace: Trace
    #: the tree's loop, limits and cache (shared by every REPL of the tree)
    runtime: BrokerRuntime
    #: the model for a depth; named models for ``llm_query(..., model=NAME)``
    lm_for_depth: Callable[[int], LM]
    named: dict[str, LM]
    run_child: ChildRunner
    #: set when something happened that must fail the whole run (a ScriptedLM ran out)
    fatal: list[BaseException]
    #: the run's scope (set when the completion ends); a call also stops with its cell's
    cancel: Cancel
