"""Every backend's profile reaches the root's prompt and the broker, before any model call.

For each backend the sub-model's window is what the root is told it reads per prompt (at 3
characters a token), and an ``llm_query`` past it is refused by the broker up front: no
request reaches the stub server, and the local model is never loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recursor import RLM
from recursor.lm import LM, LMProfile, local, profile_of
from recursor.lm import anthropic as anthropic_lm
from recursor.lm import litellm as litellm_lm
from recursor.lm import openai as openai_lm
from recursor.lm.stub_server import StubServer
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import SubcallMade


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer(handler=lambda messages: "ok") as srv:
        yield srv


@pytest.fixture
def no_local_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(config: local.RuntimeConfig) -> Any:
        raise AssertionError(f"the local model was loaded: {config.path}")

    monkeypatch.setattr(local, "_start_server", refuse)


def _openai(srv: StubServer) -> LM:
    return openai_lm.create("gpt-4o-mini", base_url=srv.base_url, api_key="k", max_retries=0)


def _anthropic(srv: StubServer) -> LM:
    return anthropic_lm.create("claude-haiku-4-5", base_url=srv.url, api_key="k", max_retries=0)


def _litellm(srv: StubServer) -> LM:
    return litellm_lm.create("openai/gpt-4o-mini", base_url=srv.base_url, api_key="k")


def _local(srv: StubServer) -> LM:
    # the object only: its weights are loaded by the first call, which must never come
    config = local.RuntimeConfig("/nonexistent/qwen2.5-coder-1.5b.gguf", n_ctx=16_384)
    return local.LocalLM("local:qwen2.5-coder-1.5b", config)


BACKENDS: dict[str, tuple[Callable[[StubServer], LM], int]] = {
    "openai": (_openai, 128_000),
    "anthropic": (_anthropic, 200_000),
    "litellm": (_litellm, 128_000),
    "local": (_local, 16_384),
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_window_is_the_capacity_and_refuses_oversize_prompts_up_front(
    backend: str, server: StubServer, no_local_load: None
) -> None:
    make, window = BACKENDS[backend]
    sub = make(server)
    assert profile_of(sub).context_window == window
    oversize = window * 4 + 10_000  # past the window at the broker's 4 characters a token
    root = ScriptedLM([f"```repl\nr = llm_query('x' * {oversize})\n```", "FINAL(done)"])
    result = RLM(root, sub, environment="inprocess").completion("q", context="c")

    system = root.calls[0][0]["content"]
    assert f"reads about {window * 3:,} characters per prompt" in system
    assert "100,000" not in system
    made = [e for e in result.trace.events if isinstance(e, SubcallMade)]
    assert len(made) == 1 and made[0].error is not None
    assert "ContextWindowExceeded" in made[0].error
    assert f"accepts at most {window:,} input tokens" in made[0].error
    assert made[0].attempts == 0
    assert "ContextWindowExceeded" in root.calls[1][-1]["content"]  # raised in the cell
    assert server.requests == []


def test_local_sub_model_from_the_issue(no_local_load: None) -> None:
    """sub="local:qwen2.5-coder-1.5b": 16,384 tokens, so the root reads 49,152 characters, and a
    300,000-character llm_query is refused without loading the model."""
    sub = _local(StubServer())
    root = ScriptedLM(["```repl\nr = llm_query('x' * 300_000)\nprint(r)\n```", "FINAL(done)"])
    RLM(root, sub, environment="inprocess").completion("q", context="c")
    assert "49,152 characters per prompt" in root.calls[0][0]["content"]
    observation = root.calls[1][-1]["content"]
    assert "ContextWindowExceeded" in observation
    assert "accepts at most 16,384 input tokens" in observation


def test_context_windows_override_the_profile(server: StubServer) -> None:
    root = ScriptedLM(["```repl\nr = llm_query('x' * 4_000)\n```", "FINAL(done)"])
    rlm = RLM(
        root, _openai(server), environment="inprocess", context_windows={"openai:gpt-4o-mini": 500}
    )
    rlm.completion("q", context="c")
    assert "1,500 characters per prompt" in root.calls[0][0]["content"]
    assert "accepts at most 500 input tokens" in root.calls[1][-1]["content"]
    assert server.requests == []


def test_fake_with_a_profiled_window() -> None:
    sub = FunctionLM(lambda chat: "ok", profile=LMProfile(context_window=1_000))
    root = ScriptedLM(["```repl\nr = llm_query_batched(['x' * 8_000, 'y'])\n```", "FINAL_VAR(r)"])
    answer = RLM(root, sub, environment="inprocess").completion("q", context="c").answer or ""
    assert "3,000 characters per prompt" in root.calls[0][0]["content"]
    refused, ok = eval(answer)
    assert "ContextWindowExceeded" in refused and ok == "ok"
    assert sub.calls == 1


def test_unknown_window_is_advertised_as_the_documented_default() -> None:
    root = ScriptedLM(["FINAL(x)"])
    RLM(root, FunctionLM(lambda chat: "ok"), environment="inprocess").completion("q", context="c")
    assert "100,000 characters per prompt" in root.calls[0][0]["content"]


def test_prompt_style_comes_from_the_profile(no_local_load: None) -> None:
    rlm = RLM(ScriptedLM([]), environment="inprocess")
    assert rlm.style_for(_local(StubServer())) == "compact"
    assert rlm.style_for(ScriptedLM([])) == "full"
    compact = ScriptedLM([], profile=LMProfile(prompt_style="compact"))
    assert rlm.style_for(compact) == "compact"
    assert (
        RLM(ScriptedLM([]), prompt_style="full", environment="inprocess").style_for(compact)
        == "full"
    )
