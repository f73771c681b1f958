"""Shared pieces of the batch tests: a stub model that answers each item by its query, and a
helper to read results.jsonl."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursor.batch import Item
from recursor.lm.stub_server import StubServer

#: a model the pricing table knows, so the stub's token counts have a cost
PRICED = "openai:gpt-4o-mini"


def answer_by_query(chat: list[dict[str, str]]) -> str:
    """The root's first reply: FINAL with an answer derived from the item's question."""
    text = "\n".join(m["content"] for m in chat)
    found = re.search(r"question (Q\w+)", text)
    return f"FINAL(ans-{found.group(1) if found else 'none'})"


def make_items(n: int, prefix: str = "i") -> list[Item]:
    return [
        Item(id=f"{prefix}{i}", query=f"question Q{i}", context=f"doc {i} " * 20) for i in range(n)
    ]


def read_results(out: Path) -> list[dict[str, Any]]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    """The stub model with a short delay per call; worker processes find it by environment."""
    with StubServer(answer_by_query, delay=0.05, record=False) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        yield srv
