"""Conversations over HTTP (``/v1/sessions``): a variable of ask 1 used by ask 2, an ask as a
job followed through ``/v1/runs``, 409 for an ask while one runs, save, another context, a
key's sessions hidden from other keys, and close stopping the worker."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from recursor.lm.stub_server import StubServer

from .harness import Running, alive, children, wait_for


def conversation(messages: list[dict[str, str]]) -> str:
    """The root of a two-ask conversation: ask 1 sets n, ask 2 doubles it (n must survive)."""
    if messages[0]["role"] != "system":
        return "?"
    question = messages[1]["content"].rsplit("Question:", 1)[-1]
    if "context_1" in question:
        return "```repl\nFINAL(context_1.upper())\n```"
    if "double" in question:
        return "```repl\nFINAL(n * 2)\n```"
    if "slow" in question:
        return "```repl\nimport time\ntime.sleep(3)\nFINAL('slept')\n```"
    return "```repl\nn = len(context)\nFINAL_VAR(n)\n```"


def test_a_session_keeps_its_repl_across_asks(server: Running, stub: StubServer) -> None:
    stub.script.handler = conversation
    before = children()
    with server.client() as http:
        r = http.post("/v1/sessions", json={"model": "rlm", "context": "abcdefg"})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        one = http.post(f"/v1/sessions/{sid}/asks", json={"query": "how long?", "wait": True})
        assert one.status_code == 200 and one.json()["answer"] == "7"
        # an ask as a job: 202, then followed like any run
        two = http.post(f"/v1/sessions/{sid}/asks", json={"query": "double it"})
        assert two.status_code == 202
        run_id = two.headers["x-recursor-run-id"]
        events = http.get(f"/v1/runs/{run_id}/events").text
        assert '"type": "cell_ran"' in events or '"type":"cell_ran"' in events
        assert http.get(f"/v1/runs/{run_id}").json()["answer"] == "14"  # n from ask 1
        added = http.post(f"/v1/sessions/{sid}/contexts", json={"context": "more"})
        assert added.json()["name"] == "context_1"
        three = http.post(
            f"/v1/sessions/{sid}/asks", json={"query": "read context_1", "wait": True}
        )
        assert three.json()["answer"] == "MORE"
        info = http.get(f"/v1/sessions/{sid}").json()
        assert [a["answer"] for a in info["asks"]] == ["7", "14", "MORE"]
        assert info["contexts"] == ["context", "context_1"]
        saved = http.post(f"/v1/sessions/{sid}/save").json()
        assert [a["answer"] for a in saved["session"]["log"] if a["kind"] == "ask"] == [
            "7",
            "14",
            "MORE",
        ]
        assert json.loads(Path(saved["path"]).read_text("utf-8")) == saved["session"]
        workers = children() - before  # the session's worker (and the profile's spare)
        assert workers
        assert http.delete(f"/v1/sessions/{sid}").json()["closed"] is True
        # the session's worker stops; only the profile's spare may stay
        wait_for(lambda: len([p for p in workers if alive(p)]) < len(workers))
        assert http.get(f"/v1/sessions/{sid}").status_code == 404
        assert http.post(f"/v1/sessions/{sid}/asks", json={"query": "x"}).status_code == 404


def test_an_ask_while_one_runs_is_409(server: Running, stub: StubServer) -> None:
    stub.script.handler = conversation
    with server.client() as http:
        sid = http.post("/v1/sessions", json={"model": "rlm", "context": "abc"}).json()["id"]
        first = http.post(f"/v1/sessions/{sid}/asks", json={"query": "slow one"})
        assert first.status_code == 202
        wait_for(lambda: http.get(f"/v1/sessions/{sid}").json()["closed"] is False)
        busy = http.post(f"/v1/sessions/{sid}/asks", json={"query": "how long?"})
        assert busy.status_code == 409 and "running" in busy.json()["error"]["message"]
        run_id = first.headers["x-recursor-run-id"]
        wait_for(lambda: http.get(f"/v1/runs/{run_id}").json()["state"] == "succeeded")
        http.delete(f"/v1/sessions/{sid}")


def test_bad_session_requests(serve: Callable[..., Running], stub: StubServer) -> None:
    stub.script.handler = conversation
    server = serve(keys=[{"name": "a", "key": "sk-a"}, {"name": "b", "key": "sk-b"}])
    with server.client("sk-a") as a, server.client("sk-b") as b:
        assert a.post("/v1/sessions", json={"model": "rlm"}).status_code == 400  # no context
        assert a.post("/v1/sessions", json={"model": "mini", "context": "x"}).status_code == 400
        assert a.post("/v1/sessions", json={"model": "nope", "context": "x"}).status_code == 404
        missing = a.post("/v1/sessions", json={"model": "rlm", "context_file": "file-nope"})
        assert missing.status_code == 404
        sid = a.post("/v1/sessions", json={"model": "rlm", "context": "abc"}).json()["id"]
        assert a.post(f"/v1/sessions/{sid}/asks", json={}).status_code == 400  # no query
        assert b.get(f"/v1/sessions/{sid}").status_code == 404  # a's session, not b's
        assert b.get("/v1/sessions").json()["data"] == []
        assert [s["id"] for s in a.get("/v1/sessions").json()["data"]] == [sid]
        a.delete(f"/v1/sessions/{sid}")


def test_threads_do_not_pile_up(server: Running, stub: StubServer) -> None:
    """Opening and closing sessions leaves no thread behind in the server process."""
    stub.script.handler = conversation
    with server.client() as http:
        for _ in range(2):  # warm up pools
            sid = http.post("/v1/sessions", json={"model": "rlm", "context": "ab"}).json()["id"]
            http.delete(f"/v1/sessions/{sid}")
        base = threading.active_count()
        for _ in range(5):
            sid = http.post("/v1/sessions", json={"model": "rlm", "context": "ab"}).json()["id"]
            http.post(f"/v1/sessions/{sid}/asks", json={"query": "how long?", "wait": True})
            http.delete(f"/v1/sessions/{sid}")
        wait_for(lambda: threading.active_count() <= base + 2)
