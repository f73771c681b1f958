"""What a run returns: :class:`RLMResult` (the same type for ``completion`` and a session's
``ask``)."""

from __future__ import annotations

from dataclasses import dataclass

from recursor.errors import RecursorError
from recursor.trace import Trace
from recursor.usage import UsageReport


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

    @property
    def ok(self) -> bool:
        return self.stop_reason == "final"
