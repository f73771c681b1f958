"""Every error recursor raises, under one root.

    RecursorError
    ├── ConfigurationError        bad arguments, unknown model or environment
    │   ├── ModelNotInstalled         an embedded model's part packages are missing
    │   ├── RLMClosed                 the RLM was closed (``close()``, or its ``with`` ended)
    │   ├── ToolNameError             a tool whose name the REPL cannot bind (shadows, invalid)
    │   └── ModelIntegrityError       an embedded model file has the wrong size or sha256
    ├── ContextError              a context that cannot be loaded or shipped to a REPL
    ├── LimitExceeded             a budget ran out (``.limit`` names it)
    │   ├── IterationLimitExceeded    max_iterations, and no final answer after the last call
    │   ├── DepthLimitExceeded        a sub-call asked for a depth past max_depth
    │   ├── SubcallLimitExceeded      max_subcalls
    │   ├── BatchLimitExceeded        max_batch (one batched sub-call, refused whole)
    │   ├── TokenLimitExceeded        max_tokens (input + output, whole tree)
    │   ├── CostLimitExceeded         max_cost_usd (whole tree, priced calls only)
    │   ├── ToolLimitExceeded         max_tool_calls (whole tree)
    │   ├── NoProgress                max_cost_without_progress_usd (the cost circuit breaker)
    │   ├── RunTimeout                timeout_s (whole run, wall clock)
    │   └── CellTimeout               cell_timeout_s (one cell)
    ├── OutputValidationError     a typed answer still invalid after max_output_retries
    ├── SandboxError              the REPL could not be started or talked to
    │   ├── WorkerCrashed             the worker process died
    │   └── ProtocolError             a malformed frame on the worker channel
    ├── SubcallError              a sub-call failed (raised inside model code, or for a child run)
    ├── ToolError                 a host tool failed (raised inside model code)
    │   └── ToolTimeout               it ran past its ``timeout_s`` and was cancelled
    ├── LMError                   a model call failed, mapped at the provider boundary
    │   ├── AuthenticationError
    │   ├── RateLimitError            (``.retry_after`` seconds when the server said)
    │   ├── LMTimeoutError
    │   ├── LMConnectionError         server unreachable
    │   ├── ContextWindowExceeded     the prompt does not fit the model's window
    │   └── BadResponseError          the server answered something we cannot use
    ├── ConversationError         a session (``rlm.session``) cannot do what was asked
    │   ├── ConversationBusy          an ``aask`` while another ask of the session runs
    │   ├── ConversationClosed        the session was closed (``close()``, idle timeout)
    │   └── ResumeError               a saved session that cannot be resumed (file, contexts)
    └── RunAborted                the run cannot go on: raised out of ``completion``, never shown
        │                         to the model, never retried (the core catches only this base)
        ├── ScriptExhausted           a ScriptedLM ran out of replies (a test bug)
        └── ReplayExhausted           a replayed root asked for more replies than were recorded

Budget errors are typed so callers can ``except LimitExceeded`` and never need to
match on message strings (pydantic-ai's ``UsageLimitExceeded`` is the model).
"""

from __future__ import annotations


class RecursorError(Exception):
    """Root of every error raised by recursor."""


class ConfigurationError(RecursorError):
    """An argument, model name or environment name that cannot work."""


class ContextError(RecursorError):
    """A context that cannot be loaded, decoded or shipped to the REPL."""


class LimitExceeded(RecursorError):
    """A budget of :class:`recursor.Limits` ran out."""

    limit: str = "limit"
    #: the value of ``RLMResult.stop_reason`` a run that hits this limit ends with
    stop_reason: str = "budget"

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        if limit is not None:
            self.limit = limit


class IterationLimitExceeded(LimitExceeded):
    limit = "max_iterations"
    stop_reason = "max_iterations"


class DepthLimitExceeded(LimitExceeded):
    limit = "max_depth"


class SubcallLimitExceeded(LimitExceeded):
    limit = "max_subcalls"


class BatchLimitExceeded(LimitExceeded):
    limit = "max_batch"


class TokenLimitExceeded(LimitExceeded):
    limit = "max_tokens"


class CostLimitExceeded(LimitExceeded):
    limit = "max_cost_usd"


class ToolLimitExceeded(LimitExceeded):
    limit = "max_tool_calls"


class NoProgress(LimitExceeded):
    """The cost circuit breaker: ``max_cost_without_progress_usd`` spent while the REPL's
    variables did not change."""

    limit = "max_cost_without_progress_usd"
    stop_reason = "no_progress"


class RunTimeout(LimitExceeded):
    limit = "timeout_s"
    stop_reason = "timeout"


class CellTimeout(LimitExceeded):
    limit = "cell_timeout_s"
    stop_reason = "timeout"


class OutputValidationError(RecursorError):
    """A typed answer (``output_type=``) still did not validate after ``max_output_retries``
    corrections; ``errors`` lists what was wrong with the last one, ``answer`` is its text."""

    def __init__(self, message: str, *, errors: list[str], answer: str | None) -> None:
        super().__init__(message)
        self.errors = errors
        self.answer = answer


class SandboxError(RecursorError):
    """The REPL could not be started, or its channel broke."""


class WorkerCrashed(SandboxError):
    """The worker process died (signal, rlimit, or os._exit in model code)."""


class ProtocolError(SandboxError):
    """A frame on the worker channel was malformed or unexpected."""


class SubcallError(RecursorError):
    """A sub-call (llm_query, rlm_query, a child run) failed."""


class ToolError(RecursorError):
    """A host tool raised, was unknown, or took or returned what JSON cannot carry."""


class ToolTimeout(ToolError):
    """A host tool ran past its ``timeout_s``: cancelled (async) or abandoned (sync)."""


class LMError(RecursorError):
    """A model call failed. Backends map provider errors onto the subclasses."""


class AuthenticationError(LMError):
    """Missing or rejected credentials."""


class RateLimitError(LMError):
    """The provider rate-limited us (HTTP 429)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LMTimeoutError(LMError):
    """The provider did not answer in time."""


class LMConnectionError(LMError):
    """The provider could not be reached."""


class ContextWindowExceeded(LMError):
    """The prompt does not fit the model's context window."""


class BadResponseError(LMError):
    """The provider answered with something unusable (5xx, malformed body, empty choice)."""


class ConversationError(RecursorError):
    """A session (``rlm.session``) cannot do what was asked."""


class ConversationBusy(ConversationError):
    """An ``aask`` while another ask of the same session runs (asks never interleave)."""


class ConversationClosed(ConversationError):
    """The session was closed, by ``close()``, its ``with`` block or its idle timeout."""


class ResumeError(ConversationError):
    """A saved session that cannot be resumed: a bad file, or contexts that are not the ones
    recorded."""


class RunAborted(RecursorError):
    """The run cannot go on, and no model should be told: it propagates out of ``completion``.

    The core knows only this base; the fakes and tools that stop a run (a scripted model out of
    replies, a replay past its recording) subclass it, so nothing in the core names them.
    """


class ScriptExhausted(RunAborted, AssertionError):
    """A :class:`recursor.testing.ScriptedLM` was asked for more replies than it holds."""


class ReplayExhausted(RunAborted):
    """A replayed root run asked for a model reply past the end of its recording."""


class RLMClosed(ConfigurationError):
    """The :class:`~recursor.RLM` was closed: make a new one (its models may be reused)."""


class ModelNotInstalled(ConfigurationError):
    """The packages that carry an embedded model (``recursor[local]``) are not installed."""


class ModelIntegrityError(ConfigurationError):
    """An embedded model file does not have the pinned size or sha256 (never loaded then)."""


class ToolNameError(ConfigurationError):
    """A tool named like a REPL name (``context``, ``FINAL``, ...), a builtin or a keyword, or
    not an identifier, or two tools of one name: refused when the RLM is made."""
