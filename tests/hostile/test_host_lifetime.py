"""Nothing outlives the host: SIGKILL a host mid-cell and its workers (and fork server) die.

The host is a child interpreter running a real RLM whose cell sleeps; the test lists the host's
descendants while the cell runs, SIGKILLs the host, and checks through /proc that every one of
them is gone within 2 s. The cgroup directories the dead host left are removed by the next
host's first launch (where cgroups are writable).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recursor.sandbox import cgroups

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")

_NO_BWRAP = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

#: the host: an RLM whose first cell sleeps far past the test; "calling" once the model is asked
_HOST = textwrap.dedent(
    """
    import sys
    from recursor import RLM, Limits
    from recursor.testing import ScriptedLM
    from tests.sandbox.conftest import SMALL

    class Announcing(ScriptedLM):
        def complete(self, messages):
            print("calling", flush=True)
            return super().complete(messages)

    name = sys.argv[1]
    if name == "subprocess":
        from recursor.sandbox.subprocess import SubprocessEnvironment as E
        env = E(limits=SMALL, prestart=True)  # the spare is started on a short-lived thread
    elif name == "forkserver":
        from recursor.sandbox.forkserver import ForkServerEnvironment as E
        env = E(limits=SMALL)
    else:
        from recursor.sandbox.bwrap import BwrapEnvironment as E
        env = E(limits=SMALL)
    root = Announcing(["```repl\\nimport time\\ntime.sleep(60)\\n```", "FINAL(1)"])
    RLM(root, environment=env, limits=Limits(cell_timeout_s=60)).completion("q", context="c")
    """
)
ROOT = Path(__file__).resolve().parents[2]


def _ppid(pid: int) -> int | None:
    """The parent of ``pid``, or None when it is gone (or a zombie: it holds nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[1])


def descendants(root: int) -> set[int]:
    """Every live process under ``root`` (a /proc scan)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (ppid := _ppid(int(entry))) is not None:
            parents[int(entry)] = ppid
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if _ppid(pid) is not None}


def start_host(name: str) -> subprocess.Popen[str]:
    host = subprocess.Popen(
        [sys.executable, "-c", _HOST, name],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert host.stdout is not None
    ready, _, _ = select.select([host.stdout], [], [], 60)
    assert ready and host.stdout.readline().strip() == "calling", "the host did not start"
    return host


def kill_mid_cell(host: subprocess.Popen[str], want: int) -> set[int]:
    """Wait for ``want`` descendants (the cell is running), SIGKILL the host; its descendants."""
    until = time.monotonic() + 30
    procs: set[int] = set()
    while time.monotonic() < until:
        procs = descendants(host.pid)
        if len(procs) >= want:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # the cell itself is running by now (the reply was handed over)
    procs = descendants(host.pid)
    host.kill()
    host.wait()
    if host.stdout is not None:
        host.stdout.close()
    return procs


#: how long processes may take to end after their host is killed (see the test)
GONE_WITHIN_S = 10.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "want"),
    [
        # the worker of the session and the spare started for the next one
        ("subprocess", 2),
        # the fork server and its forked worker
        ("forkserver", 2),
        # bwrap, its pid-1 reaper in the new pid namespace, the worker
        pytest.param("bwrap", 3, marks=_NO_BWRAP),
    ],
)
def test_sigkill_of_the_host_leaves_no_process(name: str, want: int) -> None:
    host = start_host(name)
    procs = kill_mid_cell(host, want)
    assert len(procs) >= want, f"expected {want} processes under the host, found {procs}"
    # A worker dies with its host at once (its parent-death signal). The one exception is a
    # spare the host was starting at that moment: until its interpreter has started and armed
    # the signal, it cannot know; it checks its parent first thing and exits. On a loaded
    # machine that start can take seconds, hence the wait.
    t0 = time.monotonic()
    while alive(procs) and time.monotonic() - t0 < GONE_WITHIN_S:
        time.sleep(0.05)
    left = alive(procs)
    assert not left, f"{name}: processes outlived their host by {GONE_WITHIN_S} s: " + ", ".join(
        f"{pid} ({Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r})" for pid in left
    )


def _cgroup_writable() -> bool:
    probe = os.path.join(cgroups.ROOT, "memory", "recursor")
    return os.geteuid() == 0 and os.path.isdir(probe) and os.access(probe, os.W_OK)


@pytest.mark.slow
@pytest.mark.skipif(not _cgroup_writable(), reason="cgroups are not writable here")
def test_cgroups_of_a_killed_host_are_removed_by_the_next_launch() -> None:
    host = start_host("subprocess")
    host_pid = host.pid
    procs = kill_mid_cell(host, 2)
    until = time.monotonic() + 2
    while alive(procs) and time.monotonic() < until:
        time.sleep(0.05)
    left = cgroups.host_dirs(host_pid)
    assert left, "the killed host's workers had no cgroup directories (nothing to test)"
    # the next host (this process, for the first time: sweep once per process) cleans up
    assert cgroups.sweep() >= len(left)
    assert cgroups.host_dirs(host_pid) == []


@pytest.mark.skipif(not _cgroup_writable(), reason="cgroups are not writable here")
def test_each_workers_cgroup_dirs_go_at_discard() -> None:
    from recursor.context import Context
    from recursor.sandbox.base import SessionSpec, SubcallResponse
    from recursor.sandbox.subprocess import SubprocessEnvironment

    from ..sandbox.conftest import SMALL

    def handler(request: object) -> SubcallResponse:
        raise AssertionError("no sub-calls here")

    before = set(cgroups.host_dirs(os.getpid()))
    env = SubprocessEnvironment(limits=SMALL, prestart=False)
    ctx = Context("c")
    session = env.open(SessionSpec(ctx, handler))
    try:
        during = set(cgroups.host_dirs(os.getpid())) - before
        assert during and all(f"-w{session.pid}" in d for d in during), during
    finally:
        session.close()
        env.close()
        ctx.close()
    assert not set(cgroups.host_dirs(os.getpid())) - before
