"""The embedded model streams its reply and reports the prompt tokens its slot cache served.

Most tests drive a fake llama.cpp server that speaks xllamacpp's callback protocol (each chunk
to the callback, True from it stops the generation). The ``local_model`` tests load the real
0.5B model and check the same against llama.cpp itself.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recursor.errors import ContextWindowExceeded, ModelNotInstalled, SubcallError
from recursor.lm import local
from recursor.lm.base import CallHints, LMProfile
from recursor.lm.gguf_store import ensure_model
from recursor.lm.profile import streaming_of

PIECES = ["def ", "f():", "\n    return 1"]


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "finish_reason": finish, "delta": delta}]}


def usage_chunk(prompt: int = 40, output: int = 3, cached: int | None = 32) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": output}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"choices": [], "usage": usage, "timings": {"cache_n": cached, "prompt_n": 8}}


class StreamingServer:
    """Sends ``chunks`` one by one to the callback, as llama.cpp does, stopping when told."""

    def __init__(self, chunks: list[dict[str, Any]] | None = None) -> None:
        self.chunks = chunks or [
            chunk(None),
            *(chunk(p) for p in PIECES),
            chunk(finish="stop"),
            usage_chunk(),
        ]
        self.requests: list[dict[str, Any]] = []
        self.sent = 0
        #: what the listener had seen when each chunk was sent (deltas arrive before the end)
        self.seen_at_send: list[int] = []
        self.watch: Callable[[], int] = lambda: 0

    def handle_chat_completions(
        self, request: dict[str, Any], callback: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any] | None:
        self.requests.append(request)
        if callback is None:
            assert not request.get("stream")
            return {
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "ok"}}],
                "usage": usage_chunk(prompt=50, output=1, cached=45)["usage"],
            }
        for c in self.chunks:
            self.sent += 1
            stop = callback(c)
            self.seen_at_send.append(self.watch())
            if stop:
                break
        return None


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamingServer]:
    fake = StreamingServer()
    monkeypatch.setattr(local, "_start_server", lambda config: fake)
    monkeypatch.setattr(local, "_check_runtime", lambda: None)
    local.unload_all()
    yield fake
    local.unload_all()


@pytest.fixture
def lm(tmp_path: Path) -> local.LocalLM:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return local.create(str(path))


CHAT = [{"role": "user", "content": "write f"}]


def test_it_declares_streaming(server: StreamingServer, lm: local.LocalLM) -> None:
    assert isinstance(lm.profile, LMProfile) and lm.profile.streams
    assert streaming_of(lm) is lm


def test_each_piece_reaches_the_listener_while_the_reply_is_generated(
    server: StreamingServer, lm: local.LocalLM
) -> None:
    got: list[str] = []
    server.watch = lambda: len(got)
    completion = lm.complete_with(CHAT, CallHints(on_delta=got.append))
    assert got == PIECES
    # the first piece was with the listener before the server sent the next chunk
    assert server.seen_at_send[:5] == [0, 1, 2, 3, 3]
    assert completion.text == "".join(PIECES)
    assert completion.finish_reason == "stop"
    u = completion.usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens) == (40, 3, 32)
    assert u.estimated_calls == 0 and u.cost_usd == 0.0
    request = server.requests[0]
    assert request["stream"] is True and request["cache_prompt"] is True
    assert request["stream_options"] == {"include_usage": True}


def test_a_listener_that_raises_stops_the_generation(
    server: StreamingServer, lm: local.LocalLM
) -> None:
    def stop(piece: str) -> None:
        raise SubcallError("cancelled: the stream's reader stopped reading")

    with pytest.raises(SubcallError, match="stopped reading"):
        lm.complete_with(CHAT, CallHints(on_delta=stop))
    assert server.sent == 2  # the role chunk, then the first piece: nothing after it


def test_without_a_listener_the_call_is_not_streamed(
    server: StreamingServer, lm: local.LocalLM
) -> None:
    completion = lm.complete_with(CHAT, CallHints(cache_key="recursor-run"))
    assert completion.text == "ok"
    assert completion.usage.cached_input_tokens == 45
    assert server.requests[0]["stream"] is False
    assert "cache_key" not in server.requests[0]


def test_async_streaming(server: StreamingServer, lm: local.LocalLM) -> None:
    got: list[str] = []
    completion = asyncio.run(lm.acomplete_with(CHAT, CallHints(on_delta=got.append)))
    assert got == PIECES and completion.text == "".join(PIECES)


def test_a_streamed_error_is_mapped(server: StreamingServer, lm: local.LocalLM) -> None:
    server.chunks = [
        {"error": {"code": 400, "type": "exceed_context_size_error", "message": "too long"}}
    ]
    with pytest.raises(ContextWindowExceeded, match="too long"):
        lm.complete_with(CHAT, CallHints(on_delta=lambda piece: None))


@pytest.mark.parametrize(
    ("tail", "cached"),
    [
        (usage_chunk(cached=32), 32),
        # only the timings say it (older llama.cpp)
        ({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 3}}, 0),
        (
            {
                "choices": [],
                "usage": {"prompt_tokens": 40, "completion_tokens": 3},
                "timings": {"cache_n": 12},
            },
            12,
        ),
        (usage_chunk(prompt=40, cached=41), 0),  # more than the prompt: not believed
        (usage_chunk(prompt=40, cached=-1), 0),
    ],
)
def test_cached_prompt_tokens(
    server: StreamingServer, lm: local.LocalLM, tail: dict[str, Any], cached: int
) -> None:
    server.chunks = [chunk("x", "stop"), tail]
    completion = lm.complete_with(CHAT, CallHints(on_delta=lambda piece: None))
    assert completion.usage.cached_input_tokens == cached
    assert completion.usage.input_tokens == 40


def test_a_stream_without_usage_is_estimated(server: StreamingServer, lm: local.LocalLM) -> None:
    server.chunks = [chunk("hello", "stop")]
    completion = lm.complete_with(CHAT, CallHints(on_delta=lambda piece: None))
    assert completion.usage.estimated_calls == 1
    assert completion.usage.cached_input_tokens == 0


def test_an_rlm_streams_the_local_roots_reply_token_by_token(
    server: StreamingServer, lm: local.LocalLM
) -> None:
    from recursor import RLM, Limits
    from recursor.streaming import Completed
    from recursor.trace import ModelDelta

    server.chunks = [
        chunk("FINAL("),
        chunk("42"),
        chunk(")", "stop"),
        usage_chunk(prompt=300, output=3, cached=0),
    ]
    with RLM(lm, environment="inprocess", limits=Limits(max_iterations=2)) as rlm:
        events = list(rlm.stream("what?", context="ctx"))
    deltas = [e.text for e in events if isinstance(e, ModelDelta)]
    assert deltas == ["FINAL(", "42", ")"]
    done = events[-1]
    assert isinstance(done, Completed) and done.result.answer == "42"


# ------------------------------------------------------------------- the real model


def real_small_model() -> Path:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip('xllamacpp is not installed (pip install "recursor[local]")')
    try:
        return ensure_model("qwen2.5-coder-0.5b")
    except ModelNotInstalled as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def small() -> Iterator[local.LocalLM]:
    real_small_model()
    lm = local.create("qwen2.5-coder-0.5b", n_ctx=1024, max_tokens=12)
    yield lm
    local.unload_all()


SHARED = (
    "You are a terse assistant. Facts: the capital of France is Paris; the capital of Italy "
    "is Rome; the capital of Spain is Madrid. Answer with one word."
)


@pytest.mark.local_model
def test_real_model_streams_and_reuses_its_slot_cache(small: local.LocalLM) -> None:
    arrivals: list[float] = []
    first = small.complete_with(
        [
            {"role": "system", "content": SHARED},
            {"role": "user", "content": "List the three capitals, separated by commas."},
        ],
        CallHints(on_delta=lambda piece: arrivals.append(time.monotonic())),
    )
    # piece by piece as they were sampled, not all at once at the end
    assert len(arrivals) >= 3 and arrivals[0] < arrivals[-1]
    assert first.text.strip() and first.usage.estimated_calls == 0
    second = small.complete_with(
        [{"role": "system", "content": SHARED}, {"role": "user", "content": "Italy?"}],
        CallHints(on_delta=lambda piece: None),
    )
    # the system prompt was still in the slot: llama.cpp did not read it again
    assert second.usage.cached_input_tokens > 20
    assert second.usage.cached_input_tokens < second.usage.input_tokens
    plain = small.complete(
        [{"role": "system", "content": SHARED}, {"role": "user", "content": "Spain?"}]
    )
    assert plain.usage.cached_input_tokens > 20


@pytest.mark.local_model
def test_real_model_stops_generating_when_the_listener_raises(small: local.LocalLM) -> None:
    arrivals: list[float] = []

    def stop_at_third(piece: str) -> None:
        arrivals.append(time.monotonic())
        if len(arrivals) == 3:
            raise SubcallError("cancelled")

    long = local.create("qwen2.5-coder-0.5b", n_ctx=1024, max_tokens=900)
    quick = local.create("qwen2.5-coder-0.5b", n_ctx=1024, max_tokens=2)
    try:
        with pytest.raises(SubcallError):
            long.complete_with(
                [{"role": "user", "content": "Count from 1 to 500, one number a line."}],
                CallHints(on_delta=stop_at_third),
            )
        per_token = arrivals[2] - arrivals[1]
        started = time.monotonic()
        after = quick.complete([{"role": "user", "content": "Say hi."}])
        waited = time.monotonic() - started
    finally:
        long.close()
        quick.close()
    assert len(arrivals) == 3
    assert after.usage.output_tokens <= 2
    # the slot was free at once: the call did not queue behind ~900 more tokens of counting
    assert waited < 300 * per_token, (waited, per_token)
