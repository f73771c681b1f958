"""The host never blocks on a worker, and a worker's flood of frames costs the worker only.

Model code is hostile: it finds its worker's channel and writes forged frames to it. Each test
states its bounds: the run ends within its limit + 2 s, the host's RSS and threads stay near
their baseline, no process is left, and the model is told what happened.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import pytest

from recursor import Limits
from recursor.sandbox.base import Environment
from recursor.sandbox.environment import WorkerEnvironment
from recursor.sandbox.session import MAX_IN_FLIGHT
from recursor.sandbox.subprocess import SubprocessEnvironment
from recursor.testing import FunctionLM

from ._host import FORGE, RSS_BOUND_MB, attack

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="OS confinement is Linux only")


def _request(ident: int, prompts: int = 1) -> str:
    return (
        f"{{'op': 'subcall', 'id': {ident}, 'request': {{'kind': 'llm', "
        f"'prompts': ['x'] * {prompts}, 'batched': True, 'model': None}}}}"
    )


#: forges a batch whose answer (50 x 20 KB) overfills the pipe, then never reads again and
#: ignores the interrupt
STOP_READING = (
    FORGE
    + f"frame({_request(10**6, 50)})\n"
    + "while True:\n    try:\n        time.sleep(60)\n    except BaseException:\n        pass\n"
)


def _big_replies() -> FunctionLM:
    return FunctionLM(lambda messages: "y" * 20_000)


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_worker_that_stops_reading_ends_the_run_on_time(
    isolating: Callable[[], Environment], driver: str
) -> None:
    limit = 4.0
    out = attack(
        isolating,
        [STOP_READING, "FINAL('not reached')"],
        limits=Limits(timeout_s=limit, cell_timeout_s=None),
        sub=_big_replies(),
        driver=driver,
    )
    assert out.result.stop_reason == "timeout", out.result.error
    assert out.seconds <= limit + 2, f"the run took {out.seconds:.1f}s for timeout_s={limit}"
    assert out.rss_mb < RSS_BOUND_MB
    assert not out.left, f"processes left: {out.left}"


@pytest.mark.slow
def test_a_worker_that_stops_reading_is_killed_and_the_run_goes_on(
    isolating: Callable[[], Environment],
) -> None:
    out = attack(
        isolating,
        [STOP_READING, "FINAL('alive: ' + context)"],
        limits=Limits(cell_timeout_s=2),
        sub=_big_replies(),
    )
    assert out.result.answer == "alive: ctx", out.result.error
    assert "did not stop when interrupted" in out.observations[0]
    # the cell's limit, the interrupt's grace (1 s), a new worker, the next cell: 5 s for the
    # last two, as a new gVisor sandbox alone took up to ~3 s on the loaded 2-core machine
    assert out.seconds <= 2 + 2 + 5
    assert out.rss_mb < RSS_BOUND_MB
    assert not out.left


FLOOD_BETWEEN_CELLS = (
    FORGE
    + "def flood():\n    time.sleep(0.3)\n    for i in range(200):\n"
    + f"        frame({_request('10**6 + i')})\n"
    + "threading.Thread(target=flood, daemon=True).start()\n"
)


def _flood(env: Environment) -> str:
    out = attack(
        lambda: env,
        [FLOOD_BETWEEN_CELLS, "print('second cell')", "FINAL('alive: ' + context)"],
        limits=Limits(cell_timeout_s=10),
        sub=FunctionLM(lambda m: "ok"),
        think_s=1.0,  # the root model thinks: no cell runs while the flood would arrive
    )
    assert out.result.answer == "alive: ctx", out.result.error
    assert out.rss_mb < RSS_BOUND_MB
    assert not out.left
    return out.observations[1]


def test_a_flood_of_frames_between_cells_costs_only_the_worker(
    isolating: Callable[[], Environment],
) -> None:
    env = isolating()
    second = _flood(env)
    stopped = isinstance(env, WorkerEnvironment) and env.hardened and env.launcher.traits.pausable
    if stopped:  # SIGSTOP between cells: the flood waits for the next cell, whose sub-calls
        # are served or refused past the in-flight cap, and the cell runs on
        assert "second cell" in second and "broke the channel protocol" not in second, second
    else:
        assert "broke the channel protocol" in second and "a flood" in second, second


def test_a_flood_between_cells_kills_a_worker_left_running() -> None:
    # unhardened: nothing stops the worker between cells, so the host's own bound must hold
    second = _flood(SubprocessEnvironment(prestart=False, hardened=False))
    assert "broke the channel protocol" in second and "a flood" in second, second


FORGED_REQUESTS = (
    FORGE
    + f"for i in range(2000):\n    frame({_request('10**6 + i')})\n"
    + "time.sleep(1.5)\nprint('sent')\n"
)


def test_forged_requests_do_not_get_a_host_thread_each(
    isolating: Callable[[], Environment],
) -> None:
    def slow(messages: object) -> str:
        time.sleep(0.3)
        return "ok"

    out = attack(
        isolating,
        [FORGED_REQUESTS, "FINAL('alive: ' + context)"],
        limits=Limits(cell_timeout_s=10),
        sub=FunctionLM(slow),
    )
    assert out.result.answer == "alive: ctx", out.result.error
    assert "sent" in out.observations[0]
    # a thread per sub-call in flight (at most MAX_IN_FLIGHT), plus the broker's few
    assert out.threads <= MAX_IN_FLIGHT + 16, f"{out.threads} host threads for 2,000 requests"
    assert out.rss_mb < RSS_BOUND_MB
    assert not out.left


def test_writes_to_a_worker_that_never_reads_do_not_block() -> None:
    from recursor.errors import ProtocolError
    from recursor.sandbox.framing import Channel
    from recursor.sandbox.pipes import Outbox

    r, w = os.pipe()
    box = Outbox(Channel(-1, w), max_backlog=1 << 20)
    try:
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match="not reading its channel"):
            for _ in range(100):
                box.send({"op": "x", "value": "z" * 100_000})
        assert time.monotonic() - t0 < 1
    finally:
        box.close()
        os.close(r)
        os.close(w)


def test_the_inbox_stops_reading_while_it_is_full() -> None:
    from recursor.sandbox import wire
    from recursor.sandbox.framing import Channel, encode, write_parts
    from recursor.sandbox.pipes import Inbox

    r, w = os.pipe()
    channel = Channel(r, -1)
    inbox = Inbox(channel, max_frames=2, max_idle=100)
    try:
        inbox.busy(True)
        for _ in range(10):
            write_parts(w, encode(wire.Var("v").to_wire()))
        time.sleep(0.3)
        # two queued, one read and waiting for room: the other seven are still in the pipe
        assert inbox._events.qsize() == 2
        taken = [inbox.get(1) for _ in range(10)]
        assert all(kind == "frame" for kind, _, _ in taken)
    finally:
        # The reader thread must be gone before its fd is closed: a read it started after the
        # close would take the bytes of whatever file reuses the number next (another test's).
        inbox.stop()
        os.close(w)  # end of stream: the reader's next read returns, and it ends
        while inbox.get(5)[0] == "frame":
            pass
        channel.close()
