"""The sandbox's parts: the memory default, composition of launchers, a session's lifetime."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

import pytest

from recursor.context import Context
from recursor.errors import SandboxError, WorkerCrashed
from recursor.sandbox import limits as limits_mod
from recursor.sandbox.base import SessionSpec, SubcallRequest, SubcallResponse
from recursor.sandbox.limits import WorkerLimits, default_memory_bytes
from recursor.sandbox.subprocess import SubprocessEnvironment

GiB = 1 << 30
MiB = 1 << 20
SANDBOX = Path(limits_mod.__file__).parent


# -- the default memory cap ---------------------------------------------------------------------


def test_default_memory_is_a_share_of_the_machine() -> None:
    machine = 24 * GiB
    # a small context: the base, well under the 1.5 GiB share (not the old 8 GiB)
    assert default_memory_bytes(1000, machine_bytes=machine) == GiB + 4000
    # 16 such workers stay inside the machine, tree-wide
    assert 16 * default_memory_bytes(0, machine_bytes=machine) <= machine
    # a mid-size context wants 4x: granted up to the share
    assert default_memory_bytes(100 * MiB, machine_bytes=machine) == GiB + 400 * MiB
    assert default_memory_bytes(200 * MiB, machine_bytes=machine) == machine // 16
    # a big context is never capped below what loading it needs (the mapping + its text)
    assert default_memory_bytes(GiB, machine_bytes=machine) == 3 * GiB
    # nor above the machine
    assert default_memory_bytes(100 * GiB, machine_bytes=machine) == machine


def test_the_share_follows_the_machine_and_the_concurrency() -> None:
    big = 256 * GiB
    assert default_memory_bytes(2 * GiB, machine_bytes=big) == GiB + 8 * GiB  # want fits
    assert default_memory_bytes(2 * GiB, machine_bytes=big, concurrent=64) == 5 * GiB  # need
    lim = WorkerLimits(concurrent_workers=4)
    assert lim.memory_bytes(400 * MiB, machine_bytes=8 * GiB) == 2 * GiB  # the 8/4 share


def test_an_explicit_memory_wins_and_none_is_no_cap() -> None:
    assert WorkerLimits(memory_mb=768).memory_bytes(10 * GiB, machine_bytes=GiB) == 768 * MiB
    assert WorkerLimits(memory_mb=None).memory_bytes(10 * GiB) is None
    assert WorkerLimits(memory_mb=None).as_rlimits()["address_space_bytes"] is None


def test_the_machine_is_read_with_its_cgroup_limit() -> None:
    total = limits_mod.machine_memory_bytes()
    assert (
        0 < total <= limits_mod.os.sysconf("SC_PHYS_PAGES") * limits_mod.os.sysconf("SC_PAGE_SIZE")
    )
    rl = WorkerLimits().as_rlimits(0)
    assert rl["address_space_bytes"] == default_memory_bytes(0, machine_bytes=total)


def test_the_worker_gets_the_cap_sized_to_its_context() -> None:
    env = SubprocessEnvironment(prestart=False, hardened=False)
    ctx = Context("x" * 300_000)
    session = env.open(SessionSpec(ctx, echo))
    try:
        cell = session.run(
            "import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0])",
            deadline=time.monotonic() + 30,
            output_limit=1000,
        )
        assert int(cell.stdout) == WorkerLimits().memory_bytes(300_000), cell
    finally:
        session.close()
        ctx.close()


# -- composition --------------------------------------------------------------------------------


def test_no_sandbox_module_imports_a_private_name_of_another() -> None:
    for path in sorted(SANDBOX.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recursor"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_vendor_environments_are_not_subprocess_environments() -> None:
    from recursor.sandbox.environment import WorkerEnvironment
    from recursor.sandbox.remote.daytona import DaytonaEnvironment
    from recursor.sandbox.remote.docker import DockerEnvironment
    from recursor.sandbox.remote.e2b import E2BEnvironment
    from recursor.sandbox.remote.modal import ModalEnvironment

    for cls in (E2BEnvironment, ModalEnvironment, DaytonaEnvironment, DockerEnvironment):
        assert issubclass(cls, WorkerEnvironment)
        assert not issubclass(cls, SubprocessEnvironment)


def test_no_sandbox_file_is_over_600_lines() -> None:
    for path in SANDBOX.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path


# -- a session's lifetime -----------------------------------------------------------------------


def echo(request: SubcallRequest) -> SubcallResponse:
    n = len(request.prompts)
    return SubcallResponse([p.upper() for p in request.prompts], [None] * n, [None] * n)


def test_a_session_serves_many_runs_and_closes_once() -> None:
    env = SubprocessEnvironment(prestart=True, hardened=False)
    ctx = Context("abc")
    session = env.open(SessionSpec(ctx, echo))
    try:
        for i in range(3):  # as across several questions of one conversation
            cell = session.run(
                f"n = {i}\nprint(llm_query('q'), n)", deadline=None, output_limit=100
            )
            assert cell.stdout == f"Q {i}\n", cell
        assert session.get_var("n", deadline=None) == "2"
    finally:
        session.close()
        session.close()  # idempotent
        env.close()
        env.close()
        ctx.close()
    assert session.closed
    with pytest.raises(SandboxError):
        session.run("1", deadline=None, output_limit=100)
    with pytest.raises(WorkerCrashed):
        session.get_var("n", deadline=None)


def test_get_var_refuses_a_subcall_from_a_leftover_thread() -> None:
    env = SubprocessEnvironment(prestart=False, hardened=False)
    ctx = Context("abc")
    session = env.open(SessionSpec(ctx, echo))
    try:
        session.run(
            "import threading, time\nout = []\n"
            "def late():\n    time.sleep(0.3)\n    try:\n        out.append(llm_query('x'))\n"
            "    except Exception as e:\n        out.append(type(e).__name__)\n"
            "threading.Thread(target=late).start()\nx = 5",
            deadline=None,
            output_limit=100,
        )
        time.sleep(0.6)
        assert session.get_var("x", deadline=time.monotonic() + 10) == "5"
        assert session.get_var("out", deadline=time.monotonic() + 10) is not None
    finally:
        session.close()
        ctx.close()


def test_an_rlm_shares_the_machine_between_the_workers_of_its_tree() -> None:
    from recursor import RLM
    from recursor.sandbox.environment import WorkerEnvironment
    from recursor.testing import ScriptedLM

    def workers(**kw: Any) -> int:
        with RLM(root=ScriptedLM([]), environment="subprocess", **kw) as rlm:
            assert isinstance(rlm.environment, WorkerEnvironment)
            return rlm.environment.limits.concurrent_workers

    assert workers(max_depth=1) == 1
    assert workers(max_depth=2, max_concurrency=4) == 5
    assert workers(max_depth=3, max_concurrency=4) == 9
    mine = SubprocessEnvironment(prestart=False)
    with RLM(root=ScriptedLM([]), environment=mine, max_depth=2) as rlm:
        assert rlm.environment is mine
    assert mine.limits.concurrent_workers == 16  # the caller's object is left as it was
    gib = 1 << 30
    one = WorkerLimits(concurrent_workers=1)
    assert one.memory_bytes(0, machine_bytes=24 * gib) == gib
    assert one.memory_bytes(2 * gib, machine_bytes=24 * gib) == 9 * gib
    assert WorkerLimits(concurrent_workers=17).memory_bytes(2 * gib, machine_bytes=24 * gib) == (
        5 * gib
    )


def test_worker_environment_keywords_keep_their_names_and_reject_unknown_ones() -> None:
    from recursor.sandbox.subprocess import SubprocessEnvironment

    env = SubprocessEnvironment(grace_s=0.5, start_timeout_s=9.0, prestart=False)
    try:
        assert (env.grace_s, env.start_timeout_s, env.prestart) == (0.5, 9.0, False)
    finally:
        env.close()
    default = SubprocessEnvironment()
    try:
        assert default.prestart  # its own default, unlike WorkerEnvironment's
    finally:
        default.close()
    with pytest.raises(TypeError, match="grace"):
        SubprocessEnvironment(grace=1.0)  # type: ignore[call-arg]
