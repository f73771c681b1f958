"""What an :class:`~recursor.RLM` made, and so releases when it closes.

An RLM given strings builds the objects itself: models from ``provider:model`` (SDK clients
with connection pools, a loaded local model) and the environment from its name (a spare
worker, a fork server). Those are its own. Objects the caller passed in (LMs, an
Environment, sinks) are the caller's: they are used, sinks are flushed, nothing is closed.

Closing also sets the RLM's cancel scope, the parent of every completion's own: a completion
still running on another thread stops at its next step instead of running on without an owner.
"""

from __future__ import annotations

import threading
from contextlib import AsyncExitStack, ExitStack
from dataclasses import replace

from recursor._cancel import Cancel
from recursor._threads import in_daemon_thread
from recursor.errors import RLMClosed
from recursor.lm.base import LM, ClosableLM
from recursor.lm.registry import create_lm, resolve_lm
from recursor.sandbox import resolve_environment
from recursor.sandbox.base import Environment
from recursor.sandbox.environment import WorkerEnvironment
from recursor.trace import ClosableSink, Sink


class Owned:
    """The resources one RLM made; thread-safe to close, once."""

    def __init__(self) -> None:
        #: models made from strings, by string (the same string twice is one object)
        self._lms: dict[str, ClosableLM] = {}
        self._environment: Environment | None = None
        self._lock = threading.Lock()
        #: set by close; every completion's scope is a child of it
        self.cancel = Cancel()

    def lm(self, spec: LM | str) -> LM:
        """``spec`` as an LM; one made here from a string is owned."""
        if not isinstance(spec, str):
            return resolve_lm(spec)
        if spec not in self._lms:
            self._lms[spec] = create_lm(spec)
        return self._lms[spec]

    def environment(self, spec: str | Environment, *, workers: int = 1) -> Environment:
        """``spec`` as an Environment; one made here from a name is owned, and its workers'
        automatic memory cap shares the machine between the ``workers`` the tree can run at
        once (an Environment object the caller configured is left as it is)."""
        env = resolve_environment(spec)
        if isinstance(spec, str):
            self._environment = env
            if isinstance(env, WorkerEnvironment):
                env.limits = replace(env.limits, concurrent_workers=workers)
        return env

    def check_open(self) -> None:
        if self.cancel.is_set():
            raise RLMClosed("this RLM was closed; make a new one (its models can be reused)")

    def _close_once(self) -> bool:
        with self._lock:
            if self.cancel.is_set():
                return False
            self.cancel.set("the RLM was closed")
            return True

    def close(self, sinks: list[Sink]) -> None:
        """Stop running completions, release what is owned, flush ``sinks``. Idempotent."""
        if not self._close_once():
            return
        with ExitStack() as stack:  # every release is tried, even after one failed
            for lm in self._lms.values():
                stack.callback(lm.close)
            if self._environment is not None:
                stack.callback(self._environment.close)
            for sink in sinks:
                if isinstance(sink, ClosableSink):
                    stack.callback(sink.flush)

    async def aclose(self, sinks: list[Sink]) -> None:
        """:meth:`close` from async code: the models' async clients of this loop close too,
        and blocking releases (killing a worker, a sink's flush) run off the loop."""
        if not self._close_once():
            return
        async with AsyncExitStack() as stack:
            for lm in self._lms.values():
                stack.push_async_callback(lm.aclose)
            if self._environment is not None:
                stack.push_async_callback(in_daemon_thread, self._environment.close)
            for sink in sinks:
                if isinstance(sink, ClosableSink):
                    stack.push_async_callback(in_daemon_thread, sink.flush)
