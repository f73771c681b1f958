"""The stub server's prompt cache: enough of the providers' behaviour to test caching offline.

It counts tokens with the 4-characters-a-token estimate, per whole message (the providers cache
in token blocks; whole messages are coarser and deterministic, which tests want).

* OpenAI: a request is cached against earlier requests with the same ``prompt_cache_key``;
  the longest common prefix of whole messages is reported as
  ``usage.prompt_tokens_details.cached_tokens``. A request without a key is not cached: the
  real service caches long prefixes by itself too, best-effort; the stub models the key as what
  makes a hit certain, so a run with caching off measures as uncached.
* Anthropic: only ``cache_control`` breakpoints cache. A breakpoint stores the prefix up to and
  including its message; a later request reads the longest stored prefix it starts with
  (``cache_read_input_tokens``), writes what lies between that and its last breakpoint
  (``cache_creation_input_tokens``), and ``input_tokens`` is the rest, as the API reports.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from recursor.usage import estimate_message_tokens

Chat = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class CacheCounts:
    #: all prompt tokens, and the parts read from and written to the cache
    total: int
    read: int = 0
    written: int = 0


def _unit(message: dict[str, str]) -> str:
    return json.dumps([message.get("role", ""), message.get("content", "")])


@dataclass(slots=True)
class PromptCache:
    """Prefixes seen, per cache key (OpenAI) or stored at breakpoints (Anthropic)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_key: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    breakpoints: set[tuple[str, ...]] = field(default_factory=set)

    def openai(self, chat: Chat, key: str | None) -> CacheCounts:
        total = estimate_message_tokens(chat)
        if key is None:
            return CacheCounts(total)
        units = tuple(_unit(m) for m in chat)
        with self.lock:
            seen = self.by_key.setdefault(key, [])
            common = max((_common(units, s) for s in seen), default=0)
            seen.append(units)
        # the whole prompt is never a hit: the provider processes at least the last message
        common = min(common, len(chat) - 1)
        return CacheCounts(total, read=estimate_message_tokens(chat[:common]))

    def anthropic(self, chat: Chat, marks: list[int]) -> CacheCounts:
        """``marks``: indices in ``chat`` of the messages that carry a breakpoint."""
        total = estimate_message_tokens(chat)
        if not marks:
            return CacheCounts(total)
        units = tuple(_unit(m) for m in chat)
        last = max(marks) + 1
        with self.lock:
            hit = max((n for n in range(1, last + 1) if units[:n] in self.breakpoints), default=0)
            for mark in marks:
                self.breakpoints.add(units[: mark + 1])
        read = estimate_message_tokens(chat[:hit])
        written = estimate_message_tokens(chat[:last]) - read
        return CacheCounts(total, read=read, written=written)


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def anthropic_marks(body: dict[str, Any]) -> list[int]:
    """Indices, in the stub's chat of an Anthropic body (the system prompt first when there
    is one), of the messages holding a ``cache_control`` block."""
    marks: list[int] = []
    system = body.get("system")
    offset = 0
    if system:
        offset = 1
        if isinstance(system, list) and any(_marked(b) for b in system):
            marks.append(0)
    for i, message in enumerate(body.get("messages") or []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(_marked(b) for b in content):
            marks.append(i + offset)
    return marks


def _marked(block: object) -> bool:
    return isinstance(block, dict) and isinstance(block.get("cache_control"), dict)
