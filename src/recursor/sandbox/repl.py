"""The REPL every environment runs: one namespace, the injected names, capture, echo, finals.

Used as it is by the in-process environment and, inside the worker program, by every isolating
one. Sub-calls leave through ``call_host``; where they go (a pipe, a thread) is not its business.
"""

from __future__ import annotations

import ast
import linecache
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from recursor import errors
from recursor.protocol import CappedText, clip, share
from recursor.sandbox import helpers
from recursor.sandbox.base import (
    BackgroundHandler,
    BackgroundRequest,
    BackgroundStatus,
    CellResult,
    SubcallHandler,
    SubcallRequest,
    SubcallResponse,
)
from recursor.sandbox.hostcall import BUDGET, ToolRequest, ToolResponse, check_json, check_size
from recursor.sandbox.state import final_json, fingerprint

#: sends one host call (a tool, or ``budget``) and waits for its response
ToolCaller = Callable[[ToolRequest], ToolResponse]

#: names the system prompt advertises; restored after any cell that rebinds them
RESERVED = (
    "context",
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "SHOW_VARS",
    "FINAL",
    "FINAL_VAR",
    "answer",
    "budget",
    # helpers (recursor.sandbox.helpers); prompts v2 advertise them
    "grep",
    "chunks",
    "llm_map",
)
#: the background functions, offered when the environment serves them (also protected)
BACKGROUND_NAMES = (
    "llm_query_async",
    "llm_query_batched_async",
    "rlm_query_async",
    "wait",
    "as_completed",
)


class CellInterrupted(BaseException):
    """Raised into a running cell when its time is up.

    A BaseException so that model code's ``except Exception`` does not swallow it.
    """


# -- stdout/stderr routing -----------------------------------------------------------------------


class _Route:
    """Stands in for sys.stdout/sys.stderr and sends writes to the current thread's cell.

    In-process REPLs of concurrent child runs live on different threads of one process; a
    per-thread target keeps their prints apart (the official ``rlms`` swaps the global
    ``sys.stdout`` and loses a parent's prints into a child's buffer). ``default`` catches
    writes from threads that model code starts itself (set by the worker, which owns its
    process).
    """

    def __init__(self, original: TextIO) -> None:
        self._original = original
        self._local = threading.local()
        self.default: CappedText | None = None

    def _target(self) -> Any:
        return getattr(self._local, "target", None) or self.default or self._original

    def write(self, s: str) -> int:
        return int(self._target().write(s))

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


_route_lock = threading.Lock()


def _routes() -> tuple[_Route, _Route]:
    """Install the routes once (again if someone replaced sys.stdout since)."""
    with _route_lock:
        if not isinstance(sys.stdout, _Route):
            sys.stdout = _Route(sys.stdout)
        if not isinstance(sys.stderr, _Route):
            sys.stderr = _Route(sys.stderr)
        return sys.stdout, sys.stderr


@contextmanager
def captured(out: CappedText, err: CappedText, *, own_process: bool) -> Iterator[None]:
    r_out, r_err = _routes()
    r_out._local.target, r_err._local.target = out, err
    if own_process:
        r_out.default, r_err.default = out, err
    try:
        yield
    finally:
        r_out._local.target = r_err._local.target = None
        if own_process:
            r_out.default = r_err.default = None


# -- the REPL ------------------------------------------------------------------------------------


def _no_input(prompt: object = "") -> str:
    raise OSError("input() is not available in the RLM REPL: there is no one to type")


def _cell_traceback(exc: BaseException) -> str:
    """The traceback the model is shown: only frames of code it wrote, chained errors included.

    Frames from files (recursor's own, such as the ``llm_query`` that raised a failed
    sub-call's error, and the stdlib's) are dropped: they are noise to the model and would show
    it the host's paths. Code that has no file (cells, ``exec`` of a string) keeps its frames.
    """
    shown = traceback.TracebackException.from_exception(exc)
    todo, seen = [shown], set()
    while todo:
        te = todo.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list(
            [f for f in te.stack if f.filename.startswith("<")]
        )
        todo.extend(t for t in (te.__cause__, te.__context__) if t is not None)
        todo.extend(te.exceptions or ())
    return "".join(shown.format())


class Handle:
    """A sub-call running in the background; what ``llm_query_async`` returns.

    ``done()`` says whether it has finished (asking the host); ``result(timeout=None)`` waits
    for it and returns the answer, or raises the sub-call's error (TimeoutError if ``timeout``
    seconds pass first)."""

    __slots__ = ("_known", "_repl", "id")

    def __init__(self, repl: Repl, ident: int) -> None:
        self.id = ident
        self._repl = repl
        self._known: tuple[str | None, str | None, str | None] | None = None

    def _learn(self, status: BackgroundStatus, i: int) -> None:
        if status.done[i]:
            self._known = (status.results[i], status.errors[i], status.error_types[i])

    def done(self) -> bool:
        if self._known is None:
            self._repl._poll([self], 0.0, first=False)
        return self._known is not None

    def result(self, timeout: float | None = None) -> str:
        if self._known is None:
            self._repl._poll([self], timeout, first=False)
        if self._known is None:
            raise TimeoutError(f"background call #{self.id} is still running")
        reply, error, error_type = self._known
        if error is not None:
            self._repl._raise(error, error_type)
        return reply or ""

    def __repr__(self) -> str:
        state = "pending" if self._known is None else "done"
        return f"<background call #{self.id} {state}>"


@dataclass(frozen=True, slots=True)
class HostCalls:
    """How a REPL reaches its host: sub-calls always; background calls and tools (with
    ``budget()``) where the host serves them."""

    subcall: SubcallHandler
    background: BackgroundHandler | None = None
    tool: ToolCaller | None = None
    #: the host's tools, bound by name
    tools: Sequence[str] = ()


class Repl:
    """A persistent namespace with ``context`` and the sub-call functions bound in."""

    def __init__(self, context: Any, host: HostCalls, *, own_process: bool) -> None:
        self._call_host = host.subcall
        self._call_background = call_background = host.background
        self._call_tool = host.tool
        tools = host.tools
        self._own_process = own_process
        self._final: str | None = None
        self._final_json: str | None = None
        self._cells = 0
        self.in_cell = False
        self.ns: dict[str, Any] = {"__name__": "__repl__", "__builtins__": __builtins__}
        self._reserved: dict[str, Any] = {
            "context": context,
            "llm_query": self._llm_query,
            "llm_query_batched": self._llm_query_batched,
            "rlm_query": self._rlm_query,
            "rlm_query_batched": self._rlm_query_batched,
            "SHOW_VARS": self._show_vars,
            "FINAL": self._final_value,
            "FINAL_VAR": self._final_var,
            BUDGET: self._budget,
            "grep": self._grep,
            "chunks": helpers.chunks,
            "llm_map": helpers.make_llm_map(self._llm_query_batched),
        }
        if call_background is not None:
            self._reserved.update(
                {
                    "llm_query_async": self._llm_query_async,
                    "llm_query_batched_async": self._llm_query_batched_async,
                    "rlm_query_async": self._rlm_query_async,
                    "wait": self._wait,
                    "as_completed": self._as_completed,
                }
            )
        # the host's tools are protected like the names above (restored when rebound)
        self._reserved.update({name: self._tool_function(name) for name in tools})
        self.ns.update(self._reserved)
        self.ns["answer"] = {"content": None, "ready": False}
        self.ns["input"] = _no_input

    # -- functions model code calls -------------------------------------------------------------
    def _ask(self, request: SubcallRequest) -> SubcallResponse:
        return self._call_host(request)

    def _raise(self, message: str, error_type: str | None) -> None:
        cls = getattr(errors, error_type or "", None)
        if not (isinstance(cls, type) and issubclass(cls, errors.RecursorError)):
            cls = errors.SubcallError
        raise cls(message)

    def _one(self, request: SubcallRequest) -> str:
        resp = self._ask(request)
        if resp.errors[0] is not None:
            self._raise(resp.errors[0], resp.error_types[0])
        return resp.results[0] or ""

    def _many(self, request: SubcallRequest) -> list[str]:
        if not request.prompts:
            return []
        resp = self._ask(request)
        if resp.raised:
            self._raise(resp.errors[0] or "the sub-call failed", resp.error_types[0])
        return [
            f"[error: {e}]" if e is not None else (r or "")
            for r, e in zip(resp.results, resp.errors, strict=True)
        ]

    @staticmethod
    def _prompts(prompts: Any) -> list[str]:
        if isinstance(prompts, str) or not hasattr(prompts, "__iter__"):
            raise TypeError("expected a list of prompt strings")
        return [p if isinstance(p, str) else str(p) for p in prompts]

    def _llm_query(self, prompt: Any, model: str | None = None) -> str:
        return self._one(SubcallRequest("llm", [str(prompt)], False, model))

    def _llm_query_batched(self, prompts: Any, model: str | None = None) -> list[str]:
        return self._many(SubcallRequest("llm", self._prompts(prompts), True, model))

    def _rlm_query(self, prompt: Any, context: Any = None) -> str:
        return self._one(SubcallRequest("rlm", [str(prompt)], False, None, [context]))

    def _rlm_query_batched(self, prompts: Any, contexts: Any = None) -> list[str]:
        ps = self._prompts(prompts)
        cs = [None] * len(ps) if contexts is None else list(contexts)
        if len(cs) != len(ps):
            raise ValueError(f"rlm_query_batched: {len(ps)} prompts but {len(cs)} contexts")
        return self._many(SubcallRequest("rlm", ps, True, None, cs))

    # -- background calls ---------------------------------------------------------------------
    def _background(self, request: BackgroundRequest) -> BackgroundStatus:
        assert self._call_background is not None
        status = self._call_background(request)
        if status.refused is not None:
            self._raise(status.refused, status.refused_type)
        return status

    def _start(self, request: SubcallRequest) -> list[Handle]:
        status = self._background(BackgroundRequest("start", request))
        handles = [Handle(self, h) for h in status.handles]
        for i, handle in enumerate(handles):
            handle._learn(status, i)
        return handles

    def _poll(self, handles: list[Handle], timeout: float | None, *, first: bool) -> None:
        ask = [h for h in handles if h._known is None]
        if not ask:
            return
        status = self._background(
            BackgroundRequest("wait", None, [h.id for h in ask], timeout, first)
        )
        for i, handle in enumerate(ask):
            handle._learn(status, i)

    @staticmethod
    def _handles(handles: Any) -> list[Handle]:
        items = [handles] if isinstance(handles, Handle) else list(handles)
        if not all(isinstance(h, Handle) for h in items):
            raise TypeError("expected background handles (what llm_query_async returns)")
        return items

    def _llm_query_async(self, prompt: Any, model: str | None = None) -> Handle:
        return self._start(SubcallRequest("llm", [str(prompt)], False, model))[0]

    def _llm_query_batched_async(self, prompts: Any, model: str | None = None) -> list[Handle]:
        ps = self._prompts(prompts)
        return self._start(SubcallRequest("llm", ps, True, model)) if ps else []

    def _rlm_query_async(self, prompt: Any, context: Any = None) -> Handle:
        return self._start(SubcallRequest("rlm", [str(prompt)], False, None, [context]))[0]

    def _wait(
        self, handles: Any, timeout: float | None = None
    ) -> tuple[list[Handle], list[Handle]]:
        """``(done, pending)`` once all are done or ``timeout`` seconds passed."""
        items = self._handles(handles)
        self._poll(items, timeout, first=False)
        return [h for h in items if h._known is not None], [h for h in items if h._known is None]

    def _as_completed(self, handles: Any, timeout: float | None = None) -> Iterator[Handle]:
        """The handles in the order they finish (TimeoutError after ``timeout`` seconds)."""
        pending = self._handles(handles)
        until = None if timeout is None else time.monotonic() + timeout
        while pending:
            done = [h for h in pending if h._known is not None]
            if not done:
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(pending)} background calls still running")
                self._poll(pending, left, first=True)
                continue
            for h in done:
                pending.remove(h)
                yield h

    def _host_call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._call_tool is None:
            raise RuntimeError(f"{name}(): this REPL has no host to ask")
        check_json(list(args), f"{name}(): argument list")
        check_json(kwargs, f"{name}(): keyword arguments")
        request = ToolRequest(name, list(args), dict(kwargs))
        check_size([request.args, request.kwargs], f"{name}(): the arguments")
        response = self._call_tool(request)
        if response.error is not None:
            cls = getattr(errors, response.error_type or "", None)
            if not (isinstance(cls, type) and issubclass(cls, errors.RecursorError)):
                cls = errors.ToolError
            raise cls(response.error)
        return response.value

    def _tool_function(self, name: str) -> Callable[..., Any]:
        def tool(*args: Any, **kwargs: Any) -> Any:
            return self._host_call(name, args, kwargs)

        tool.__name__ = tool.__qualname__ = name
        tool.__doc__ = f"The host's tool {name!r}: JSON arguments in, a JSON value out."
        return tool

    def _budget(self) -> dict[str, Any]:
        return dict(self._host_call(BUDGET, (), {}))

    def _grep(self, pattern: Any, context: Any = None, window: int = 0) -> list[helpers.Hit]:
        source = self._reserved["context"] if context is None else context
        return helpers.grep(pattern, source, window)

    def _show_vars(self) -> None:
        rows = []
        for name, value in self.ns.items():
            if (
                name.startswith("_")
                or name in self._reserved
                or name in RESERVED
                or name == "input"
            ):
                continue
            if type(value).__name__ in ("module", "function", "type", "builtin_function_or_method"):
                continue
            size = f", len {len(value):,}" if hasattr(value, "__len__") else ""
            rows.append(f"{name}: {type(value).__name__}{size}")
        print("\n".join(rows) if rows else "(no variables yet)")

    def _final_value(self, value: Any) -> None:
        self._final = value if isinstance(value, str) else str(value)
        self._final_json = final_json(value)

    def _final_var(self, name: Any) -> None:
        if not isinstance(name, str):
            # Small models often pass the variable itself; its value is what they meant.
            self._final = str(name)
            self._final_json = final_json(name)
            return
        key = name.strip().strip("'\"")
        if key in self.ns and key not in RESERVED:
            self._final = str(self.ns[key])
            self._final_json = final_json(self.ns[key])
            return
        raise NameError(
            f"FINAL_VAR({name!r}): no variable named {key!r}. Assign the answer to a variable "
            "first (result = ...), then FINAL_VAR('result'); or call FINAL(value)."
        )

    # -- running cells ------------------------------------------------------------------------
    def bind(self, name: str, value: Any) -> None:
        """Bind ``value`` to ``name``, protected like ``context`` (restored after any cell that
        rebinds it): a conversation's ``history``, a context added later (``context_1``)."""
        if not name.isidentifier() or name in RESERVED:
            raise ValueError(f"cannot bind {name!r}")
        self._reserved[name] = value
        self.ns[name] = value

    def get_var(self, name: str) -> str | None:
        if name in self.ns and name not in RESERVED and name not in self._reserved:
            return str(self.ns[name])
        return None

    def execute(self, code: str, output_limit: int) -> CellResult:
        self._cells += 1
        filename = f"<cell {self._cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        out, err = CappedText(output_limit), CappedText(output_limit)
        self._final = None
        self._final_json = None
        error: str | None = None
        timed_out = False
        t0 = time.perf_counter()
        with captured(out, err, own_process=self._own_process):
            try:
                self.in_cell = True
                try:
                    self._run(code, filename)
                finally:
                    # cleared first thing, so a second interrupt cannot land in our handlers
                    self.in_cell = False
            except CellInterrupted as exc:
                timed_out = True
                error = _cell_traceback(exc).rsplit("\n", 2)[0] + (
                    "\nTimeoutError: the cell ran past its time limit and was interrupted here\n"
                )
            except SyntaxError as exc:
                error = "".join(traceback.format_exception_only(type(exc), exc))
            except BaseException as exc:
                error = _cell_traceback(exc)
        duration = time.perf_counter() - t0
        notes = self._restore_reserved()
        final, as_json = self._final, self._final_json
        ans = self.ns["answer"]
        if final is None and ans.get("ready"):
            final = "" if ans.get("content") is None else str(ans["content"])
            as_json = final_json(ans.get("content"))
        error = error or None
        raw = out.total + err.total + len(error or "")
        b_out, b_err, b_exc = share([out.total, err.total, len(error or "")], output_limit)
        return CellResult(
            stdout=out.render(b_out),
            stderr=err.render(b_err),
            error=None if error is None else clip(error, b_exc),
            duration_s=duration,
            final=final,
            timed_out=timed_out,
            notes=notes,
            raw_chars=raw,
            final_json=as_json if final is not None else None,
            fingerprint=fingerprint(self.ns, (*RESERVED, "input")),
        )

    def _run(self, code: str, filename: str) -> None:
        tree = ast.parse(code, filename=filename, mode="exec")
        last: ast.Expression | None = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body[-1].value)
            tree.body.pop()
        exec(compile(tree, filename, "exec"), self.ns)
        if last is not None:
            value = eval(compile(last, filename, "eval"), self.ns)
            if value is not None:
                print(repr(value))

    def _restore_reserved(self) -> list[str]:
        notes = []
        for name, obj in self._reserved.items():
            if self.ns.get(name) is not obj:
                self.ns[name] = obj
                notes.append(f"`{name}` is protected; it was restored after this cell.")
        if not isinstance(self.ns.get("answer"), dict):
            self.ns["answer"] = {"content": None, "ready": False}
            notes.append("`answer` must stay a dict {'content': ..., 'ready': bool}; it was reset.")
        return notes
