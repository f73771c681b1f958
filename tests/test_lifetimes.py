"""What an RLM starts ends with it: ``with``/``close`` release workers, servers and models."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from recursor import RLM, Limits
from recursor.errors import RLMClosed
from recursor.lm.base import Completion, Message
from recursor.testing import ScriptedLM
from recursor.trace import MemorySink
from recursor.usage import Usage

from .conftest import code


def children() -> set[int]:
    """Live (not zombie) child processes of this process, read from /proc."""
    me = os.getpid()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z":
            found.add(int(entry.name))
    return found


def wait_for(check: object, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def script() -> ScriptedLM:
    return ScriptedLM([code("print(len(context))"), "FINAL(done)"])


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@pytest.mark.parametrize("environment", ["subprocess", "forkserver"])
def test_with_rlm_leaves_no_process_behind(environment: str) -> None:
    before = children()
    with RLM(script(), environment=environment, limits=Limits(cell_timeout_s=30)) as rlm:
        assert rlm.completion("q", "abc").answer == "done"
        if environment == "subprocess":
            # prestart: a spare worker is being started for the next completion
            wait_for(lambda: children() - before)
        else:
            assert children() - before  # the fork server
    assert children() - before == set()


def test_async_with_rlm_leaves_no_process_behind() -> None:
    before = children()

    async def main() -> None:
        async with RLM(script(), environment="subprocess") as rlm:
            assert (await rlm.acompletion("q", "abc")).answer == "done"
            wait_for(lambda: children() - before)

    asyncio.run(main())
    assert children() - before == set()


def test_close_stops_the_spare_being_started() -> None:
    from recursor.sandbox.environment import SpareWorker
    from recursor.sandbox.launch import Launched
    from recursor.sandbox.subprocess import SubprocessEnvironment

    before = children()
    env = SubprocessEnvironment(prestart=False)
    started: list[Launched] = []

    def slow_launch() -> Launched:
        launched = env.launch()
        started.append(launched)
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)  # the next spare is started, not yet handed over, when close runs
        return launched

    spare = SpareWorker(slow_launch)
    spare.take().discard()
    time.sleep(0.1)
    spare.close()
    assert len(started) == 2  # the refill had started its worker before close
    assert children() - before == set()
    env.close()


def test_a_closed_rlm_says_so_and_close_is_idempotent() -> None:
    rlm = RLM(script(), environment="inprocess")
    rlm.close()
    rlm.close()
    with pytest.raises(RLMClosed, match="closed"):
        rlm.completion("q", "c")
    with pytest.raises(RLMClosed):
        asyncio.run(rlm.acompletion("q", "c"))


class Owned:
    """A backend with something to release; counts its closes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = 0
        self.aclosed = 0

    def complete(self, messages: list[Message]) -> Completion:
        return Completion("FINAL(x)", Usage())

    async def acomplete(self, messages: list[Message]) -> Completion:
        return self.complete(messages)

    def close(self) -> None:
        self.closed += 1

    async def aclose(self) -> None:
        self.aclosed += 1


def test_models_made_from_strings_are_closed_and_the_callers_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import recursor._lifetime

    made: list[Owned] = []

    def create_lm(spec: str) -> Owned:
        made.append(Owned(spec))
        return made[-1]

    monkeypatch.setattr(recursor._lifetime, "create_lm", create_lm)
    mine = Owned("caller:model")
    with RLM("fake:root", "fake:root", models={"m": mine}, environment="inprocess") as rlm:
        assert rlm.completion("q").answer == "x"
    assert [lm.name for lm in made] == ["fake:root"]  # one object per string
    assert made[0].closed == 1 and mine.closed == 0

    async def main() -> None:
        async with RLM("fake:a", mine, environment="inprocess") as rlm:
            await rlm.acompletion("q")

    asyncio.run(main())
    assert made[1].aclosed == 1 and mine.aclosed == 0


def test_sinks_are_flushed_not_closed() -> None:
    flushed: list[int] = []

    class Counting(MemorySink):
        def flush(self) -> None:
            flushed.append(len(self.events))

    sink = Counting()
    with RLM(script(), environment="inprocess", sinks=[sink]) as rlm:
        result = rlm.completion("q", "c")
    assert flushed == [len(result.trace)]  # flushed once, after every event arrived
    assert not sink.closed and sink.events == result.trace.events
