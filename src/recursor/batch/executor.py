"""Where items run: the :class:`Executor` Protocol and the local :class:`ProcessExecutor`.

An executor has one job: run a picklable function over arguments it pulls one at a time, and
hand back each :class:`Outcome` as it ends. It pulls the next argument only when it has room
to start it, so a caller that stops yielding arguments (the batch budget is spent) stops new
work without cancelling what runs. :class:`recursor.batch.ray_executor.RayExecutor` is the
other implementation.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[A, R]):
    """One argument's end: its value, or the error that kept it from one (``value`` None)."""

    arg: A
    value: R | None
    #: where it ran: a Ray node id, or host:pid of a local worker
    node: str
    error: str | None = None


class Executor(Protocol):
    """Runs ``fn`` over ``args`` concurrently; outcomes are yielded in the order they end."""

    #: arguments run at once (what a progress display and the budget's overshoot depend on)
    @property
    def capacity(self) -> int: ...

    def map_unordered(self, fn: Callable[[A], R], args: Iterable[A]) -> Iterator[Outcome[A, R]]: ...


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _call(fn: Callable[[A], R], arg: A) -> tuple[R, str]:
    return fn(arg), _where()


class ProcessExecutor:
    """``n`` local worker processes (spawned, not forked: the driver has threads, and a forked
    copy of a lock held by one of them would never be released).

    A worker that dies (killed, out of memory) breaks Python's process pool and every item in
    it; the pool is then built anew and those items start again, up to ``max_retries`` times
    each, the way Ray re-runs the tasks of a lost node.
    """

    def __init__(self, n: int = 1, *, max_retries: int = 3) -> None:
        if n < 1:
            raise ValueError("ProcessExecutor needs n >= 1")
        self.n = n
        self.max_retries = max_retries

    @property
    def capacity(self) -> int:
        return self.n

    def map_unordered(self, fn: Callable[[A], R], args: Iterable[A]) -> Iterator[Outcome[A, R]]:
        queue = _Queue(iter(args))
        while not queue.spent():
            pool = ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context("spawn"))
            try:
                yield from self._run_pool(pool, fn, queue)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _run_pool(
        self, pool: ProcessPoolExecutor, fn: Callable[[A], R], queue: _Queue[A]
    ) -> Iterator[Outcome[A, R]]:
        """Run until the queue is spent or the pool breaks; on a break, what was running goes
        back to the queue (or, past its retries, out as a failure)."""
        running: dict[Future[tuple[R, str]], tuple[A, int]] = {}
        while True:
            while len(running) < self.n and (entry := queue.next()) is not None:
                running[pool.submit(_call, fn, entry[0])] = entry
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                # a broken pool fails every future it holds: all of them go back
                for future, (arg, tries) in running.items():
                    if future.done() and future.exception() is None:
                        yield Outcome(arg, *future.result())
                    elif tries < self.max_retries:
                        queue.again(arg, tries + 1)
                    else:
                        yield Outcome(arg, None, "", f"worker lost {tries + 1} times")
                return
            for future in finished:
                arg, _tries = running.pop(future)
                error = future.exception()
                if error is None:
                    yield Outcome(arg, *future.result())
                else:  # the function raised (run_item never does)
                    yield Outcome(arg, None, "", f"{type(error).__name__}: {error}")


class _Queue(Generic[A]):
    """Arguments to run: retries first, then the caller's iterator (pulled lazily)."""

    def __init__(self, source: Iterator[A]) -> None:
        self.source = source
        self.retries: list[tuple[A, int]] = []
        self.exhausted = False

    def again(self, arg: A, tries: int) -> None:
        self.retries.append((arg, tries))

    def next(self) -> tuple[A, int] | None:
        if self.retries:
            return self.retries.pop(0)
        if self.exhausted:
            return None
        try:
            return next(self.source), 0
        except StopIteration:
            self.exhausted = True
            return None

    def spent(self) -> bool:
        return self.exhausted and not self.retries
