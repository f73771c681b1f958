"""The RLM's tools, and the handler that serves one REPL's calls of them.

:class:`ToolBox` is made once per RLM from ``tools=[...]``: it opens the tool sources (MCP
servers), checks that every name can be bound and none twice, and owns the loop the tools run
on; :meth:`ToolBox.close` (from ``RLM.close``) releases all of it. :class:`ToolScope` is what
one run node gives its REPL (:class:`~recursor.sandbox.hostcall.ToolHandler`): it counts each
call in the tree's ledger (``Limits.max_tool_calls``), runs it with its timeout, checks that
the result is JSON, and records a :class:`~recursor.trace.ToolCalled` event. It also answers
``budget()`` from the ledger.

The requests come from model code, through a worker channel the host does not trust: a name
that is no tool, arguments over :data:`~recursor.sandbox.hostcall.MAX_TOOL_JSON`, or more calls
than the limit each get an error response; nothing a request holds can make the host raise,
block or run anything but the caller's own functions.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from recursor.errors import LimitExceeded, ToolError, ToolNameError
from recursor.limits import Ledger
from recursor.sandbox.hostcall import (
    BUDGET,
    ToolRequest,
    ToolResponse,
    check_json,
    check_size,
)
from recursor.tools.loop import LoopThread
from recursor.tools.tool import Tool, as_tool
from recursor.trace import LimitHit, ToolCalled, Trace
from recursor.trace.events import prompt_preview


class ToolSource(ABC):
    """Tools that come from somewhere the RLM must connect to (an MCP server): opened when the
    RLM is made, closed when it closes."""

    @abstractmethod
    def open(self) -> list[Tool]:
        """Connect and return the tools (raise a RecursorError when that fails)."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect; idempotent."""


ToolItem = Tool | ToolSource | Callable[..., Any]


class ToolBox:
    """The tools of one RLM, by name, and the loop they run on (started at the first call)."""

    def __init__(self, items: Sequence[ToolItem] = ()) -> None:
        self._sources: list[ToolSource] = []
        self._tools: dict[str, Tool] = {}
        self._loop: LoopThread | None = None
        self._lock = threading.Lock()
        self._closed = False
        try:
            for item in items:
                if isinstance(item, ToolSource):
                    self._sources.append(item)
                    found = item.open()
                else:
                    found = [as_tool(item)]
                for tool in found:
                    if tool.name in self._tools:
                        raise ToolNameError(f"two tools are named {tool.name!r}")
                    self._tools[tool.name] = tool
        except BaseException:
            self.close()
            raise

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def prompt_lines(self) -> list[str]:
        return [tool.prompt_line() for tool in self._tools.values()]

    def scope(
        self,
        *,
        ledger: Ledger,
        trace: Trace,
        run_id: str,
        depth: int,
        budget_extra: Callable[[], dict[str, Any]],
    ) -> ToolScope:
        return ToolScope(self, ledger, trace, run_id, depth, budget_extra)

    def _runner(self) -> LoopThread:
        with self._lock:
            if self._closed:
                raise RuntimeError("the RLM was closed")
            if self._loop is None:
                self._loop = LoopThread("recursor-tools")
            return self._loop

    def start(self, tool: Tool, request: ToolRequest, done: Callable[[ToolResponse], None]) -> None:
        """Run ``tool``; ``done`` gets the response, once (never an exception)."""
        once = _Once(done)
        try:
            if tool.is_async:
                self._start_async(tool, request, once)
            else:
                self._start_sync(tool, request, once)
        except Exception as exc:  # the box was closed under a running completion
            once(ToolResponse.failure(f"tool {tool.name!r} cannot run: {exc}"))

    def _start_async(self, tool: Tool, request: ToolRequest, once: _Once) -> None:
        """A task on the loop: a timeout cancels it."""

        async def call() -> ToolResponse:
            try:
                coro = tool.fn(*request.args, **request.kwargs)
                value = await asyncio.wait_for(coro, tool.timeout_s)
            except TimeoutError:
                return _timed_out(tool, "cancelled")
            except Exception as exc:
                return _raised(tool, exc)
            return _checked(tool, value)

        def finished(f: Future[ToolResponse]) -> None:
            try:
                once(f.result())
            except BaseException as exc:  # cancelled: the box was closed under the call
                once(ToolResponse.failure(f"tool {tool.name!r} was stopped ({type(exc).__name__})"))

        self._runner().submit(call()).add_done_callback(finished)

    def _start_sync(self, tool: Tool, request: ToolRequest, once: _Once) -> None:
        """A daemon thread of the loop's, straight from the caller's thread (no hop through
        the loop: this is the common case, and each hop costs a wake-up); the watchdog answers
        at the timeout, and the thread, which nothing can stop, is abandoned."""
        runner = self._runner()

        def call() -> None:
            try:
                value = tool.fn(*request.args, **request.kwargs)
            except BaseException as exc:  # SystemExit too: the cell must hear of it, not wait
                once(_raised(tool, exc))
            else:
                once(_checked(tool, value))
            cancel()

        cancel: Callable[[], None] = _nothing
        if tool.timeout_s is not None:
            cancel = runner.watchdog.after(
                tool.timeout_s,
                lambda: once(_timed_out(tool, "abandoned (a sync function cannot be stopped)")),
            )
        runner.threads.submit(call)

    def close(self) -> None:
        """Stop running calls, close the sources (every one is tried). Idempotent."""
        with self._lock:
            self._closed = True
            loop, self._loop = self._loop, None
            sources, self._sources = self._sources, []
        with ExitStack() as stack:
            for source in sources:
                stack.callback(source.close)
            if loop is not None:
                stack.callback(loop.close)


def _nothing() -> None:
    pass


class _Once:
    """``done``, called the first time only (a timeout and a late result race for it)."""

    def __init__(self, done: Callable[[ToolResponse], None]) -> None:
        self._done: Callable[[ToolResponse], None] | None = done
        self._lock = threading.Lock()

    def __call__(self, response: ToolResponse) -> None:
        with self._lock:
            done, self._done = self._done, None
        if done is not None:
            done(response)


def _timed_out(tool: Tool, how: str) -> ToolResponse:
    return ToolResponse.failure(
        f"tool {tool.name!r} ran past its timeout_s={tool.timeout_s} and was {how}", "ToolTimeout"
    )


def _raised(tool: Tool, exc: BaseException) -> ToolResponse:
    return ToolResponse.failure(f"tool {tool.name!r} raised {type(exc).__name__}: {exc}")


def _checked(tool: Tool, value: Any) -> ToolResponse:
    """The response carrying ``value``, or an error when JSON cannot carry it."""
    try:
        check_json(value, f"the result of tool {tool.name!r}")
        check_size(value, f"the result of tool {tool.name!r}")
    except (TypeError, ValueError) as exc:
        return ToolResponse.failure(str(exc))
    return ToolResponse(value)


@dataclass(slots=True)
class ToolScope:
    """Serves one REPL's tool calls and ``budget()`` (a :class:`ToolHandler`)."""

    _box: ToolBox
    _ledger: Ledger
    _trace: Trace
    _run_id: str
    _depth: int
    #: the run's own part of budget(): its iterations and depth left
    _budget_extra: Callable[[], dict[str, Any]]
    #: the limit was traced already (once per REPL, however often a cell hits it)
    _refused: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return self._box.names

    def budget(self) -> dict[str, Any]:
        """What is left of each limit now (None: unlimited)."""
        return {**self._budget_extra(), **self._ledger.left()}

    def submit(self, request: ToolRequest, done: Callable[[ToolResponse], None]) -> None:
        if request.name == BUDGET:
            done(ToolResponse(self.budget()))
            return
        tool = self._box.get(request.name)
        if tool is None:
            shown = ", ".join(self._box.names) or "none"
            done(ToolResponse.failure(f"no tool named {request.name[:60]!r} (tools: {shown})"))
            return
        try:
            check_size([request.args, request.kwargs], f"the arguments of tool {tool.name!r}")
            self._ledger.reserve_tool_call()
        except ValueError as exc:
            done(ToolResponse.failure(str(exc)))
            return
        except LimitExceeded as exc:
            if not self._refused:  # once: a cell looping on a refused tool must not flood
                self._refused = True
                self._trace.emit(LimitHit(self._run_id, limit=exc.limit, message=str(exc)))
            done(ToolResponse.failure(str(exc), type(exc).__name__))
            return
        t0 = time.monotonic()

        def finished(response: ToolResponse) -> None:
            try:
                self._record(request, response, time.monotonic() - t0)
            finally:
                done(response)

        self._box.start(tool, request, finished)

    def _record(self, request: ToolRequest, response: ToolResponse, latency: float) -> None:
        error = None
        if response.error is not None:
            error = f"{response.error_type or ToolError.__name__}: {response.error}"
        result = "" if response.error is not None else json.dumps(response.value)
        self._trace.emit(
            ToolCalled(
                self._run_id,
                depth=self._depth,
                name=request.name,
                arguments=prompt_preview(json.dumps([request.args, request.kwargs])),
                result=prompt_preview(result),
                error=error,
                latency_s=latency,
            )
        )
