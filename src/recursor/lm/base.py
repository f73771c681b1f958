"""The LM seam: one Protocol every backend implements.

A backend turns a chat (a list of ``{"role", "content"}`` dicts) into a :class:`Completion`
carrying the text and the call's :class:`~recursor.usage.Usage`. It has a sync and an async
method because the RLM has a sync and an async driver; a backend with only one natural form
derives the other (see :class:`SyncLM`). Backends raise the :class:`~recursor.errors.LMError`
family, mapping provider errors at this boundary.

A backend also declares what it is, its :class:`LMProfile` (window, price, output cap, cache
parameters, prompt style, streaming). The core reads it through :func:`recursor.lm.profile_of`
only, never by probing attributes of the object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from recursor._threads import in_daemon_thread
from recursor.usage import Pricing, Usage

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Completion:
    """What one model call returned."""

    text: str
    usage: Usage
    #: the provider's reason for stopping ("stop", "length", ...), when it said
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class LMProfile:
    """What a model is, as the core needs to know it. Every field has an "unknown" value.

    The broker refuses a prompt past ``context_window`` before calling the model, and the root
    is told the sub-model's capacity from it; ``pricing`` prices calls and cost reservations;
    ``max_output_tokens`` bounds the output a call may be charged for; ``cache_params`` are the
    request parameters that change a reply, so they key the sub-call cache with the model name.
    """

    #: the most *input* tokens a call may carry (``None``: unknown, nothing is refused early)
    context_window: int | None = None
    #: ``None``: unpriced, so a cost we do not know never looks free
    pricing: Pricing | None = None
    #: the output cap a call is sent with (``None``: the provider's default, not known here)
    max_output_tokens: int | None = None
    #: request parameters that change the reply (temperature, max_tokens, ...); JSON-able
    cache_params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: the root prompt it reads best: "compact" for small local models
    prompt_style: Literal["full", "compact"] = "full"
    #: it implements :class:`StreamingLM` (streams its reply, takes a prompt-cache key)
    streams: bool = False


@runtime_checkable
class ChatModel(Protocol):
    """The calls of a chat model, without the profile: what a user's own object must have.

    ``name`` is how usage and traces refer to it ("openai:gpt-5-mini").
    """

    name: str

    def complete(self, messages: list[Message]) -> Completion: ...

    async def acomplete(self, messages: list[Message]) -> Completion: ...


@runtime_checkable
class LM(ChatModel, Protocol):
    """A chat model that declares its :class:`LMProfile` (every backend of recursor does).

    Read the profile with :func:`recursor.lm.profile_of`, which also serves an object that
    declares none (see there).
    """

    @property
    def profile(self) -> LMProfile: ...


@dataclass(frozen=True, slots=True)
class CallHints:
    """What the caller of one model call may add that does not change the reply."""

    #: called with each piece of the reply text as it arrives (None: do not stream)
    on_delta: Callable[[str], None] | None = None
    #: groups calls that share a prefix (one run, one session) for the provider's prompt cache
    cache_key: str | None = None


@runtime_checkable
class StreamingLM(LM, Protocol):
    """An LM that streams and takes :class:`CallHints`; it says so with ``profile.streams``
    (read by :func:`recursor.lm.profile.streaming_of`, never probed). Both methods return the
    whole :class:`Completion` (text, usage, finish reason) once the reply ends."""

    def complete_with(self, messages: list[Message], hints: CallHints) -> Completion: ...

    async def acomplete_with(self, messages: list[Message], hints: CallHints) -> Completion: ...


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
