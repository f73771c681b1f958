"""The OpenAI chat endpoint, driven by the official openai client and curl."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import openai
import pytest

from recursor.lm.stub_server import StubServer

from .harness import Running


def test_sync_client_extra_body_context(server: Running, stub: StubServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    raw = client.chat.completions.with_raw_response.create(
        model="rlm",
        messages=[{"role": "user", "content": "how long?"}],
        extra_body={"context": "x" * 1234},
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "1234"
    run_id = raw.headers["x-recursor-run-id"]
    assert run_id.startswith("run_")
    # the whole tree's usage: two root calls and one sub-call, as the stub counted them
    assert reply.usage is not None
    bodies = [r.body for r in stub.requests]
    assert len(bodies) == 3
    assert reply.usage.model_extra is not None and reply.usage.model_extra["calls"] == 3
    with server.client() as http:
        row = http.get(f"/v1/runs/{run_id}").json()
    assert row["state"] == "succeeded" and row["answer"] == "1234"
    assert row["usage"]["total"]["input_tokens"] == reply.usage.prompt_tokens


def test_async_client_and_stream_with_usage(server: Running) -> None:
    async def go() -> tuple[list[str], list[str], object]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused")
        stream = await client.chat.completions.create(
            model="rlm",
            messages=[{"role": "user", "content": "how long?"}],
            extra_body={"context": "abcdef"},
            stream=True,
            stream_options={"include_usage": True},
        )
        progress: list[str] = []
        content: list[str] = []
        usage = None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                extra = choice.delta.model_extra or {}
                if extra.get("reasoning_content"):
                    progress.append(extra["reasoning_content"])
                if choice.delta.content:
                    content.append(choice.delta.content)
        await client.close()
        return progress, content, usage

    progress, content, usage = asyncio.run(go())
    assert "".join(content) == "6"
    text = "".join(progress)
    assert "iteration 1:" in text and "cell 0: ok" in text and "llm #0" in text
    assert all(p.endswith("\n") and p.count("\n") == 1 for p in progress)  # a line each
    assert usage is not None and usage.total_tokens > 0  # type: ignore[attr-defined]


def test_drop_in_mode(serve: object, stub: StubServer) -> None:
    server = serve(rlm={"inline_limit": 100})  # type: ignore[operator]
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    # short: straight to the root model (the stub echoes what follows "echo ")
    short = client.chat.completions.with_raw_response.create(
        model="rlm", messages=[{"role": "user", "content": "echo hello"}]
    )
    assert short.parse().choices[0].message.content == "hello"
    assert stub.requests[-1].body["messages"][0]["role"] == "user"  # no RLM system prompt
    # long history: it becomes the context, the last user turn the query
    history = [
        {"role": "user", "content": "a" * 150},
        {"role": "assistant", "content": "noted"},
        {"role": "user", "content": "how long?"},
    ]
    long = client.chat.completions.create(model="rlm", messages=history)  # type: ignore[arg-type]
    transcript_len = len("[user]\n" + "a" * 150 + "\n\n[assistant]\nnoted")
    assert long.choices[0].message.content == str(transcript_len)
    # one huge last message: it is the context
    huge = client.chat.completions.create(
        model="rlm", messages=[{"role": "user", "content": "b" * 500}]
    )
    assert huge.choices[0].message.content == "500"


def test_plain_profile(server: Running) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    reply = client.chat.completions.create(
        model="mini", messages=[{"role": "user", "content": "echo plain"}]
    )
    assert reply.choices[0].message.content == "plain"
    models = {m.id for m in client.models.list()}
    assert models == {"rlm", "mini"}


def test_file_upload_and_context_file(server: Running, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    doc = tmp_path / "doc.txt"
    doc.write_text("z" * 777)
    with doc.open("rb") as f:
        uploaded = client.files.create(file=f, purpose="user_data")
    assert uploaded.bytes == 777 and uploaded.filename == "doc.txt"
    reply = client.chat.completions.create(
        model="rlm",
        messages=[{"role": "user", "content": "how long?"}],
        extra_body={"context_file": uploaded.id},
    )
    assert reply.choices[0].message.content == "777"
    assert client.files.retrieve(uploaded.id).bytes == 777
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.files.retrieve(uploaded.id)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_stream(server: Running) -> None:
    body = {
        "model": "rlm",
        "messages": [{"role": "user", "content": "how long?"}],
        "context": "hello",
        "stream": True,
    }
    out = subprocess.run(
        [
            "curl",
            "-sN",
            f"{server.base_url}/chat/completions",
            "-H",
            "content-type: application/json",
            "-d",
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    events = [line.removeprefix("data: ") for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "5"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_plain_profile_streams(server: Running) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    stream = client.chat.completions.create(
        model="mini", messages=[{"role": "user", "content": "echo streamed"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed"
