"""MCP tools: a real MCP server (the SDK's MCPServer, FastMCP's name in mcp 2) that the test
writes and starts, over stdio and over streamable HTTP on 127.0.0.1, called from model code."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recursor.errors import ToolError
from recursor.testing import ScriptedLM
from recursor.tools import MCPTools
from tests.conftest import code, make_rlm

pytest.importorskip("mcp")

SERVER = '''\
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("test-tools")


@server.tool()
def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Not shown.
    """
    return a + b


@server.tool()
def tally(words: list[str]) -> dict[str, int]:
    """Count each word."""
    out: dict[str, int] = {}
    for w in words:
        out[w] = out.get(w, 0) + 1
    return out


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(reason)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
'''

CELL = (
    "s = add(40)\nt = add(1, b=5)\n"
    "w = tally(['a', 'b', 'a'])\n"
    "try:\n    fail('nope')\nexcept Exception as e:\n    print(type(e).__name__)\n"
    "FINAL(f'{s} {t} {sorted(w.items())}')"
)


@pytest.fixture(scope="module")
def server_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "server.py"
    path.write_text(SERVER)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_url(server_file: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(server_file), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > until or proc.poll() is not None:
                    raise RuntimeError("the MCP test server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def _run(env: str, source: MCPTools) -> tuple[str | None, str]:
    root = ScriptedLM([code(CELL), "FINAL(none)"])
    with make_rlm(env, root, tools=[source]) as rlm:
        result = rlm.completion("q", "ctx")
    system = root.calls[0][0]["content"]
    shown = "\n".join(e.stdout for e in result.trace.events if e.type == "cell_ran")
    assert "ToolError" in shown, result.error
    return result.answer, system


@pytest.mark.parametrize("env", ["inprocess", "subprocess"])
def test_mcp_tools_over_stdio(env: str, server_file: Path) -> None:
    answer, system = _run(env, MCPTools.stdio(sys.executable, [str(server_file)]))
    assert answer == "42 6 [('a', 2), ('b', 1)]"
    assert "- `add(a: integer, b: integer = 2)`: Add two integers." in system
    assert "Not shown" not in system
    assert '- `tally(words: array)`: Count each word. Argument schema: {"words":' in system


@pytest.mark.parametrize("env", ["inprocess", "subprocess"])
def test_mcp_tools_over_streamable_http(env: str, http_url: str) -> None:
    answer, system = _run(env, MCPTools.http(http_url))
    assert answer == "42 6 [('a', 2), ('b', 1)]"
    assert "- `fail(reason: string)`: Always fails." in system


def test_the_stdio_server_stops_when_the_rlm_closes(server_file: Path) -> None:
    import os

    def servers() -> set[int]:
        me, found = str(os.getpid()), set()
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read()
                    with open(f"/proc/{pid}/stat") as f:
                        parent = f.read().rsplit(")", 1)[1].split()[1]
                except OSError:
                    continue
                # stdio servers only (the module's HTTP server runs this file with "http")
                if cmd.endswith(str(server_file).encode() + b"\0") and parent == me:
                    found.add(int(pid))
        return found

    rlm = make_rlm(
        "inprocess", ScriptedLM([]), tools=[MCPTools.stdio(sys.executable, [str(server_file)])]
    )
    assert rlm.tools.names == ("add", "tally", "fail")
    assert servers(), "the server was not started"
    rlm.close()
    until = time.monotonic() + 10
    while servers() and time.monotonic() < until:
        time.sleep(0.1)
    assert not servers()


def test_a_server_that_cannot_start_is_a_tool_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise SystemExit(3)\n")
    with pytest.raises(ToolError, match="MCP server stdio:"):
        make_rlm("inprocess", ScriptedLM([]), tools=[MCPTools.stdio(sys.executable, [str(broken)])])
