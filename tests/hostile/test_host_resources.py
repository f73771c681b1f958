"""Resources outside the worker's scratch are capped: its stderr is a pipe the host reads with a
cap (no host file to fallocate or fill), it gets no CPU between cells, and it cannot watch files.

Each attack is model code in a real RLM over ``subprocess``, ``forkserver`` and ``bwrap``; each
test bounds the host's peak RSS (sampled from /proc/self/status during the run) at
baseline + 300 MB and the run's wall time, and checks what the model was told.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from recursor import RLM, Limits
from recursor.lm.base import Completion, Message
from recursor.sandbox.base import Environment
from recursor.sandbox.limits import DEFAULT_CPU_SECONDS, WorkerLimits
from recursor.sandbox.stderr_tail import KEEP_BYTES, StderrTail
from recursor.sandbox.subprocess import SubprocessEnvironment
from recursor.testing import ScriptedLM

from ..conftest import code
from ..sandbox.conftest import ISOLATING, SMALL

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="OS confinement is Linux only")

RSS_BOUND = 300 << 20
#: what `recursor doctor` reports of this part of issue 12
NEW_MEASURES = ("parent-death signal", "stderr pipe cap", "CPU between cells", "inotify denied")


@pytest.fixture(params=ISOLATING[:3])  # subprocess, forkserver, bwrap
def isolating(request: pytest.FixtureRequest) -> Callable[[], Environment]:
    factory: Callable[[], Environment] = request.param
    return factory


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10
    return 0


@contextmanager
def peak_rss() -> Iterator[list[int]]:
    """[baseline, peak] of this process's RSS while the block runs (sampled every 20 ms)."""
    box = [_rss(), _rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            box[1] = max(box[1], _rss())

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield box
    finally:
        done.set()
        t.join()
        box[1] = max(box[1], _rss())


class ThinkingLM(ScriptedLM):
    """A scripted root that takes ``think_s`` before its second reply (the model thinking)."""

    def __init__(self, replies: list[str], think_s: float) -> None:
        super().__init__(replies)
        self.think_s = think_s

    def complete(self, messages: list[Message]) -> Completion:
        if len(self.calls) == 1:
            time.sleep(self.think_s)
        return super().complete(messages)


def run_cells(
    factory: Callable[[], Environment], root: ScriptedLM, *, timeout: float = 20
) -> tuple[list[str], str | None, float]:
    """Run ``root``'s script; (what the model saw after each cell, the answer, wall time),
    with the host's RSS held under baseline + RSS_BOUND."""
    env = factory()
    t0 = time.monotonic()
    try:
        with peak_rss() as rss:
            rlm = RLM(root, environment=env, limits=Limits(cell_timeout_s=timeout))  # type: ignore[arg-type]
            result = rlm.completion("q", context="ctx")
    finally:
        env.close()  # type: ignore[attr-defined]
    took = time.monotonic() - t0
    assert rss[1] - rss[0] < RSS_BOUND, f"host RSS grew by {(rss[1] - rss[0]) >> 20} MB"
    assert result.stop_reason == "final", result.error
    seen = [str(call[-1]["content"]) for call in root.calls[1:]]
    return seen, result.answer, took


# -- (a) stderr ----------------------------------------------------------------------------------

_FILL_STDERR = """
import os, stat
kind = 'pipe' if stat.S_ISFIFO(os.fstat(2).st_mode) else 'file'
try:
    os.posix_fallocate(2, 0, 1 << 30)
    print('fallocate: done')
except OSError as exc:
    print('fallocate: refused', exc.errno)
chunk = b'e' * (1 << 20)
for _ in range(64):
    os.write(2, chunk)
print('stderr is a', kind, '; wrote 64 MB')
"""


def test_stderr_is_a_capped_pipe_not_a_host_file(isolating: Callable[[], Environment]) -> None:
    root = ScriptedLM([code(_FILL_STDERR), code("FINAL('alive')")])
    seen, answer, took = run_cells(isolating, root)
    assert "stderr is a pipe ; wrote 64 MB" in seen[0], seen[0]
    assert "fallocate: refused" in seen[0], seen[0]
    assert answer == "alive" and took < 20


def test_a_dead_workers_last_stderr_is_shown_and_the_rest_dropped(
    isolating: Callable[[], Environment],
) -> None:
    crash = "import os\nos.write(2, b'x' * (8 << 20) + b'LAST WORDS')\nos._exit(3)"
    root = ScriptedLM([code(crash), code("FINAL('alive')")])
    seen, answer, took = run_cells(isolating, root)
    assert "LAST WORDS" in seen[0] and "earlier bytes not kept" in seen[0], seen[0][:500]
    assert "REPL process died" in seen[0]
    assert answer == "alive" and took < 20


def test_stderr_tail_keeps_the_end_and_counts_the_rest() -> None:
    tail = StderrTail(keep=1000)
    tail.writer.write(b"a" * 5000 + b"the end")
    tail.release_writer()
    text = tail.tail(limit=100)
    assert text.endswith("the end") and "earlier bytes not kept" in text
    assert tail.dropped == 5007 - 1000
    assert KEEP_BYTES >= 1024


# -- (b) CPU between cells -----------------------------------------------------------------------

_SPIN = """
import threading, time
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
time.sleep(0.2)
print('cpu', time.process_time())
"""


@pytest.mark.slow
def test_a_background_thread_gets_no_cpu_between_cells(
    isolating: Callable[[], Environment],
) -> None:
    think_s = 2.0
    root = ThinkingLM(
        [
            code(_SPIN),
            code("import time\nprint('cpu', time.process_time())"),
            code("FINAL('alive')"),
        ],
        think_s,
    )
    seen, answer, _took = run_cells(isolating, root)
    before = float(seen[0].split("cpu", 1)[1].split()[0])
    after = float(seen[1].split("cpu", 1)[1].split()[0])
    # unstopped, the spinning thread would have burned ~think_s of CPU while the model thought
    assert after - before < 0.5 * think_s, (before, after)
    assert answer == "alive"


def test_cpu_seconds_are_capped_by_default_and_a_spinner_is_killed() -> None:
    assert WorkerLimits().as_rlimits()["cpu_seconds"] == DEFAULT_CPU_SECONDS

    def tight() -> Environment:
        return SubprocessEnvironment(limits=replace(SMALL, cpu_seconds=1), prestart=False)

    spin = "while True:\n    pass"
    root = ScriptedLM([code(spin), code("FINAL('alive')")])
    seen, answer, took = run_cells(tight, root)
    assert "REPL process died" in seen[0] and "CPU-time limit" in seen[0], seen[0]
    assert answer == "alive" and took < 15


# -- (c) inotify ---------------------------------------------------------------------------------

_WATCH = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for name, args in (('inotify_init', ()), ('inotify_init1', (0,)), ('fanotify_init', (0, 0))):
    rc = getattr(libc, name)(*args)
    print(name, rc, errno.errorcode.get(ctypes.get_errno()))
rc = libc.inotify_add_watch(0, b'/etc', 0xfff)
print('inotify_add_watch', rc, errno.errorcode.get(ctypes.get_errno()))
"""


def test_inotify_is_denied(isolating: Callable[[], Environment]) -> None:
    root = ScriptedLM([code(_WATCH), code("FINAL('alive')")])
    seen, answer, _took = run_cells(isolating, root)
    for name in ("inotify_init", "inotify_init1", "fanotify_init", "inotify_add_watch"):
        assert f"{name} -1 EPERM" in seen[0], seen[0]
    assert answer == "alive"


def test_doctor_prints_the_new_measures() -> None:
    from typer.testing import CliRunner

    from recursor.cli import app

    got = CliRunner().invoke(app, ["doctor", "--json", "-e", "subprocess", "-e", "forkserver"])
    assert got.exit_code == 0, got.output
    for report in json.loads(got.output)["environments"]:
        names = {m["name"]: m for m in report["measures"]}
        for name in NEW_MEASURES:
            assert names[name]["in_force"], (report["environment"], names.get(name))
    table = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["doctor", "-e", "subprocess"])
    assert table.exit_code == 0, table.output
    for name in NEW_MEASURES:
        assert name in table.output
