"""An event loop on a daemon thread, and daemon threads for blocking calls.

Tools run on the host, off the threads that watch cells: async tools as tasks of one loop
(so a timeout cancels them), sync tools on daemon threads with one watchdog for their
timeouts. Those threads are
daemons of our own (not ``ThreadPoolExecutor``'s, which the interpreter joins at exit): a sync
tool that hangs past its timeout is abandoned, and must not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import heapq
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")

#: seconds an idle daemon thread waits for work before it ends
_IDLE_S = 30.0


class DaemonThreads(Executor):
    """Runs each submitted call on an idle daemon thread, or on a new one when none is idle."""

    def __init__(self, name: str = "recursor-tool") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the tool threads were shut down")
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put((fut, lambda: fn(*args, **kwargs)))
        if spawn:
            threading.Thread(target=self._work, daemon=True, name=self._name).start()
        return fut

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody counted on this thread: it may go
                        self._idle -= 1
                        return
                continue
            if job is None:
                return
            fut, call = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(call())
                except BaseException as exc:
                    fut.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            idle = self._idle
        for _ in range(idle):
            self._jobs.put(None)


class LoopThread:
    """One asyncio loop running on a daemon thread until :meth:`close`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        #: for sync calls (not ThreadPoolExecutor, whose threads the interpreter joins at exit)
        self.threads = DaemonThreads(f"{name}-sync")
        #: the timeouts of sync calls
        self.watchdog = Watchdog()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs, stop the loop and wait (up to ``timeout``) for it."""
        if self.loop.is_closed() or not self._thread.is_alive():
            return

        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=timeout) if tasks else None
            asyncio.get_running_loop().stop()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop)
        except RuntimeError:
            return  # the loop stopped meanwhile
        self._thread.join(timeout)
        self.threads.shutdown(wait=False)
        self.watchdog.close()


class Watchdog:
    """Calls each callback at its deadline, from one daemon thread (started at the first
    :meth:`after`), unless it was cancelled: the timeouts of sync tools, without a timer thread
    per call."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, list[Callable[[], None] | None]]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def after(self, seconds: float, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` in ``seconds`` unless the returned cancel function is called first."""
        slot: list[Callable[[], None] | None] = [callback]
        when = time.monotonic() + seconds
        with self._cv:
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, slot))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="recursor-wd")
                self._thread.start()
            elif self._heap[0][2] is slot:
                self._cv.notify()  # the new earliest deadline: the thread waits too long

        def cancel() -> None:
            slot[0] = None

        return cancel

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed:
                    while self._heap and self._heap[0][2][0] is None:
                        heapq.heappop(self._heap)  # cancelled: dropped without waiting
                    wait = None if not self._heap else self._heap[0][0] - time.monotonic()
                    if wait is not None and wait <= 0:
                        break
                    self._cv.wait(wait)
                if self._closed:
                    return
                _, _, slot = heapq.heappop(self._heap)
                callback, slot[0] = slot[0], None
            if callback is not None:
                try:
                    callback()
                except Exception:  # the callbacks answer a cell; one
                    pass  # that failed must not stop the timeouts of the others

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._heap.clear()
            self._cv.notify()
