"""An outside client: the official ``rlms`` package pointed at a plain profile of the server
(the stub model behind it), for both its root and its ``llm_query`` calls."""

from __future__ import annotations

import pytest

from recursor.lm.stub_server import StubServer

from .harness import Running

pytestmark = [
    pytest.mark.slow,
    # rlms 0.1.3 never closes the openai client it builds per completion (its socket to our
    # server is collected unclosed); not our code, and nothing of ours is left open
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def test_rlms_uses_the_served_model(server: Running, stub: StubServer) -> None:
    from rlm import RLM as PeerRLM

    def handler(messages: list[dict[str, str]]) -> str:
        if messages[0]["role"] == "system":  # the root: rlms 0.1.3 ends by the answer dict
            return (
                "```repl\nanswer['content'] = llm_query('echo ' + str(len(context)))\n"
                "answer['ready'] = True\n```"
            )
        return messages[-1]["content"].removeprefix("echo ")

    stub.script.handler = handler
    peer = PeerRLM(
        backend="openai",
        backend_kwargs={"model_name": "mini", "base_url": server.base_url, "api_key": "unused"},
        environment="local",
        max_iterations=4,
    )
    try:
        result = peer.completion("x" * 321, root_prompt="how long is the context?")
    finally:
        peer.close()
    answer = getattr(result, "response", result)
    assert str(answer).strip() == "321"
    # every model call went through the server's plain profile to the stub
    assert len(stub.requests) == 2  # the root's reply, its llm_query
    with server.client() as http:
        runs = http.get("/v1/runs").json()["data"]
    assert {r["model"] for r in runs} == {"mini"} and len(runs) == len(stub.requests)
