"""Fakes that ship with the package, so tests (yours and ours) never need a network.

* :class:`ScriptedLM` replies with the given strings in order and raises
  :class:`~recursor.errors.ScriptExhausted` when asked for one more.
* :class:`FunctionLM` calls ``fn(messages) -> str``.

Both report token usage with the documented estimate of :func:`recursor.usage.estimate_tokens`
(4 characters a token, plus 4 tokens of framing per input message), and a cost when given a
:class:`~recursor.usage.Pricing`, so budgets can be tested offline. Their profile is unknown
window, the given price, the full prompt; pass ``profile=LMProfile(...)`` to play a model with a
window (``pricing=`` then still sets the price).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable

from recursor.errors import ScriptExhausted
from recursor.lm.base import Completion, LMProfile, Message, SyncLM
from recursor.usage import Pricing, Usage, estimate_message_tokens, estimate_tokens

__all__ = ["FunctionLM", "ScriptedLM", "fake_usage"]


def _fake_profile(profile: LMProfile | None, pricing: Pricing | None) -> LMProfile:
    profile = profile or LMProfile()
    return profile if pricing is None else dataclasses.replace(profile, pricing=pricing)


def fake_usage(messages: list[Message], reply: str, pricing: Pricing | None) -> Usage:
    """The usage the fakes report for one call."""
    return Usage.of_call(estimate_message_tokens(messages), estimate_tokens(reply), pricing)


class ScriptedLM(SyncLM):
    """Replies with ``responses`` in order; thread-safe, so batched sub-calls may share one.

    ``calls`` keeps every chat it was sent, for assertions.
    """

    def __init__(
        self,
        responses: Iterable[str],
        *,
        name: str = "scripted",
        pricing: Pricing | None = None,
        profile: LMProfile | None = None,
    ) -> None:
        self.name = name
        self.profile = _fake_profile(profile, pricing)
        self._responses = list(responses)
        self._next = 0
        self._lock = threading.Lock()
        self.calls: list[list[Message]] = []

    @property
    def remaining(self) -> int:
        return len(self._responses) - self._next

    def complete(self, messages: list[Message]) -> Completion:
        with self._lock:
            self.calls.append([dict(m) for m in messages])
            if self._next >= len(self._responses):
                raise ScriptExhausted(
                    f"ScriptedLM {self.name!r} was asked for reply {self._next + 1} "
                    f"but holds only {len(self._responses)}"
                )
            reply = self._responses[self._next]
            self._next += 1
        return Completion(reply, fake_usage(messages, reply, self.profile.pricing), "stop")

    def assert_complete(self) -> None:
        """Fail unless every scripted reply was used."""
        if self.remaining:
            raise AssertionError(f"ScriptedLM {self.name!r} has {self.remaining} unused replies")


class FunctionLM(SyncLM):
    """Calls ``fn(messages) -> str`` for every completion; ``calls`` counts them."""

    def __init__(
        self,
        fn: Callable[[list[Message]], str],
        *,
        name: str = "function",
        pricing: Pricing | None = None,
        profile: LMProfile | None = None,
    ) -> None:
        self.name = name
        self.profile = _fake_profile(profile, pricing)
        self._fn = fn
        self._lock = threading.Lock()
        self.calls = 0

    def complete(self, messages: list[Message]) -> Completion:
        with self._lock:
            self.calls += 1
        reply = self._fn(messages)
        if not isinstance(reply, str):
            raise TypeError(
                f"FunctionLM {self.name!r}: fn returned {type(reply).__name__}, not str"
            )
        return Completion(reply, fake_usage(messages, reply, self.profile.pricing), "stop")
