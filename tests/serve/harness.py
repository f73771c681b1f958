"""A real server on 127.0.0.1 for the tests: uvicorn in a thread (or a ``recursor serve``
process), its models played by a :class:`~recursor.lm.stub_server.StubServer`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from recursor.serve.config import load_config
from recursor.serve.server import make_server

MODEL = "openai:gpt-4o-mini"


def root_then_sub(messages: list[dict[str, str]]) -> str:
    """One stub plays both models: the root (it has a system prompt) and the sub-model."""
    if messages[0]["role"] == "system":
        if len(messages) == 2:
            return "```repl\nn = len(context)\nsays = llm_query('echo ' + str(n))\n```"
        return "FINAL_VAR(says)"
    return messages[-1]["content"].removeprefix("echo ")


def config_data(data_dir: Path, **extra: Any) -> dict[str, Any]:
    server = {"port": 0, "data_dir": str(data_dir), **extra.pop("server", {})}
    profiles = extra.pop(
        "profiles",
        {
            "rlm": {"root": MODEL, "environment": "subprocess", **extra.pop("rlm", {})},
            "mini": {"model": MODEL},
        },
    )
    return {"server": server, "profiles": profiles, **extra}


class Running:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {} if key is None else {"authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextmanager
def running(data: dict[str, Any]) -> Iterator[Running]:
    """The server for config ``data`` (as TOML would give it), stopped after."""
    config = load_config(None, defaults=data, environ={})
    server = make_server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < end, "the server did not start in time"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(port)
    finally:
        server.should_exit = True
        thread.join(60)


def children() -> set[int]:
    """Live (not zombie) child processes of this process."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(check: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)
