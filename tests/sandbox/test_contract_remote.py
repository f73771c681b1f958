"""The shared contract suite (tests/test_contract.py), run on the SDK-driven remote environments
E2B, Modal and Daytona, each through a local fake of its SDK (fake_e2b.py, fake_modal.py,
fake_daytona.py), plus what is particular to them: the context arrives as an uploaded file,
the network is off and the limits are asked for, a cell out of time is interrupted in place,
and a session's end destroys its sandbox.

No test here reaches a vendor: the fakes run the relay and the worker under bubblewrap.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from recursor.context import Context
from recursor.errors import SandboxError
from recursor.sandbox import ENVIRONMENTS
from recursor.sandbox.base import SessionSpec, SubcallRequest, SubcallResponse
from recursor.sandbox.limits import WorkerLimits
from recursor.sandbox.remote.daytona import DaytonaEnvironment
from recursor.sandbox.remote.e2b import E2BEnvironment
from recursor.sandbox.remote.modal import ModalEnvironment
from recursor.sandbox.remote.relay import decode_line, encode_line
from recursor.sandbox.remote.streamed import StreamedEnvironment
from recursor.sandbox.session import WorkerSession

from ..test_contract import *  # noqa: F403
from ..test_helpers_contract import *  # noqa: F403
from . import fake_daytona, fake_e2b, fake_modal
from .fake_remote import MACHINES, FakeMachine

_NO_BWRAP = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (make system-deps installs it as root)",
)
FAKES: dict[str, tuple[ModuleType, type[StreamedEnvironment]]] = {
    "e2b": (fake_e2b, E2BEnvironment),
    "modal": (fake_modal, ModalEnvironment),
    "daytona": (fake_daytona, DaytonaEnvironment),
}
VENDORS = [pytest.param(name, marks=_NO_BWRAP) for name in FAKES]


@pytest.fixture(params=VENDORS)
def env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The contract tests name the environment: the name resolves to it on the fake SDK."""
    name = str(request.param)
    env_cls = FAKES[name][1]
    monkeypatch.setitem(sys.modules, name, FAKES[name][0])
    monkeypatch.setitem(ENVIRONMENTS, name, f"{env_cls.__module__}:{env_cls.__name__}")
    return name


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def upper(request: SubcallRequest) -> SubcallResponse:
    n = len(request.prompts)
    return SubcallResponse([p.upper() for p in request.prompts], [None] * n, [None] * n)


@pytest.fixture
def session(vendor: str) -> Iterator[tuple[WorkerSession, FakeMachine]]:
    sdk, env_cls = FAKES[vendor]
    opened = env_cls(sdk=sdk).open(SessionSpec(Context(CONTEXT), upper, depth=1))
    try:
        yield opened, MACHINES[-1]
    finally:
        opened.close()


CONTEXT = "MARKER-7f3a context text\nsecond line é\n"


def run(session: WorkerSession, code: str, timeout: float = 10) -> Any:
    return session.run(code, deadline=time.monotonic() + timeout, output_limit=10_000)


def test_context_arrives_as_an_uploaded_file(
    session: tuple[WorkerSession, FakeMachine], vendor: str
) -> None:
    sess, machine = session
    env = FAKES[vendor][1]
    remote = f"{env.remote_dir_default}/context"
    assert machine.uploads[remote] == CONTEXT.encode()
    # the package alone went up with it: the worker, the relay, nothing from site-packages
    pkg = f"{env.remote_dir_default}/recursor/"
    assert f"{pkg}sandbox/worker.py" in machine.uploads
    assert f"{pkg}sandbox/remote/relay.py" in machine.uploads
    assert all(path.startswith(pkg) or path == remote for path in machine.uploads)
    assert not any("__pycache__" in path for path in machine.uploads)
    cell = run(sess, f"print(context == open({remote!r}).read(), llm_query('ok'))")
    assert cell.stdout == "True OK\n", cell
    # never as a code literal: not on the command line, not in what crossed stdin
    (proc,) = machine.processes
    assert "MARKER" not in " ".join(proc.argv)
    sent = b"".join(decode_line(line)[1] for line in bytes(proc.stdin_log).splitlines())
    assert b"init" in sent and b"MARKER" not in sent


def test_network_off_and_limits_asked_for(
    session: tuple[WorkerSession, FakeMachine], vendor: str
) -> None:
    sess, machine = session
    s = machine.settings
    # the default memory cap, sized to this context and this machine (see WorkerLimits)
    mib = WorkerLimits().memory_mib(len(CONTEXT.encode()))
    assert mib is not None and 1024 <= mib < 8192
    if vendor == "e2b":  # the fake refuses allow_internet_access other than False
        assert s["timeout"] == 3600
        (_cmd, kw) = sess._launched.proc.box._sandbox.commands.runs[0]  # type: ignore[union-attr]
        assert kw["timeout"] == 0 and kw["stdin"] and kw["user"] == "root"
    elif vendor == "modal":  # the fake refuses block_network other than True
        assert s["cpu"] == (1.0, 1.0) and s["memory"] == (mib, mib) and s["timeout"] == 3600
        (args, kw) = sess._launched.proc.box._sandbox.execs[0]  # type: ignore[union-attr]
        assert kw["text"] is False and args[:3] == ("python3", "-I", "-B")
    else:  # the fake refuses network_block_all other than True
        params = s["params"]
        assert params.resources == fake_daytona.Resources(cpu=1, memory=-(-mib // 1024), disk=3)
        assert params.ephemeral and params.auto_stop_interval == 30
    names = {m.name: m for m in sess.measures}
    assert names[vendor].in_force and names["remote channel"].in_force
    # seccomp forbids sockets inside; the sandbox itself has no network either (bwrap here)
    cell = run(sess, "import socket\ntry:\n    socket.socket()\nexcept OSError:\n    print('no')")
    assert cell.stdout == "no\n", cell


def test_cell_past_its_deadline_is_interrupted_in_place(
    session: tuple[WorkerSession, FakeMachine],
) -> None:
    sess, machine = session
    made = len(MACHINES)
    t0 = time.monotonic()
    cell = run(sess, "x = 41\nwhile True:\n    pass", timeout=1)
    assert cell.timed_out and not cell.lost_state and "TimeoutError" in (cell.error or "")
    assert time.monotonic() - t0 < 4
    # SIGINT reached the worker through the relay: same sandbox, same process, state kept
    assert len(MACHINES) == made and len(machine.running()) == 1
    assert run(sess, "print(x + 1)").stdout == "42\n"
    sent = [decode_line(line)[0] for line in bytes(machine.processes[0].stdin_log).splitlines()]
    assert "I" in sent


def test_stuck_cell_kills_the_sandbox_and_a_new_one_serves(
    session: tuple[WorkerSession, FakeMachine],
) -> None:
    sess, first = session
    body = (
        "while True:\n    try:\n        while True:\n            pass\n"
        "    except BaseException:\n        pass"
    )
    cell = run(sess, body, timeout=1)
    assert cell.timed_out and cell.lost_state
    assert first.destroyed and not first.running() and not first.root.exists()
    # the new sandbox starts with the next cell (not inside the deadline that killed this one)
    assert run(sess, "print(len(context))").stdout == f"{len(CONTEXT)}\n"
    second = MACHINES[-1]
    assert second is not first and not second.destroyed


def test_session_close_destroys_the_sandbox(vendor: str) -> None:
    sdk, env_cls = FAKES[vendor]
    sess = env_cls(sdk=sdk).open(SessionSpec(Context("c"), upper))
    machine = MACHINES[-1]
    (proc,) = machine.running()
    sess.close()
    assert machine.destroyed and proc.popen.poll() is not None and not machine.root.exists()


def test_missing_sdk_says_how_to_install(vendor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, vendor, None)  # import raises ImportError
    with pytest.raises(SandboxError, match=rf'pip install "recursor\[{vendor}\]"'):
        FAKES[vendor][1]()


def test_vendor_failure_is_a_sandbox_error(vendor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_kw: object) -> None:
        raise RuntimeError("quota exceeded")

    monkeypatch.setattr(FakeMachine, "__init__", refuse)
    sdk, env_cls = FAKES[vendor]
    with pytest.raises(SandboxError, match=rf"{vendor}: could not create the sandbox.*quota"):
        env_cls(sdk=sdk).open(SessionSpec(Context("c"), upper))


def test_relay_lines_carry_any_bytes() -> None:
    data = bytes(range(256)) * 3
    assert decode_line(encode_line(b"F:", data)) == ("F", data)
    assert decode_line(b"X:-2\n") == ("X", b"-2")
    assert decode_line(b"I\n") == ("I", b"")
    # anything else (an echo, a banner, a torn line) is not ours
    assert decode_line(b"hello\n") == ("", b"")
    assert decode_line(b"F:not base64!\n") == ("", b"")


def test_calls_bind_to_the_real_sdk_signatures(vendor: str) -> None:
    """Where the real SDK is installed (``recursor[e2b]`` ...), every call made above binds to
    its signature (a wrong keyword fails here, not in front of a paying user). No network."""
    import inspect

    sdk = pytest.importorskip(vendor)

    def bind(fn: Any, *args: object, **kw: object) -> None:
        inspect.signature(fn).bind(*args, **kw)

    if vendor == "e2b":
        from e2b.sandbox_sync.commands.command import Commands
        from e2b.sandbox_sync.filesystem.filesystem import Filesystem

        bind(sdk.Sandbox.create, template=None, timeout=1, allow_internet_access=False)
        bind(Filesystem.write_files, None, [{"path": "/x", "data": b""}], user="root")
        bind(Commands.run, None, "c", background=True, stdin=True, user="root", timeout=0)
        bind(Commands.send_stdin, None, 1, "D:\n")
    elif vendor == "modal":
        from modal.sandbox._sandbox import _Sandbox

        bind(_Sandbox.create, app=None, block_network=True, cpu=(1.0, 1.0), memory=(1, 1))
        bind(_Sandbox.exec, None, "python3", "-I", text=False)
    else:
        sdk.CreateSandboxFromImageParams(
            image="i", resources=sdk.Resources(cpu=1, memory=1, disk=1), network_block_all=True
        )
        sdk.SessionExecuteRequest(command="c", run_async=True, suppress_input_echo=True)
        from daytona._sync.process import Process

        bind(Process.send_session_command_input, None, "s", "c", "D:\n")
        bind(Process.get_session_command_logs_async, None, "s", "c", print, print)
