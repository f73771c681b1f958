"""The caller's own tools, callable by name from model code: ``RLM(tools=[...])``.

Plain functions (sync or async) or :class:`Tool` objects run on the host; model code in any
environment calls them like functions, with JSON arguments and results (see
:mod:`recursor.sandbox.hostcall`). :class:`MCPTools` exposes the tools of an MCP server the
same way (``pip install "recursor[mcp]"``).
"""

from __future__ import annotations

from recursor.tools.box import ToolBox, ToolItem, ToolScope, ToolSource
from recursor.tools.mcp import MCPTools
from recursor.tools.tool import DEFAULT_TIMEOUT_S, Tool

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MCPTools",
    "Tool",
    "ToolBox",
    "ToolItem",
    "ToolScope",
    "ToolSource",
]
