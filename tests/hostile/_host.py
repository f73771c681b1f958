"""Running an attack cell through a real RLM and measuring what it did to the host.

The host's peak RSS is sampled from ``/proc/self/status`` on a thread while the attack runs
(``ru_maxrss`` is the process's lifetime peak, useless inside a long pytest run), and so is
its thread count; the test process's children are compared before and after.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from recursor import Limits
from recursor.rlm import RLMResult
from recursor.sandbox.base import Environment
from recursor.testing import FunctionLM, ScriptedLM

from ..conftest import code, make_rlm

#: the flood and forgery preamble model code runs: the worker's channel, found the way hostile
#: code would (its objects are reachable through gc), and a writer of raw bytes to it
#: host RSS an attack may add (MB): the issue's bound
RSS_BOUND_MB = 300

FORGE = """\
import gc, json, os, struct, time, threading
from recursor.sandbox.framing import Channel
ch = next(o for o in gc.get_objects() if isinstance(o, Channel))
def put(data):
    view = memoryview(data)
    while view:
        view = view[os.write(ch.write_fd, view):]
def frame(obj, tail=b''):
    body = json.dumps(obj).encode()
    put(struct.pack('>I', len(body)) + body + tail)
"""


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children() -> set[int]:
    """Live (not zombie) children of this process."""
    me, out = os.getpid(), set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.add(int(name))
    return out


@dataclass
class Outcome:
    result: RLMResult
    seconds: float
    #: peak host RSS above the baseline taken just before the run, in MB
    rss_mb: float
    #: peak host threads above the baseline
    threads: int
    #: what the model was shown after each of its replies
    observations: list[str] = field(default_factory=list)
    #: children started by the run that were still alive 3 s after it ended
    left: set[int] = field(default_factory=set)


class _Sampler:
    def __init__(self) -> None:
        self.base_rss, self.base_threads = rss_mb(), threading.active_count()
        self.rss, self.threads = self.base_rss, self.base_threads
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.rss = max(self.rss, rss_mb())
            self.threads = max(self.threads, threading.active_count() - 1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def attack(
    factory: Callable[[], Environment],
    cells: list[str],
    *,
    limits: Limits,
    sub: ScriptedLM | FunctionLM | None = None,
    think_s: float = 0.0,
    driver: str = "sync",
) -> Outcome:
    """Run ``cells`` as the root model's replies (each a repl block; the root waits
    ``think_s`` before each reply after the first)."""
    replies = [code(c) for c in cells]
    shown: list[str] = []
    asked = [0]

    def root_fn(messages: list[dict[str, str]]) -> str:
        asked[0] += 1
        if asked[0] > 1:
            shown.append(messages[-1]["content"])
            time.sleep(think_s)
        return replies.pop(0)

    before = children()
    env = factory()
    rlm = make_rlm(env, FunctionLM(root_fn), sub or ScriptedLM([]), limits=limits)  # type: ignore[arg-type]
    sampler = _Sampler()
    t0 = time.monotonic()
    try:
        if driver == "sync":
            result = rlm.completion("q", context="ctx")
        else:
            result = asyncio.run(rlm.acompletion("q", context="ctx"))
        seconds = time.monotonic() - t0
    finally:
        sampler.stop()
        env.close()
        rlm.close()
    left = children() - before
    until = time.monotonic() + 3
    while left and time.monotonic() < until:
        time.sleep(0.05)
        left = children() - before
    return Outcome(
        result,
        seconds,
        sampler.rss - sampler.base_rss,
        sampler.threads - sampler.base_threads,
        shown,
        left,
    )
