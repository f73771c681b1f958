"""The LM seam: one Protocol every backend implements.

A backend turns a chat (a list of ``{"role", "content"}`` dicts) into a :class:`Completion`
carrying the text and the call's :class:`~recursor.usage.Usage`. It has a sync and an async
method because the RLM has a sync and an async driver; a backend with only one natural form
derives the other (see :class:`SyncLM`). Backends raise the :class:`~recursor.errors.LMError`
family, mapping provider errors at this boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recursor._threads import in_daemon_thread
from recursor.usage import Usage

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Completion:
    """What one model call returned."""

    text: str
    usage: Usage
    #: the provider's reason for stopping ("stop", "length", ...), when it said
    finish_reason: str | None = None


@runtime_checkable
class LM(Protocol):
    """A chat model. ``name`` is how usage and traces refer to it ("openai:gpt-5-mini")."""

    name: str

    def complete(self, messages: list[Message]) -> Completion: ...

    async def acomplete(self, messages: list[Message]) -> Completion: ...


class ClosableLM(LM, Protocol):
    """An LM holding something to release (SDK connection pools, a loaded model): what every
    backend built from a ``provider:model`` string is. ``close`` releases it; ``aclose`` also
    closes the async clients of the running loop. Both are idempotent."""

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class SyncLM:
    """Base for backends that are naturally blocking: ``acomplete`` runs ``complete`` in a thread.

    A daemon thread (not a direct call, not the loop's executor) so that a slow or hung backend
    never blocks the event loop, the async driver's timeouts still fire, and an abandoned call
    does not hold up ``asyncio.run`` at exit.
    """

    name: str = "lm"

    def complete(self, messages: list[Message]) -> Completion:
        raise NotImplementedError

    async def acomplete(self, messages: list[Message]) -> Completion:
        return await in_daemon_thread(self.complete, messages)
