"""Every bad input gets its status and a message; the safety limits hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from recursor.lm.stub_server import StubServer
from recursor.serve.config import hash_key

from .harness import Running

KEYS = [
    {"name": "alice", "sha256": hash_key("sk-alice"), "daily_tokens": 1_000_000},
    {"name": "poor", "key": "sk-poor", "daily_tokens": 1},
]
ASK = {"model": "rlm", "messages": [{"role": "user", "content": "how long?"}], "context": "abc"}


def error_of(response: httpx.Response) -> str:
    message: str = response.json()["error"]["message"]
    return message


def test_keys_and_budgets(serve: Callable[..., Running]) -> None:
    server = serve(keys=KEYS)
    with server.client() as anon:
        r = anon.post("/v1/chat/completions", json=ASK)
        assert r.status_code == 401 and "missing API key" in error_of(r)
        assert anon.get("/v1/models").status_code == 401
        assert anon.get("/healthz").status_code == 200  # health needs no key
    with server.client("sk-wrong") as wrong:
        r = wrong.post("/v1/chat/completions", json=ASK)
        assert r.status_code == 401 and error_of(r) == "invalid API key"
    msgs = [{"role": "user", "content": "how long?"}]
    extra = {"context": "abc"}
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-alice")
    reply = client.chat.completions.create(model="rlm", messages=msgs, extra_body=extra)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "3"
    poor = openai.OpenAI(base_url=server.base_url, api_key="sk-poor", max_retries=0)
    # one token left: the run is held to it and stops at once; the client is told why
    with pytest.raises(openai.RateLimitError, match=r"daily budget of key 'poor' is spent"):
        poor.chat.completions.create(model="rlm", messages=msgs, extra_body=extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({**ASK, "model": "nope"}, 404, "unknown model 'nope'"),
        ({**ASK, "context": None, "context_file": "file-" + "0" * 24}, 404, "not found"),
        ({**ASK, "context_file": "../../etc/passwd", "context": None}, 404, "not found"),
        ({**ASK, "limits": {"max_tokens": -5}}, 400, "limits.max_tokens"),
        ({**ASK, "limits": {"max_iterations": 0}}, 400, "limits.max_iterations"),
        ({**ASK, "messages": []}, 400, "non-empty list"),
        ({"model": "mini", "messages": ASK["messages"], "context": "x"}, 400, "plain model"),
    ],
)
def test_bad_requests(server: Running, body: dict[str, object], status: int, message: str) -> None:
    with server.client() as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    assert message in error_of(r)


def test_invalid_json_and_oversized_body(serve: Callable[..., Running]) -> None:
    server = serve(server={"max_body_bytes": 4096})
    with server.client() as http:
        r = http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400 and "not valid JSON" in error_of(r)
        big = {**ASK, "context": "x" * 10_000}
        r = http.post("/v1/chat/completions", json=big)
        assert r.status_code == 413 and "/v1/files" in error_of(r)

        def chunks() -> object:  # no Content-Length: counted as it arrives
            yield b'{"model": "rlm", "context": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        r = http.post("/v1/chat/completions", content=chunks())  # type: ignore[arg-type]
        assert r.status_code == 413


def test_upload_cap(serve: Callable[..., Running], tmp_path: Path) -> None:
    server = serve(server={"max_file_bytes": 1000})
    with server.client() as http:
        r = http.post("/v1/files", files={"file": ("a.txt", b"x" * 5000)}, data={"purpose": "x"})
        assert r.status_code == 413 and "upload cap" in error_of(r)
        r = http.post("/v1/files", files={"file": ("a.txt", b"x" * 999)})
        assert r.status_code == 200
        r = http.post("/v1/files", content=b"raw", headers={"content-type": "text/plain"})
        assert r.status_code == 400
    # the refused upload left no partial file: one file and its record remain
    assert len(list((tmp_path / "data" / "files").iterdir())) == 2


def test_concurrent_run_limit(serve: Callable[..., Running], stub: StubServer) -> None:
    server = serve(server={"max_concurrent_runs": 1, "retry_after_s": 7})
    release = threading.Event()
    stub.script.handler = lambda _m: (release.wait(30), "FINAL(done)")[1]
    results: list[int] = []

    def first() -> None:
        with server.client() as http:
            results.append(http.post("/v1/chat/completions", json=ASK).status_code)

    t = threading.Thread(target=first)
    t.start()
    with server.client() as http:
        for _ in range(200):  # until the first run is in flight
            if http.get("/healthz").json()["runs_active"] == 1:
                break
            threading.Event().wait(0.05)
        r = http.post("/v1/chat/completions", json=ASK)
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert "runs are in flight" in error_of(r)
        release.set()
        t.join(30)
        assert results == [200]
        metrics = http.get("/metrics").text
    assert 'recursor_requests_rejected_total{reason="concurrency"} 1.0' in metrics
    assert 'recursor_runs_total{kind="rlm",state="succeeded"} 1.0' in metrics
    assert (
        "recursor_run_seconds_bucket" in metrics and "recursor_sandbox_starts_total 1.0" in metrics
    )


def test_wall_time_per_request(serve: Callable[..., Running], stub: StubServer) -> None:
    """The server's request_timeout_s bounds a run whose cell would sleep for a minute."""
    server = serve(server={"request_timeout_s": 2})
    stub.script.handler = lambda m: "```repl\nimport time\ntime.sleep(60)\n```"
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    t0 = time.monotonic()
    reply = client.chat.completions.create(
        model="rlm", messages=[{"role": "user", "content": "q"}], extra_body={"context": "c"}
    )
    assert time.monotonic() - t0 < 20
    assert reply.choices[0].message.content is None
    assert reply.choices[0].finish_reason == "length"
    assert (
        reply.model_extra is not None and reply.model_extra["recursor"]["stop_reason"] == "timeout"
    )


def test_key_budget_caps_a_run(serve: Callable[..., Running], stub: StubServer) -> None:
    """What a key has left of its day bounds the run's whole tree (the library's
    max_tokens), so one run cannot spend far past the budget; the gate then shuts."""
    server = serve(keys=[{"name": "bob", "key": "sk-bob", "daily_tokens": 1600}])
    with server.client("sk-bob") as http:
        r = http.post("/v1/chat/completions", json=ASK)
        assert r.status_code == 429 and "stopped at what the key had left" in error_of(r)
        run_id = r.headers["x-recursor-run-id"]
        usage = http.get(f"/v1/runs/{run_id}").json()["usage"]["total"]
        # the first root call (~1,300 tokens) and the small sub-call fit; the second root call
        # was refused before it was made
        assert 0 < usage["input_tokens"] + usage["output_tokens"] <= 1600
        assert len(stub.requests) == 2


def test_trace_viewer_needs_the_key(serve: Callable[..., Running]) -> None:
    server = serve(keys=KEYS)
    with server.client("sk-alice") as http:
        run_id = http.post("/v1/chat/completions", json=ASK).headers["x-recursor-run-id"]
        assert http.get(f"/runs/{run_id}/trace").status_code == 200
    with server.client() as anon:
        assert anon.get(f"/runs/{run_id}/trace").status_code == 401
        assert anon.post(f"/runs/{run_id}/trace", data={"key": "sk-wrong"}).status_code == 401
        page = anon.post(f"/runs/{run_id}/trace", data={"key": "sk-alice"})
        assert page.status_code == 200 and "how long?" in page.text
        # the viewer's own policy: no fetches, scripts only its inline one
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert anon.get("/").headers["content-security-policy"].startswith("default-src 'none'")
