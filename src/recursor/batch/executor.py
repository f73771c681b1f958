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
    copy of a lock held by one of them would never be released)."""

    def __init__(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("ProcessExecutor needs n >= 1")
        self.n = n

    @property
    def capacity(self) -> int:
        return self.n

    def map_unordered(self, fn: Callable[[A], R], args: Iterable[A]) -> Iterator[Outcome[A, R]]:
        source = iter(args)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.n, mp_context=context) as pool:
            running: dict[Future[tuple[R, str]], A] = {}

            def fill() -> None:
                while len(running) < self.n:
                    try:
                        arg = next(source)
                    except StopIteration:
                        return
                    running[pool.submit(_call, fn, arg)] = arg

            fill()
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    arg = running.pop(future)
                    try:
                        value, node = future.result()
                    except Exception as exc:  # a worker that died: the item is not done
                        yield Outcome(arg, None, "", f"{type(exc).__name__}: {exc}")
                    else:
                        yield Outcome(arg, value, node)
                fill()
