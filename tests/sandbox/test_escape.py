"""The escape suite: every attack must fail inside each isolating sandbox, the run must go on,
and the model must be told what happened (a plain error it can read, not a dead run).

Each case runs a real RLM: cell 1 is the attack, cell 2 proves the run continued.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from recursor import Limits
from recursor.sandbox.base import Environment
from recursor.testing import ScriptedLM

from ..conftest import code, make_rlm

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="OS confinement is Linux only")

DENIED = ("PermissionError", "Operation not permitted", "Permission denied", "FileNotFoundError")


def attack(
    factory: Callable[[], Environment], body: str, *, timeout: float = 10
) -> tuple[str, str]:
    """Run ``body`` as the model's first cell; (the observation of it, the final answer)."""
    root = ScriptedLM([code(body), code("FINAL('still alive: ' + str(len(context)))")])
    env = factory()
    try:
        rlm = make_rlm(env, root, limits=Limits(cell_timeout_s=timeout))  # type: ignore[arg-type]
        result = rlm.completion("q", context="ctx")
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()
    assert result.stop_reason == "final", result.error
    assert result.answer == "still alive: 3"
    return root.calls[1][-1]["content"], result.answer


def denied(obs: str) -> bool:
    return any(word in obs for word in DENIED)


def test_read_etc_shadow(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(isolating, "print(open('/etc/shadow').read())")
    assert denied(obs) and "root:" not in obs


def test_read_files_outside_the_allow_list(
    isolating: Callable[[], Environment], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-file")
    secret.chmod(0o644)
    tmp_path.chmod(0o755)
    repo_file = Path(__file__).resolve().parents[2] / "pyproject.toml"
    for target in (secret, repo_file, Path("/root/.bashrc"), Path("/etc/passwd")):
        obs, _ = attack(isolating, f"print(open({str(target)!r}).read()[:200])")
        assert denied(obs), (target, obs)
        assert "TOPSECRET" not in obs and "[project]" not in obs


def test_host_environment_secret(
    isolating: Callable[[], Environment], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECURSOR_ESCAPE_SECRET", "sk-escape-secret")
    obs, _ = attack(
        isolating,
        "import os\nprint('env:', os.environ.get('RECURSOR_ESCAPE_SECRET'))\n"
        "print(open(f'/proc/{os.getppid()}/environ', 'rb').read())",
    )
    assert "env: None" in obs
    assert "sk-escape-secret" not in obs and denied(obs)


def test_tcp_to_a_host_listener(isolating: Callable[[], Environment]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        obs, _ = attack(
            isolating,
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "s.sendall(b'exfiltrated')",
        )
        with pytest.raises(TimeoutError):
            listener.accept()
    assert denied(obs) or "Network is unreachable" in obs, obs


@pytest.mark.parametrize(
    "body",
    [
        "import subprocess\nprint(subprocess.run(['id'], capture_output=True).stdout)",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])",
        "import os\nos.posix_spawn('/bin/sh', ['sh'], {})",
    ],
    ids=["subprocess", "execv", "posix_spawn"],
)
def test_no_new_programs(isolating: Callable[[], Environment], body: str) -> None:
    obs, _ = attack(isolating, body)
    assert denied(obs), obs


def test_os_system(isolating: Callable[[], Environment], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    obs, _ = attack(isolating, f"import os\nprint('status', os.system('touch {marker}'))")
    assert "status 0" not in obs and "status" in obs
    assert not marker.exists()


def test_ctypes_execve(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(
        isolating,
        "import ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.execve(b'/bin/sh', None, None)\n"
        "print('execve', rc, errno.errorcode[ctypes.get_errno()])",
    )
    assert "execve -1 EPERM" in obs, obs


def test_fork_bomb(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(isolating, "import os\nwhile True:\n    os.fork()")
    assert denied(obs), obs


def test_memory_bomb(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(isolating, "hog = []\nwhile True:\n    hog.append(bytearray(64 << 20))")
    assert "MemoryError" in obs or "REPL process died" in obs, obs


def test_cpu_loop(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(isolating, "while True:\n    pass", timeout=1)
    assert "TimeoutError" in obs, obs


def test_fill_the_scratch_disk(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(
        isolating,
        "with open('fill.bin', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))",
    )
    assert "No space left on device" in obs or "File too large" in obs, obs


def test_kill_the_parent(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(
        isolating,
        # the parent, every process we may signal, and init (unless the worker is init)
        "import os, signal\nfor pid in sorted({os.getppid(), -1, 1} - {os.getpid()}):\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n        print('killed', pid)\n"
        "    except OSError as e:\n        print('refused', pid, type(e).__name__)",
    )
    assert "killed" not in obs and obs.count("refused") >= 2, obs


def test_ptrace(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(
        isolating,
        "import ctypes, errno, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.ptrace(16, os.getppid(), 0, 0)\n"  # PTRACE_ATTACH
        "print('ptrace', rc, errno.errorcode[ctypes.get_errno()])",
    )
    assert "ptrace -1 EPERM" in obs, obs


def test_write_outside_scratch(isolating: Callable[[], Environment], tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    package = Path(__file__).resolve().parents[2] / "src" / "recursor"
    for target in (tmp_path / "planted.txt", package / "planted.py", Path("/etc/planted")):
        obs, _ = attack(isolating, f"open({str(target)!r}, 'w').write('x')")
        assert denied(obs) or "Read-only file system" in obs, (target, obs)
        assert not target.exists()


def test_scratch_is_writable(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(
        isolating,
        "import tempfile, os\nopen('note.txt', 'w').write('kept')\n"
        "with tempfile.NamedTemporaryFile() as t:\n    t.write(b'ok')\n"
        "print(open('note.txt').read(), os.path.dirname(t.name) == os.getcwd())",
    )
    assert "kept True" in obs, obs


def test_threads_still_work(isolating: Callable[[], Environment]) -> None:
    obs, _ = attack(
        isolating,
        "from concurrent.futures import ThreadPoolExecutor\n"
        "print(sum(ThreadPoolExecutor(4).map(lambda x: x * x, range(10))))",
    )
    assert "285" in obs, obs


def test_inprocess_is_documented_as_trusted_only() -> None:
    from recursor.sandbox import inprocess

    assert "TRUSTED input only" in (inprocess.__doc__ or "")
    _ = os  # the host's os module: in-process code shares it, which is the point
