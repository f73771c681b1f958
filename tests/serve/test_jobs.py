"""Jobs: 202 + id, state, resumable event stream, cancel; a disconnect cancels its run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import httpx

from recursor.lm.stub_server import StubServer

from .harness import Running, alive, root_then_sub, wait_for

JOB = {"model": "rlm", "query": "how long?", "context": "abcd"}


def sse(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value
        out.append(fields)
    return out


def test_job_lifecycle_and_resume(server: Running) -> None:
    with server.client() as http:
        r = http.post("/v1/runs", json=JOB)
        assert r.status_code == 202
        run_id = r.json()["id"]
        assert r.json()["state"] in {"queued", "running"}
        events = sse(http.get(f"/v1/runs/{run_id}/events").text)
        assert events[-1]["event"] == "end"
        assert json.loads(events[-1]["data"]) == {"state": "succeeded", "answer": "4"}
        typed = events[:-1]
        assert [int(e["id"]) for e in typed] == list(range(1, len(typed) + 1))
        kinds = [e["event"] for e in typed]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "subcall" in kinds
        # resume: Last-Event-ID skips what the client saw
        again = sse(http.get(f"/v1/runs/{run_id}/events", headers={"last-event-id": "3"}).text)
        assert [e.get("id") for e in again[:-1]] == [e["id"] for e in typed[3:]]
        row = http.get(f"/v1/runs/{run_id}").json()
        assert row["state"] == "succeeded" and row["answer"] == "4"
        assert run_id in [r["id"] for r in http.get("/v1/runs").json()["data"]]
        assert http.get("/v1/runs/run_nope").status_code == 404


#: a cell's first line: tell the test its worker's pid (the sandbox may not write files)
SAY_PID = "import os, time\nllm_query('pid ' + str(os.getpid()))\n"


def pid_catcher(
    body: str, sub: Callable[[str], str] = lambda _p: "x"
) -> tuple[Callable[[list[dict[str, str]]], str], list[int]]:
    """A root whose cell says its pid, then runs ``body``; sub-calls answer ``sub(prompt)``."""
    pids: list[int] = []

    def handler(messages: list[dict[str, str]]) -> str:
        if messages[0]["role"] == "system":
            return f"```repl\n{SAY_PID}{body}\n```"
        prompt = messages[-1]["content"]
        if prompt.startswith("pid "):
            pids.append(int(prompt.removeprefix("pid ")))
            return "ok"
        return sub(prompt)

    return handler, pids


def test_delete_cancels_and_kills_the_worker(
    serve: Callable[..., Running], stub: StubServer
) -> None:
    server = serve()
    stub.script.handler, pids = pid_catcher("time.sleep(60)")
    with server.client() as http:
        run_id = http.post("/v1/runs", json=JOB).json()["id"]
        wait_for(lambda: pids)
        time.sleep(0.3)  # into the sleep
        pid = pids[0]
        assert alive(pid)
        t0 = time.monotonic()
        row = http.delete(f"/v1/runs/{run_id}").json()
        assert row["state"] == "cancelled"
        assert time.monotonic() - t0 < 10
        wait_for(lambda: not alive(pid), timeout=10)


def test_stream_disconnect_cancels_run_and_subcalls(server: Running, stub: StubServer) -> None:
    """A streaming client that goes away: the run is cancelled, its worker killed, and no
    sub-call is made after (the cell was fanning out slow sub-calls)."""

    def slow(_prompt: str) -> str:
        time.sleep(0.2)
        return "x"

    stub.script.handler, pids = pid_catcher("llm_query_batched(['echo x'] * 200)", slow)
    body = {**JOB, "messages": [{"role": "user", "content": "q"}], "stream": True}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            run_id = r.headers["x-recursor-run-id"]
            for line in r.iter_lines():
                if "llm #" in line:  # sub-calls are under way
                    break
        # the response is closed here: the client went away
        wait_for(lambda: http.get(f"/v1/runs/{run_id}").json()["state"] == "cancelled")
    wait_for(lambda: not alive(pids[0]), timeout=10)
    made = len(stub.requests)
    time.sleep(1.0)
    assert len(stub.requests) <= made + 1  # at most one call was already on the wire
    assert made < 1 + 200  # the batch did not run to its end


def test_non_streaming_disconnect_cancels(server: Running, stub: StubServer) -> None:
    stub.script.handler, pids = pid_catcher("time.sleep(60)")
    body = {**JOB, "messages": [{"role": "user", "content": "q"}]}
    done = threading.Event()

    def call() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=3) as http:
                http.post("/v1/chat/completions", json=body)
        except httpx.ReadTimeout:
            pass  # the client gives up and closes its connection
        done.set()

    threading.Thread(target=call, daemon=True).start()
    wait_for(lambda: pids)
    pid = pids[0]
    assert done.wait(10)
    wait_for(lambda: not alive(pid), timeout=10)
    with httpx.Client(base_url=server.url) as http:
        rows = http.get("/v1/runs").json()["data"]
    assert rows[0]["state"] == "cancelled"
    stub.script.handler = root_then_sub
