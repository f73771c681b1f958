"""What a run returns: :class:`RLMResult` (the same type for ``completion`` and a session's
``ask``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recursor.errors import RecursorError
from recursor.trace import Trace
from recursor.usage import UsageReport


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """The route a routed completion took (:mod:`recursor.routing`), and why."""

    #: "direct" | "repl" | "recursive"
    route: str
    #: why this route: the rule or policy entry that chose it, in words
    reason: str
    #: the max_depth the run used (None for direct)
    depth: int | None = None
    #: "constant" | "linear" | "quadratic" when the question was classified, else None
    complexity: str | None = None
    #: set when the cost circuit breaker stopped the run and the summarization baseline answered:
    #: dollars the stopped run had spent
    fallback_after_usd: float | None = None
    #: the estimates behind the choice (context tokens, window, margin, ...)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RLMResult:
    """What ``completion`` returns; ``answer`` is None unless the run finished by the protocol."""

    answer: str | None
    stop_reason: str  # "final" | "max_iterations" | "budget" | "timeout" | "error"
    iterations: int
    usage: UsageReport
    trace: Trace
    elapsed_s: float
    run_id: str
    error: RecursorError | None = None
    #: the validated value when ``output_type=`` was given (``answer`` stays the text)
    output: Any = None
    #: which route ran and why, when the RLM routes (``route=``); None otherwise
    route: RouteInfo | None = None

    @property
    def ok(self) -> bool:
        return self.stop_reason == "final"
