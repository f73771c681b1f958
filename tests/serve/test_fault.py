"""The server as a process (``python -m recursor.cli serve --config``): kill -9 with runs in
flight and restart; SIGTERM with a run in flight. No worker outlives its server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from recursor.lm.stub_server import StubServer

from .harness import MODEL, alive, wait_for

pytestmark = pytest.mark.slow

SAY_PID = "import os, time\nllm_query('pid ' + str(os.getpid()))\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, data_dir: Path, port: int, grace_s: float = 30) -> None:
    path.write_text(
        f"""
[server]
port = {port}
data_dir = "{data_dir}"
grace_s = {grace_s}

[profiles.rlm]
root = "{MODEL}"
limits = {{ cell_timeout_s = 120 }}
""",
        encoding="utf-8",
    )


@pytest.fixture
def pids(stub: StubServer) -> list[int]:
    """Workers' pids, told by their cells; a "slow" query sleeps, any other answers."""
    seen: list[int] = []

    def handler(messages: list[dict[str, str]]) -> str:
        if messages[0]["role"] == "system":
            if len(messages) > 2:
                return "FINAL(done)"
            slow = "slow" in messages[1]["content"]
            return f"```repl\n{SAY_PID}{'time.sleep(120)' if slow else ''}\n```"
        prompt = messages[-1]["content"]
        if prompt.startswith("pid "):
            seen.append(int(prompt.removeprefix("pid ")))
        return "ok"

    stub.script.handler = handler
    return seen


@contextmanager
def server_process(config: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recursor.cli", "serve", "--config", str(config)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()


def job(http: httpx.Client, query: str) -> str:
    r = http.post("/v1/runs", json={"model": "rlm", "query": query, "context": "ctx"})
    assert r.status_code == 202, r.text
    run_id: str = r.json()["id"]
    return run_id


def test_kill_9_and_restart(tmp_path: Path, pids: list[int]) -> None:
    port = free_port()
    config = tmp_path / "recursor.toml"
    write_config(config, tmp_path / "data", port)
    url = f"http://127.0.0.1:{port}"
    with server_process(config, port) as proc, httpx.Client(base_url=url, timeout=30) as http:
        done = job(http, "fast")
        wait_for(lambda: http.get(f"/v1/runs/{done}").json()["state"] == "succeeded")
        in_flight = [job(http, "slow one"), job(http, "slow two")]
        wait_for(lambda: len(pids) == 3)  # the fast run's worker and the two slow ones
        workers = pids[1:]
        assert all(alive(p) for p in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # the workers notice their host died and go (no orphan keeps running model code)
    wait_for(lambda: not any(alive(p) for p in workers), timeout=20)
    with server_process(config, port), httpx.Client(base_url=url, timeout=30) as http:
        finished = http.get(f"/v1/runs/{done}").json()
        assert finished["state"] == "succeeded" and finished["answer"] == "done"
        events = http.get(f"/v1/runs/{done}/events").text
        assert "event: run_finished" in events
        for run_id in in_flight:
            row = http.get(f"/v1/runs/{run_id}").json()
            assert row["state"] == "interrupted", row
            assert "server stopped" in row["error"]


def test_sigterm_cancels_after_grace(tmp_path: Path, pids: list[int]) -> None:
    port = free_port()
    config = tmp_path / "recursor.toml"
    write_config(config, tmp_path / "data", port, grace_s=1)
    url = f"http://127.0.0.1:{port}"
    with server_process(config, port) as proc, httpx.Client(base_url=url, timeout=30) as http:
        run_id = job(http, "slow")
        wait_for(lambda: pids)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal it handled once it has shut down: -15 is a clean exit
        assert proc.wait(30) in {0, -signal.SIGTERM}
        assert time.monotonic() - t0 < 15
    wait_for(lambda: not alive(pids[0]), timeout=10)
    from recursor.serve.store import RunStore

    store = RunStore(tmp_path / "data")
    row = store.get(run_id)
    store.close()
    assert row is not None and row.state == "cancelled"
