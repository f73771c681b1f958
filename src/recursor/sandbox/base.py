"""The Environment seam: how a REPL session is started, and what crosses it.

An :class:`Environment` opens :class:`Session` objects; a session runs cells in one persistent
namespace holding the context and answers sub-call requests from model code through the
``handler`` it was given. Every isolating environment runs the same worker program
(:mod:`recursor.sandbox.worker`); an environment only decides how that worker is launched and
confined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from recursor.context import Context, ContextMeta
from recursor.sandbox.hostcall import ToolHandler

SubcallKind = Literal["llm", "rlm"]


@dataclass(frozen=True, slots=True)
class SubcallRequest:
    """What model code asked for: ``llm_query[_batched]`` or ``rlm_query[_batched]``."""

    kind: SubcallKind
    prompts: list[str]
    batched: bool = False
    model: str | None = None
    #: rlm only: one context per prompt (None: the prompt is the child's context)
    contexts: list[Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubcallRequest:
        return cls(
            kind=d["kind"],
            prompts=[str(p) for p in d["prompts"]],
            batched=bool(d.get("batched", False)),
            model=d.get("model"),
            contexts=d.get("contexts"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SubcallResponse:
    """One result or one error per prompt, in order."""

    results: list[str | None]
    errors: list[str | None]
    #: the recursor.errors class name of each error, so the REPL can raise the typed error
    error_types: list[str | None]
    #: the handler raised: the whole call fails in the cell, even a batch (whose failed items
    #: are otherwise error strings). Carries ``subcall_errors="raise"`` across a worker channel.
    raised: bool = False

    @classmethod
    def failure(
        cls, n: int, message: str, error_type: str = "SubcallError", *, raised: bool = False
    ) -> SubcallResponse:
        return cls([None] * n, [message] * n, [error_type] * n, raised)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SubcallResponse:
        return cls(
            list(d["results"]),
            list(d["errors"]),
            list(d["error_types"]),
            bool(d.get("raised", False)),
        )


#: serves sub-calls for a session; called on a host thread, may block
SubcallHandler = Callable[[SubcallRequest], SubcallResponse]


@dataclass(frozen=True, slots=True)
class BackgroundRequest:
    """From model code, about sub-calls that run in the background (``llm_query_async``...).

    ``start``: run ``request``, one handle per prompt, and answer at once. ``wait``: the state
    of ``handles`` after waiting up to ``timeout`` seconds (0: just look; None: no bound) for
    all of them, or for the first one when ``first``."""

    op: Literal["start", "wait"]
    request: SubcallRequest | None = None
    handles: list[int] = field(default_factory=list)
    timeout: float | None = 0.0
    first: bool = False


@dataclass(frozen=True, slots=True)
class BackgroundStatus:
    """The handles of a request, in order, with what is known of each (parallel lists)."""

    handles: list[int]
    done: list[bool]
    results: list[str | None]
    errors: list[str | None]
    error_types: list[str | None]
    #: the request itself was refused (an unknown handle, too many handles): why, and the
    #: recursor.errors class the REPL raises
    refused: str | None = None
    refused_type: str | None = None

    @classmethod
    def refusal(cls, message: str, error_type: str) -> BackgroundStatus:
        return cls([], [], [], [], [], message, error_type)


#: serves background sub-calls for a session; called on a host thread, may block (``wait``)
BackgroundHandler = Callable[[BackgroundRequest], BackgroundStatus]


@dataclass(slots=True)
class CellResult:
    """What one cell did, with output already cut to the budget it was given."""

    stdout: str = ""
    stderr: str = ""
    #: the formatted traceback (or SyntaxError) when the cell raised
    error: str | None = None
    duration_s: float = 0.0
    #: set when FINAL / FINAL_VAR was called, or ``answer["ready"]`` became true
    final: str | None = None
    #: the cell ran past its deadline and was interrupted or killed
    timed_out: bool = False
    #: the REPL was restarted (the worker died or had to be killed): earlier variables are gone
    lost_state: bool = False
    #: things the model should know (a protected name restored, ...)
    notes: list[str] = field(default_factory=list)
    #: characters of stdout+stderr+error before truncation
    raw_chars: int = 0
    #: the final value as JSON text when it was not a string (``FINAL({"a": 1})``), so a typed
    #: answer is checked against the object the model meant, not its ``str()``
    final_json: str | None = None
    #: a digest of the REPL's variables after the cell (:mod:`recursor.sandbox.state`); the
    #: cost circuit breaker compares them to tell a run that gets somewhere from one that loops
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellResult:
        return cls(**d)

    @property
    def shown_chars(self) -> int:
        return len(self.stdout) + len(self.stderr) + len(self.error or "")


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """Everything an environment needs to open a session."""

    context: Context
    handler: SubcallHandler
    #: the depth of the RLM that owns this REPL (0 for the root)
    depth: int = 0
    #: serves ``llm_query_async`` and the other background functions (None: not offered)
    background: BackgroundHandler | None = None
    #: serves the REPL's tool calls and ``budget()`` (None: no tools, and budget() fails)
    tools: ToolHandler | None = None


class Session(Protocol):
    """One persistent REPL."""

    @property
    def meta(self) -> ContextMeta: ...

    def run(self, code: str, *, deadline: float | None, output_limit: int) -> CellResult:
        """Run one cell; ``deadline`` is a ``time.monotonic()`` value the cell must end by."""
        ...

    def get_var(self, name: str, *, deadline: float | None) -> str | None:
        """``str()`` of a variable of the namespace, or None when it is not defined."""
        ...

    def bind(self, name: str, value: Any, *, deadline: float | None) -> ContextMeta:
        """Bind a JSON-able ``value`` to ``name``, protected like ``context`` (a conversation's
        ``history``, a context added later as ``context_1``) and kept across a REPL restart;
        its metadata, computed where it lives."""
        ...

    def close(self) -> None: ...


class Environment(Protocol):
    """Starts sessions; everything else is the session's. ``close`` releases what the
    environment keeps between sessions (a spare worker, a fork server); sessions it opened
    close by themselves."""

    name: str

    def open(self, spec: SessionSpec) -> Session: ...

    def close(self) -> None: ...
