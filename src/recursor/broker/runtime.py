"""The broker's machinery for one run tree: an event loop on a daemon thread, and what lives on it.

Sessions call the broker from host threads and block; the broker hands the work to this loop
with ``asyncio.run_coroutine_threadsafe``. One loop per run tree means one async SDK client per
model per tree (``LazyClients`` keys them by loop), real concurrency for remote backends without
a thread per call, and one place for the limits: the global semaphore, per-model gates (slots and
rate buckets), per-depth slots for child runs, the cache and the in-flight table.

:class:`~recursor.tree.Tree` owns it: started lazily by the first sub-call, stopped when the
completion ends (which also closes the async clients made on it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from recursor.broker.cache import SubcallCache
from recursor.broker.policy import ModelGate, ModelLimits, RetryPolicy
from recursor.errors import ConfigurationError
from recursor.lm.base import LM
from recursor.lm.profile import profile_of

T = TypeVar("T")

#: seconds ``close`` waits for the loop to wind down (cancel calls, close SDK clients)
_CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """The sub-call knobs of :class:`~recursor.rlm.RLM`, grouped (see its docstring)."""

    max_concurrency: int = 16
    model_limits: dict[str, ModelLimits] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    subcall_timeout_s: float | None = None
    subcall_errors: Literal["string", "raise"] = "string"
    #: True: in memory for the run; a path: also a SQLite file shared across runs; False: off
    cache: bool | str | os.PathLike[str] = True
    #: input-token windows by model name, overriding the models' profiles
    context_windows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be >= 1")
        if self.subcall_timeout_s is not None and self.subcall_timeout_s <= 0:
            raise ConfigurationError("subcall_timeout_s must be > 0 or None")
        if self.subcall_errors not in ("string", "raise"):
            raise ConfigurationError('subcall_errors must be "string" or "raise"')
        if not isinstance(self.cache, bool):
            parent = Path(os.fspath(self.cache)).parent
            if not parent.is_dir():
                raise ConfigurationError(
                    f"cache={self.cache!r}: the folder {parent} does not exist"
                )
        for name, window in self.context_windows.items():
            if window < 1:
                raise ConfigurationError(f"context_windows[{name!r}] must be >= 1")

    def context_window(self, lm: LM) -> int | None:
        """Input tokens ``lm`` accepts: the override by its name, else its profile's window."""
        if lm.name in self.context_windows:
            return self.context_windows[lm.name]
        return profile_of(lm).context_window


class BrokerRuntime:
    """The loop and shared limits of one run tree's broker. Thread-safe to start and stop."""

    def __init__(self, options: BrokerOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._cache: SubcallCache | None = None
        # loop-bound objects: created and used on the loop only
        self._global: asyncio.Semaphore | None = None
        self._gates: dict[str, ModelGate] = {}
        self._children: dict[int, asyncio.Semaphore] = {}
        #: cache key -> the future of the identical call in flight
        self.inflight: dict[str, asyncio.Future[str]] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def cache(self) -> SubcallCache | None:
        opt = self.options.cache
        if opt is False:
            return None
        with self._lock:
            if self._cache is None:
                self._cache = SubcallCache(None if opt is True else opt)
            return self._cache

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop (starting it on first use); raises RuntimeError if closed."""
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("the run is over: its sub-call broker is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=_serve, args=(loop,), name="recursor-broker", daemon=True
                )
                self._thread.start()
                self._loop = loop
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the loop, from any thread (nothing happens once the loop is closed)."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(fn)
            except RuntimeError:
                pass  # closed meanwhile: close() cancels what was running anyway

    def close(self) -> None:
        """Stop the loop: cancel calls still running, close the SDK clients made on it."""
        with self._lock:
            self._closed = True
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
            cache, self._cache = self._cache, None
        if loop is not None and thread is not None:
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # already closed
            if thread is not threading.current_thread():
                thread.join(_CLOSE_TIMEOUT_S)
        if cache is not None:
            cache.close()

    # -- loop-side limits ---------------------------------------------------------------------
    def global_slots(self) -> asyncio.Semaphore:
        if self._global is None:
            self._global = asyncio.Semaphore(self.options.max_concurrency)
        return self._global

    def gate(self, model: str) -> ModelGate:
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates[model] = ModelGate(self.options.model_limits.get(model))
        return gate

    def child_slots(self, depth: int) -> asyncio.Semaphore:
        """Slots for child runs at ``depth``: per depth, because a child holding a slot waits on
        its own sub-calls, which must never need a slot of the same pool (that deadlocks)."""
        sem = self._children.get(depth)
        if sem is None:
            sem = self._children[depth] = asyncio.Semaphore(self.options.max_concurrency)
        return sem


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            # runs LazyClients' keepers: the async SDK clients made on this loop close here
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
