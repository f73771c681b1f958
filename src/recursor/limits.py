"""Budgets, and the one ledger a whole recursion tree draws them from.

A run creates one :class:`Ledger`; every child RLM and every sub-call of the tree records into
that same object, so children draw from what the parent has left and usage rolls up by
construction rather than by copying numbers upward. It is thread-safe because sub-calls of a
batch, and children of ``rlm_query_batched``, run on threads of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from recursor.errors import (
    ConfigurationError,
    CostLimitExceeded,
    LimitExceeded,
    RunTimeout,
    SubcallLimitExceeded,
    TokenLimitExceeded,
    ToolLimitExceeded,
)
from recursor.usage import Usage, UsageReport


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard budgets for one ``completion``, shared by its whole tree. ``None`` is unlimited.

    Model code is untrusted, so the sub-call budgets have defaults: ``max_subcalls=10_000``
    for the whole tree (each made call is a trace event and a ledger entry the host keeps) and
    ``max_batch=2_000`` prompts in one ``llm_query_batched`` / ``rlm_query_batched``: a bigger
    batch is refused whole, before anything is reserved or traced, with a
    ``BatchLimitExceeded`` raised in the cell (200,000 empty prompts once held 789 MB of trace
    events). Pass ``None`` to lift either.
    """

    #: root model turns (each reply, its cells and their observation)
    max_iterations: int = 30
    #: sub-calls of the whole tree: each llm_query, each batch item, each rlm_query
    max_subcalls: int | None = 10_000
    #: prompts in one batched sub-call; a bigger batch is refused whole (BatchLimitExceeded)
    max_batch: int | None = 2_000
    #: input + output tokens of every model call of the tree
    max_tokens: int | None = None
    #: dollars over every priced call of the tree (calls with unknown price are not counted)
    max_cost_usd: float | None = None
    #: wall-clock seconds for the whole run, enforced even while a cell or a sub-call hangs
    timeout_s: float | None = None
    #: wall-clock seconds for one cell; an overrunning cell is interrupted, then killed
    cell_timeout_s: float | None = 60.0
    #: characters of stdout / stderr / traceback fed back per cell (head + tail kept)
    max_output_chars: int = 20_000
    #: calls of the host's tools (``RLM(tools=...)``) by the whole tree; more raise
    #: ToolLimitExceeded in the cell (each call is a trace event the host keeps)
    max_tool_calls: int | None = 10_000
    #: the cost circuit breaker: dollars the tree may spend while the root REPL's variables do
    #: not change (no new variable, no new value); then the run stops with ``NoProgress``, and
    #: a routed run falls back to the summarization baseline
    max_cost_without_progress_usd: float | None = None

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ConfigurationError("max_iterations must be >= 1")
        if self.max_output_chars < 200:
            raise ConfigurationError("max_output_chars must be >= 200")
        for name in (
            "max_subcalls",
            "max_batch",
            "max_tokens",
            "max_cost_usd",
            "timeout_s",
            "cell_timeout_s",
            "max_tool_calls",
            "max_cost_without_progress_usd",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must be >= 0 or None")


class Ledger:
    """Usage, sub-call count and deadline of one run tree."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self.started = clock()
        self.deadline = None if limits.timeout_s is None else self.started + limits.timeout_s
        self._lock = threading.Lock()
        self._by_model: dict[str, Usage] = {}
        self._total = Usage()
        self._subcalls = 0
        self._tool_calls = 0
        self._tools_refused = False
        #: dollars set aside for priced calls in flight (see :meth:`reserve_cost`)
        self._reserved_cost = 0.0
        #: every limit that refused something, in order (for the trace and the result)
        self.hits: list[LimitExceeded] = []

    # -- time ---------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self._clock() - self.started

    def remaining(self) -> float | None:
        """Seconds left in the run, or None when there is no run timeout."""
        return None if self.deadline is None else max(0.0, self.deadline - self._clock())

    def cell_deadline(self) -> tuple[float | None, bool]:
        """The clock time a cell must end by; whether the run deadline (not the cell's) sets it."""
        now = self._clock()
        cell = None if self.limits.cell_timeout_s is None else now + self.limits.cell_timeout_s
        run = self.deadline
        if run is not None and (cell is None or run <= cell):
            return run, True
        return cell, False

    def now(self) -> float:
        return self._clock()

    def check_time(self) -> None:
        if self.deadline is not None and self._clock() >= self.deadline:
            self._refuse(RunTimeout(f"timeout_s={self.limits.timeout_s} elapsed"))

    # -- budgets ------------------------------------------------------------------------
    def check_model_call(self, estimated_input_tokens: int = 0) -> None:
        """Raise the matching LimitExceeded if a model call may not start now."""
        self.check_time()
        lim = self.limits
        with self._lock:
            used = self._total.total_tokens
            cost = (self._total.cost_usd or 0.0) + self._reserved_cost
        if lim.max_tokens is not None and used + estimated_input_tokens > lim.max_tokens:
            self._refuse(
                TokenLimitExceeded(
                    f"max_tokens={lim.max_tokens}: {used} used, this call needs "
                    f"~{estimated_input_tokens} more input tokens"
                )
            )
        if lim.max_cost_usd is not None and cost >= lim.max_cost_usd:
            self._refuse(CostLimitExceeded(f"max_cost_usd={lim.max_cost_usd}: ${cost:.6f} spent"))

    def reserve_subcalls(self, n: int) -> int:
        """Reserve up to ``n`` sub-calls; returns how many were granted (the rest must not run)."""
        cap = self.limits.max_subcalls
        with self._lock:
            granted = n if cap is None else max(0, min(n, cap - self._subcalls))
            self._subcalls += granted
        if granted < n:
            self._note(
                SubcallLimitExceeded(
                    f"max_subcalls={cap}: {n - granted} of {n} requested sub-calls refused"
                )
            )
        return granted

    def reserve_tool_call(self) -> None:
        """Count one tool call, or raise ToolLimitExceeded (noted) when none is left."""
        cap = self.limits.max_tool_calls
        with self._lock:
            if cap is None or self._tool_calls < cap:
                self._tool_calls += 1
                return
            first = not self._tools_refused
            self._tools_refused = True
        exc = ToolLimitExceeded(f"max_tool_calls={cap}: every tool call was used")
        if first:  # noted once: a cell looping on a refused tool must not grow the hits
            self._note(exc)
        raise exc

    @property
    def tool_calls(self) -> int:
        with self._lock:
            return self._tool_calls

    def left(self) -> dict[str, float | int | None]:
        """What is left of the tree-wide budgets now (None: unlimited); ``budget()`` in the
        REPL adds the run's own iterations and depth."""
        lim = self.limits
        with self._lock:
            tokens = self._total.total_tokens
            cost = (self._total.cost_usd or 0.0) + self._reserved_cost
            subcalls, tools = self._subcalls, self._tool_calls

        def rest(cap: float | None, used: float) -> float | None:
            return None if cap is None else max(0, cap - used)

        seconds = self.remaining()
        return {
            "subcalls": rest(lim.max_subcalls, subcalls),
            "tool_calls": rest(lim.max_tool_calls, tools),
            "tokens": rest(lim.max_tokens, tokens),
            "cost_usd": None
            if lim.max_cost_usd is None
            else round(max(0.0, lim.max_cost_usd - cost), 6),
            "seconds": None if seconds is None else round(seconds, 3),
        }

    def release_subcalls(self, n: int) -> None:
        """Give back ``n`` reserved sub-calls that were never made (cancelled before starting)."""
        with self._lock:
            self._subcalls = max(0, self._subcalls - n)

    def reserve_cost(self, amount: float) -> bool:
        """Set ``amount`` dollars aside for a call about to start; False (and nothing set aside)
        when spent + reserved + amount would pass ``max_cost_usd``. Release it with
        :meth:`release_cost` when the call ends, after recording its real usage."""
        cap = self.limits.max_cost_usd
        with self._lock:
            spent = (self._total.cost_usd or 0.0) + self._reserved_cost
            if cap is not None and spent + amount > cap:
                return False
            self._reserved_cost += amount
            return True

    def release_cost(self, amount: float) -> None:
        with self._lock:
            self._reserved_cost = max(0.0, self._reserved_cost - amount)

    def note(self, exc: LimitExceeded) -> None:
        """Record a limit that refused something without raising (a refused batch item)."""
        self._note(exc)

    @property
    def subcalls(self) -> int:
        with self._lock:
            return self._subcalls

    def record(self, model: str, usage: Usage) -> None:
        with self._lock:
            self._by_model[model] = self._by_model.get(model, Usage()) + usage
            self._total = self._total + usage

    def spent_usd(self) -> float:
        """Dollars spent so far by priced calls of the tree."""
        with self._lock:
            return self._total.cost_usd or 0.0

    def report(self) -> UsageReport:
        with self._lock:
            return UsageReport(total=self._total, by_model=dict(self._by_model))

    # -- limit hits ---------------------------------------------------------------------
    def _note(self, exc: LimitExceeded) -> None:
        with self._lock:
            self.hits.append(exc)

    def _refuse(self, exc: LimitExceeded) -> None:
        self._note(exc)
        raise exc
