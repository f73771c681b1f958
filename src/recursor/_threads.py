"""Running blocking work off the event loop without tying the loop's shutdown to it.

``asyncio.to_thread`` uses the loop's default executor, and ``asyncio.run`` joins that executor
on exit: a hung model call that a timeout already abandoned would then hold the program open
until it returns. A daemon thread per call costs ~50 µs and is never joined.

What such an abandoned call still returns goes to the function given by :func:`on_late` around
the await (a model call's usage must be counted even when the run gave up waiting for it).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


_late: contextvars.ContextVar[Callable[[Any], None] | None] = contextvars.ContextVar(
    "recursor_on_late", default=None
)


@contextmanager
def on_late(fn: Callable[[Any], None]) -> Iterator[None]:
    """In the block, what an :func:`in_daemon_thread` call returns after its awaiter stopped
    waiting (cancelled, timed out) is passed to ``fn`` instead of being dropped."""
    token = _late.set(fn)
    try:
        yield
    finally:
        _late.reset(token)


async def in_daemon_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    late = _late.get()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # cancelled or timed out meanwhile
            if ok and late is not None:
                late(value)
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        ok: bool
        value: Any
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            ok, value = False, exc
        else:
            ok, value = True, result
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop closed while we ran; nobody is waiting
            if ok and late is not None:
                late(value)

    threading.Thread(target=target, daemon=True).start()
    return await future
