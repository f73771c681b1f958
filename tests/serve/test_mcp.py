"""``recursor mcp`` driven by the official ``mcp`` SDK's client, over stdio and HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from recursor.lm.stub_server import StubServer

from .harness import MODEL, wait_for
from .test_fault import free_port

pytestmark = pytest.mark.slow


def payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    if result.structured_content is not None:
        data: dict[str, Any] = result.structured_content
        return data.get("result", data)
    loaded: dict[str, Any] = json.loads(result.content[0].text)
    return loaded


async def exercise(session: ClientSession, docs: Path, outside: Path) -> None:
    await session.initialize()
    tools = {t.name for t in (await session.list_tools()).tools}
    assert {"rlm_complete", "rlm_trace"} <= tools
    done = payload(
        await session.call_tool("rlm_complete", {"query": "how long?", "path": str(docs / "a.txt")})
    )
    assert done["answer"] == "1500" and done["state"] == "succeeded"
    text = payload(await session.call_tool("rlm_complete", {"query": "q", "context": "hey"}))
    assert text["answer"] == "3"
    trace = payload(await session.call_tool("rlm_trace", {"run_id": done["run_id"]}))
    assert trace["run"]["answer"] == "1500"
    assert [e["type"] for e in trace["events"]][-1] == "run_finished"
    refused = await session.call_tool("rlm_complete", {"query": "q", "path": str(outside)})
    assert refused.is_error and "outside the allowed" in refused.content[0].text
    unknown = await session.call_tool("rlm_trace", {"run_id": "run_nope"})
    assert unknown.is_error and "not found" in unknown.content[0].text


def args(tmp_path: Path, docs: Path) -> list[str]:
    return [
        "-m", "recursor.cli", "mcp", "--root", MODEL,
        "--data-dir", str(tmp_path / "data"), "--allow", str(docs),
    ]  # fmt: skip


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text("q" * 1500)
    (tmp_path / "secret.txt").write_text("not yours")
    return d


def test_stdio(stub: StubServer, tmp_path: Path, docs: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=args(tmp_path, docs), env=dict(os.environ)
    )

    async def go() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await exercise(session, docs, tmp_path / "secret.txt")

    anyio.run(go)


def test_streamable_http(stub: StubServer, tmp_path: Path, docs: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, *args(tmp_path, docs), "--http", "--port", str(port)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        assert proc.poll() is None
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        wait_for(up, timeout=60)

        async def go() -> None:
            async with (
                streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                ClientSession(read, write) as session,
            ):
                await exercise(session, docs, tmp_path / "secret.txt")

        anyio.run(go)
    finally:
        proc.terminate()
        proc.wait(30)
