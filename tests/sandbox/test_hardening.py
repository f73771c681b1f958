"""The measures themselves: reported honestly, in force where this machine allows them."""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from recursor.cli import app
from recursor.context import Context
from recursor.sandbox import landlock, seccomp
from recursor.sandbox.base import Environment, SessionSpec, SubcallRequest, SubcallResponse
from recursor.sandbox.subprocess import SubprocessEnvironment

linux_root = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0, reason="the full set needs Linux and root"
)


def echo(request: SubcallRequest) -> SubcallResponse:
    n = len(request.prompts)
    return SubcallResponse([p.upper() for p in request.prompts], [None] * n, [None] * n)


def test_seccomp_filter_is_well_formed() -> None:
    prog = seccomp.build_filter(1234)
    assert len(prog) % 8 == 0 and len(prog) // 8 < 4096
    insns = [struct.unpack("HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]
    # every jump lands inside the program, and the program ends in a return
    for i, (code, jt, jf, _k) in enumerate(insns):
        if code & 0x07 == 0x05:
            assert i + 1 + max(jt, jf) < len(insns)
    assert insns[-1] == (0x06, 0, 0, seccomp.RET_ALLOW)
    denied_nrs = {k for code, _, _, k in insns if code == 0x15}
    assert {41, 42, 49, 57, 59, 101, 165, 425} <= denied_nrs  # socket connect bind fork ...


@pytest.mark.skipif(not seccomp.supported(), reason="x86_64 Linux only")
def test_landlock_abi_is_detected() -> None:
    assert landlock.abi_version() >= 0


@linux_root
def test_hardened_subprocess_reports_every_measure_in_force() -> None:
    env = SubprocessEnvironment(prestart=False)
    ctx = Context("abc")
    session = env.open(SessionSpec(ctx, echo))
    try:
        by_name = {m.name: m for m in session.measures}
        expected = {
            "rlimits",
            "namespaces (mount, net, ipc, uts)",
            "scratch quota",
            "unprivileged uid",
            "user namespace",
            "scrubbed environment",
            "process-group kill",
            "cgroups",
        }
        if landlock.abi_version() >= 1:
            expected.add("landlock")
        if seccomp.supported():
            expected.add("seccomp")
        missing = expected - {n for n, m in by_name.items() if m.in_force}
        assert not missing, [by_name.get(n) for n in missing]
        r = session.run("import os\nprint(os.getuid())", deadline=None, output_limit=1000)
        assert int(r.stdout) >= 200_000
    finally:
        session.close()
        ctx.close()


def test_unhardened_subprocess_reports_no_confinement() -> None:
    env = SubprocessEnvironment(prestart=False, hardened=False)
    ctx = Context("abc")
    session = env.open(SessionSpec(ctx, echo))
    try:
        names = {m.name for m in session.measures}
        assert "seccomp" not in names and "landlock" not in names
        assert "scrubbed environment" in names
    finally:
        session.close()
        ctx.close()


@linux_root
def test_cgroups_are_released_with_the_worker() -> None:
    env = SubprocessEnvironment(prestart=False)
    ctx = Context("abc")
    session = env.open(SessionSpec(ctx, echo))
    launched = session._launched
    assert launched is not None and launched.cgroup is not None
    dirs = list(launched.cgroup.dirs)
    assert dirs and all(os.path.isdir(d) for d in dirs)
    session.close()
    ctx.close()
    assert not any(os.path.isdir(d) for d in dirs)


def test_subcalls_from_many_threads_share_the_channel(
    isolating: Callable[[], Environment],
) -> None:
    env = isolating()
    ctx = Context("abc")
    session = env.open(SessionSpec(ctx, echo))
    try:
        r = session.run(
            "from concurrent.futures import ThreadPoolExecutor\n"
            "out = list(ThreadPoolExecutor(8).map(llm_query, [f'p{i}' for i in range(64)]))\n"
            "print(out == [f'P{i}' for i in range(64)])",
            deadline=None,
            output_limit=1000,
        )
        assert r.error is None and r.stdout.strip() == "True", r
    finally:
        session.close()
        getattr(env, "close", lambda: None)()
        ctx.close()


def test_doctor_prints_measures() -> None:
    result = CliRunner().invoke(app, ["doctor", "--json", "-e", "subprocess", "-e", "nosuch"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "landlock_abi" in data["host"]
    sub, bad = data["environments"]
    assert sub["available"] and any(m["name"] == "seccomp" for m in sub["measures"])
    assert not bad["available"] and "unknown environment" in bad["error"]
    table = CliRunner().invoke(app, ["doctor", "-e", "subprocess"])
    assert table.exit_code == 0 and "scrubbed environment" in table.output
