"""The parts tools run on: daemon threads that are reused, and one watchdog for timeouts."""

from __future__ import annotations

import threading
import time

from recursor.tools.loop import DaemonThreads, LoopThread, Watchdog


def test_daemon_threads_are_reused_and_a_hung_one_does_not_block_others() -> None:
    pool = DaemonThreads("test-pool")
    names = {pool.submit(lambda: threading.current_thread().name).result(5) for _ in range(50)}
    before = threading.active_count()
    for _ in range(50):
        pool.submit(lambda: None).result(5)
    assert threading.active_count() <= before + 1  # sequential calls: one thread does them
    assert names == {"test-pool"}
    release = threading.Event()
    hung = pool.submit(release.wait, 10)
    assert pool.submit(lambda: 7).result(5) == 7  # a new thread, the hung one is left alone
    release.set()
    assert hung.result(5) is True
    pool.shutdown()


def test_the_watchdog_fires_in_deadline_order_and_not_when_cancelled() -> None:
    dog = Watchdog()
    fired: list[str] = []
    done = threading.Event()
    dog.after(0.3, lambda: (fired.append("late"), done.set()))
    cancel = dog.after(0.1, lambda: fired.append("cancelled"))
    dog.after(0.15, lambda: fired.append("early"))
    dog.after(0.05, lambda: 1 / 0)  # a failing callback does not stop the others
    cancel()
    assert done.wait(5)
    assert fired == ["early", "late"]
    dog.close()


def test_a_loop_thread_cancels_its_tasks_when_closed() -> None:
    import asyncio

    runner = LoopThread("test-loop")
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner.submit(forever())
    time.sleep(0.1)
    runner.close()
    assert cancelled.wait(5)
    assert runner.loop.is_closed()
