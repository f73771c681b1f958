"""Running blocking work off the event loop without tying the loop's shutdown to it.

``asyncio.to_thread`` uses the loop's default executor, and ``asyncio.run`` joins that executor
on exit: a hung model call that a timeout already abandoned would then hold the program open
until it returns. A daemon thread per call costs ~50 µs and is never joined.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return  # cancelled or timed out meanwhile
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
        except RuntimeError:
            pass  # the loop closed while we ran; nobody is waiting

    threading.Thread(target=target, daemon=True).start()
    return await future
