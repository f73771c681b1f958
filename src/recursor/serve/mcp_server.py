"""``recursor mcp``: the RLM as MCP tools (official ``mcp`` SDK), over stdio or streamable HTTP.

Tools:
- ``rlm_complete(query, context=None, path=None, profile="rlm")``: answer ``query`` over a
  context given as text or as a path. A path is read as ``recursor run -c`` reads one (a
  file by path, a directory as its text files, never outside it), and only when it lies
  under a directory the user named with ``--allow`` (default: the directory the server was
  started in): a model-driven client must not make the server read ``~/.ssh``.
- ``rlm_trace(run_id)``: a run's state, result and typed events.

Runs go through the same :class:`~recursor.serve.runs.RunManager` and SQLite store as the HTTP
server's (the data directory of the config), so ``rlm_trace`` also finds earlier runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from recursor._cli_options import load_context
from recursor.errors import ContextError, RecursorError
from recursor.limits import Limits
from recursor.serve.config import RLMProfile, ServeConfig
from recursor.serve.runs import whole_usage
from recursor.serve.state import ServerState


class ToolInputError(ToolError, RecursorError):
    """A tool argument that cannot be used: the SDK reports a ToolError's message to the
    client (any other exception becomes a bare "Error executing tool")."""


def allowed_path(path: str, roots: list[Path]) -> Path:
    """``path`` resolved (symlinks followed), if it lies under one of ``roots``."""
    resolved = Path(path).expanduser().resolve()
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ToolInputError(f"path {path!r} is outside the allowed directories ({allowed})")
    return resolved


def build_mcp(state: ServerState, roots: list[Path]) -> MCPServer:
    server = MCPServer(
        "recursor",
        instructions="Answer questions over very long documents with a Recursive Language Model.",
    )

    @server.tool()
    async def rlm_complete(
        query: str, context: str | None = None, path: str | None = None, profile: str = "rlm"
    ) -> dict[str, Any]:
        """Answer QUERY over a long context (text, or a file or directory PATH) with an RLM."""
        chosen = state.config.profiles.get(profile)
        if not isinstance(chosen, RLMProfile):
            rlms = [n for n, p in state.config.profiles.items() if isinstance(p, RLMProfile)]
            raise ToolInputError(f"unknown RLM profile {profile!r}; served: {', '.join(rlms)}")
        if context is not None and path is not None:
            raise ToolInputError("give context or path, not both")
        ctx: Any = context or ""
        if path is not None:
            try:
                ctx = load_context(str(allowed_path(path, roots)))
            except ContextError as exc:
                raise ToolInputError(str(exc)) from None
        limits = chosen.limits.apply(Limits())
        run = state.runs.start_rlm(profile, query, ctx, limits, None)
        try:
            outcome = await state.runs.wait(run)
        finally:
            if run.outcome is None and run.task is not None:  # the client cancelled the call
                run.task.cancel()
        return {
            "answer": outcome.answer,
            "run_id": run.id,
            "state": outcome.state,
            "stop_reason": outcome.stop_reason,
            "error": outcome.error,
            "usage": whole_usage(outcome.usage),
        }

    @server.tool()
    async def rlm_trace(run_id: str) -> dict[str, Any]:
        """The state, result and typed events of a run (from rlm_complete or the HTTP server)."""
        row = state.store.get(run_id)
        if row is None:
            raise ToolInputError(f"run {run_id!r} not found")
        return {"run": row.to_dict(), "events": [e for _s, e in state.store.events(run_id)]}

    return server


def run_mcp(config: ServeConfig, roots: list[Path], *, http: bool, host: str, port: int) -> None:
    async def main() -> None:
        state = ServerState.build(config)
        try:
            server = build_mcp(state, roots)
            if http:
                await server.run_streamable_http_async(host=host, port=port)
            else:
                await server.run_stdio_async()
        finally:
            await state.aclose()

    anyio.run(main)
