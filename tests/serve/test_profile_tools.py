"""A profile's tools: Python functions named ``module:function`` and an MCP server over
stdio, called from the served RLM's model code; a tool that cannot be imported fails the start
with the key and the reason."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from recursor.errors import ConfigurationError
from recursor.lm.stub_server import StubServer
from recursor.serve.config import load_config
from recursor.serve.models import Served
from tests.test_tools_mcp import SERVER

from .harness import MODEL, Running, wait_for


def calls_tools(messages: list[dict[str, str]]) -> str:
    if messages[0]["role"] != "system":
        return "?"
    assert "shout(" in messages[0]["content"] and "add(" in messages[0]["content"]
    return "```repl\nFINAL(shout(context) + ' ' + str(add(40)))\n```"


def test_a_profiles_python_and_mcp_tools_run(
    serve: Callable[..., Running], stub: StubServer, tmp_path: Path
) -> None:
    server_file = tmp_path / "mcp_server.py"
    server_file.write_text(SERVER)
    stub.script.handler = calls_tools
    profile = {
        "root": MODEL,
        "environment": "subprocess",
        "tools": ["tests.serve.toolbox:shout"],
        "mcp": [{"command": sys.executable, "args": [str(server_file)]}],
    }
    server = serve(profiles={"rlm": profile})
    with server.client() as http:
        r = http.post("/v1/runs", json={"model": "rlm", "query": "q", "context": "hi"})
        run_id = r.json()["id"]
        events = http.get(f"/v1/runs/{run_id}/events").text
        assert '"tool_called"' in events
        assert http.get(f"/v1/runs/{run_id}").json()["answer"] == "HI! 42"


@pytest.mark.parametrize(
    ("tools", "reason"),
    [
        (["tests.serve.toolbox:nope"], "cannot import"),
        (["no_such_module_here:f"], "cannot import"),
        (["tests.serve.toolbox"], "must be 'package.module:function'"),
    ],
)
def test_a_bad_tool_fails_the_start(tools: list[str], reason: str, tmp_path: Path) -> None:
    data = {
        "server": {"data_dir": str(tmp_path)},
        "profiles": {"rlm": {"root": MODEL, "tools": tools}},
    }
    with pytest.raises((ConfigurationError, ValueError), match=reason):
        Served(load_config(None, defaults=data, environ={}), {MODEL: object()})  # type: ignore[dict-item]


def test_a_profiles_route(serve: Callable[..., Running], stub: StubServer) -> None:
    """route = "direct": the served RLM answers with one call of the root, no REPL."""
    stub.script.handler = lambda messages: "one call"
    server = serve(profiles={"rlm": {"root": MODEL, "route": "direct"}})
    with server.client() as http:
        r = http.post("/v1/runs", json={"model": "rlm", "query": "q", "context": "short"})
        run_id = r.json()["id"]
        wait_for(lambda: http.get(f"/v1/runs/{run_id}").json()["state"] == "succeeded")
        assert http.get(f"/v1/runs/{run_id}").json()["answer"] == "one call"
    assert len(stub.requests) == 1


def test_a_bad_route_fails_the_start(tmp_path: Path) -> None:
    data = {"profiles": {"rlm": {"root": MODEL, "route": "sometimes"}}}
    with pytest.raises(
        ConfigurationError, match="neither direct, repl, recursive, auto nor a policy"
    ):
        load_config(None, defaults=data, environ={})
