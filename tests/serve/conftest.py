from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recursor.lm.stub_server import StubServer

from .harness import Running, config_data, root_then_sub, running


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    """The model server every profile's ``openai:`` model talks to."""
    server = StubServer(handler=root_then_sub).start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    yield server
    server.stop()


@pytest.fixture
def serve(stub: StubServer, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """``serve(**config)`` starts a server (stopped after the test)."""
    stack: list[object] = []

    def start(**extra: object) -> Running:
        cm = running(config_data(tmp_path / "data", **extra))
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
def server(serve: Callable[..., Running]) -> Running:
    return serve()
