from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from recursor import RLM, Limits
from recursor.lm.base import LM
from recursor.lm.stub_server import StubServer
from recursor.sandbox.inprocess import keys_in_environment

# The suite is hermetic: a provider key or token in the environment that runs it (a developer's
# shell, a CI runner) must neither reach a test's models nor make the inprocess environment
# refuse to start. Tests that need a key set it themselves (monkeypatch).
for _name in keys_in_environment():
    del os.environ[_name]

_NO_BWRAP = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (make system-deps installs it as root)",
)
_NO_RUNSC = pytest.mark.skipif(
    shutil.which("runsc") is None,
    reason="gVisor's runsc is not installed (make system-deps tries Debian's runsc as root)",
)
ENVIRONMENTS = [
    "inprocess",
    "subprocess",
    "forkserver",
    pytest.param("bwrap", marks=_NO_BWRAP),
]
#: slower launchers (a container per session): tests/sandbox/test_contract_containers.py runs
#: the contract suite on them, so other suites' timing tests do not pay for them
CONTAINER_ENVIRONMENTS = [
    pytest.param("gvisor", marks=_NO_RUNSC),
    # the real CLI against a fake daemon-side: tests/sandbox/fake_docker.py (uses bubblewrap)
    pytest.param("docker", marks=_NO_BWRAP),
]


@pytest.fixture(scope="session")
def fake_docker_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding an executable ``docker``: the fake CLI, on this interpreter."""
    bin_dir = tmp_path_factory.mktemp("fake-docker") / "bin"
    bin_dir.mkdir()
    source = Path(__file__).with_name("sandbox") / "fake_docker.py"
    script = bin_dir / "docker"
    script.write_text(f"#!{sys.executable}\n" + source.read_text())
    script.chmod(0o755)
    return bin_dir


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    """Every contract test runs against each environment."""
    return str(request.param)


def container_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``env`` of the container environments (see test_contract_containers.py)."""
    if request.param == "docker":
        bin_dir = request.getfixturevalue("fake_docker_bin")
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return str(request.param)


def code(body: str, text: str = "") -> str:
    """A model reply holding one ```repl block."""
    return f"{text}\n```repl\n{body}\n```\n"


def make_rlm(env: str, root: LM, sub: LM | None = None, **kw: object) -> RLM:
    limits = kw.pop("limits", None) or Limits(cell_timeout_s=10)
    return RLM(root, sub, environment=env, limits=limits, **kw)  # type: ignore[arg-type]


@pytest.fixture
def stub_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., StubServer]]:
    """Starts a stub OpenAI-compatible server on 127.0.0.1 with the given handler and points the
    OpenAI SDK at it (``OPENAI_BASE_URL``, a dummy key); stopped after the test."""
    servers: list[StubServer] = []

    def start(handler: Callable[[list[dict[str, str]]], str]) -> StubServer:
        server = StubServer(handler=handler).start()
        servers.append(server)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
        return server

    yield start
    for server in servers:
        server.stop()
