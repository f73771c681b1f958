"""The tools of an MCP server, exposed in the REPL like the caller's own functions.

``RLM(tools=[MCPTools.stdio("python", ["server.py"])])`` or ``MCPTools.http(url)`` (streamable
HTTP): the RLM connects when it is made (official ``mcp`` SDK, ``pip install
"recursor[mcp]"``), lists the server's tools and binds each by its name; the prompt shows a
signature made from the tool's input schema and its description. :meth:`MCPTools.close` (from
``RLM.close``) ends the connection, and a stdio server's process with it.

The SDK's client lives in one task on a loop of its own (its anyio scopes must be left by the
task that entered them); a call from a cell is sent to that loop, and cancelling it (a tool
timeout) cancels the request there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from recursor.errors import ConfigurationError, ToolError
from recursor.tools.box import ToolSource
from recursor.tools.loop import LoopThread
from recursor.tools.tool import DEFAULT_TIMEOUT_S, Tool, first_paragraph

#: seconds to connect to a server and list its tools
CONNECT_TIMEOUT_S = 30.0
#: characters of a nested input schema shown in the prompt
_SCHEMA_CHARS = 400


def _sdk() -> Any:
    try:
        import mcp
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise ConfigurationError(
            'MCP tools need the official MCP SDK: pip install "recursor[mcp]"'
        ) from exc
    return mcp


class MCPTools(ToolSource):
    """The tools of one MCP server; make it with :meth:`stdio` or :meth:`http`."""

    def __init__(self, server: Any, label: str, *, timeout_s: float | None) -> None:
        self._server = server
        self.label = label
        self.timeout_s = timeout_s
        self._runner: LoopThread | None = None
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._held: Future[None] | None = None

    @classmethod
    def stdio(
        cls,
        command: str,
        args: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> MCPTools:
        """A server the RLM starts as ``command args...`` and talks to over its stdin/stdout."""
        _sdk()
        from mcp.client.stdio import StdioServerParameters

        params = StdioServerParameters(command=command, args=list(args), env=env, cwd=cwd)
        return cls(params, f"stdio:{command}", timeout_s=timeout_s)

    @classmethod
    def http(cls, url: str, *, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> MCPTools:
        """A server already listening at ``url`` (streamable HTTP, e.g. ``.../mcp``)."""
        _sdk()
        return cls(url, f"http:{url}", timeout_s=timeout_s)

    # -- ToolSource -----------------------------------------------------------------------------
    def open(self) -> list[Tool]:
        if self._runner is not None:
            raise ConfigurationError(
                f"MCP server {self.label} is open already: give each RLM an MCPTools of its own"
            )
        self._runner = LoopThread("recursor-mcp")
        listed: Future[list[Any]] = Future()
        self._held = self._runner.submit(self._hold(listed))
        try:
            specs = listed.result(CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise ToolError(
                f"MCP server {self.label}: no tool list in {CONNECT_TIMEOUT_S} s"
            ) from None
        except Exception as exc:
            raise ToolError(f"MCP server {self.label}: {type(exc).__name__}: {exc}") from exc
        return [self._tool(spec) for spec in specs]

    def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        stop = self._stop
        if stop is not None and not runner.loop.is_closed():
            runner.loop.call_soon_threadsafe(stop.set)
            if self._held is not None:
                try:
                    self._held.result(10)  # the client leaves its scopes; the server stops
                except BaseException:
                    pass
        runner.close()

    # -- the connection -------------------------------------------------------------------------
    async def _hold(self, listed: Future[list[Any]]) -> None:
        """Connect, list the tools, then keep the connection until :meth:`close`."""
        mcp = _sdk()
        self._stop = asyncio.Event()
        try:
            async with mcp.Client(self._server) as client:
                specs: list[Any] = []
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    specs.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                self._client = client
                listed.set_result(specs)
                await self._stop.wait()
        except BaseException as exc:
            if not listed.done():
                listed.set_exception(exc if isinstance(exc, Exception) else ToolError(str(exc)))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._client = None

    def _tool(self, spec: Any) -> Tool:
        schema: dict[str, Any] = dict(spec.input_schema or {})
        props: dict[str, Any] = dict(schema.get("properties") or {})
        order = list(props)
        wrapped = set((spec.output_schema or {}).get("properties") or {}) == {"result"}
        name = spec.name

        async def call(*args: Any, **kwargs: Any) -> Any:
            if len(args) > len(order):
                raise TypeError(f"{name}() takes {len(order)} arguments, {len(args)} given")
            arguments = dict(zip(order, args, strict=False))
            for key, value in kwargs.items():
                if key in arguments:
                    raise TypeError(f"{name}() got argument {key!r} twice")
                arguments[key] = value
            return await self._call(name, arguments, wrapped)

        description = spec.description or spec.title or ""
        return Tool(
            call,
            name=name,
            description=first_paragraph(description) + _nested_schema(props),
            timeout_s=self.timeout_s,
            signature=_signature(props, set(schema.get("required") or [])),
        )

    async def _call(self, name: str, arguments: dict[str, Any], wrapped: bool) -> Any:
        runner, client = self._runner, self._client
        if runner is None or client is None:
            raise ToolError(f"MCP server {self.label} is not connected")
        inner = asyncio.run_coroutine_threadsafe(client.call_tool(name, arguments), runner.loop)
        # cancelling this await (a timeout) cancels the request on the client's loop too
        result = await asyncio.wrap_future(inner)
        text = "\n".join(
            str(getattr(c, "text", f"[{getattr(c, 'type', 'content')}]")) for c in result.content
        )
        if result.is_error:
            raise ToolError(first_paragraph(text) or "the MCP tool failed")
        data = result.structured_content
        if data is None:
            return text
        if wrapped and isinstance(data, dict) and set(data) == {"result"}:
            return data["result"]  # the SDK wraps a plain return value as {"result": ...}
        return data


def _signature(props: dict[str, Any], required: set[str]) -> str:
    """``(a: integer, b: string = 'x')`` from a JSON Schema's properties."""
    params = []
    for key, prop in props.items():
        kind = prop.get("type", "any") if isinstance(prop, dict) else "any"
        if isinstance(kind, list):
            kind = " | ".join(map(str, kind))
        text = f"{key}: {kind}"
        if key not in required:
            default = prop.get("default") if isinstance(prop, dict) else None
            text += f" = {default!r}"
        params.append(text)
    return "(" + ", ".join(params) + ")"


def _nested_schema(props: dict[str, Any]) -> str:
    """The schema of object and array arguments, which a signature line cannot show."""
    nested = {
        k: v
        for k, v in props.items()
        if isinstance(v, dict) and v.get("type") in ("object", "array")
    }
    if not nested:
        return ""
    text = json.dumps(nested, separators=(",", ":"))
    if len(text) > _SCHEMA_CHARS:
        text = text[: _SCHEMA_CHARS - 1] + "…"
    return f" Argument schema: {text}"
