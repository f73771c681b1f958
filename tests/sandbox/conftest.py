"""Environments that claim isolation, built small so the escape suite stays quick."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from recursor.sandbox.base import Environment
from recursor.sandbox.subprocess import SubprocessEnvironment, WorkerLimits

#: tight limits: the memory bomb must hit them long before the machine does
SMALL = WorkerLimits(memory_mb=768, file_size_mb=64, scratch_mb=16, open_files=64, processes=64)


def _subprocess() -> Environment:
    return SubprocessEnvironment(limits=SMALL, prestart=False)


def _forkserver() -> Environment:
    from recursor.sandbox.forkserver import ForkServerEnvironment

    return ForkServerEnvironment(limits=SMALL)


def _bwrap() -> Environment:
    from recursor.sandbox.bwrap import BwrapEnvironment

    return BwrapEnvironment(limits=SMALL)


def _gvisor() -> Environment:
    from recursor.sandbox.gvisor import GvisorEnvironment

    return GvisorEnvironment(limits=SMALL)


_NO_BWRAP = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (make system-deps installs it as root)",
)
_NO_RUNSC = pytest.mark.skipif(
    shutil.which("runsc") is None,
    reason="gVisor's runsc is not installed (make system-deps tries Debian's runsc as root)",
)
ISOLATING = [
    pytest.param(_subprocess, id="subprocess"),
    pytest.param(_forkserver, id="forkserver"),
    pytest.param(_bwrap, id="bwrap", marks=_NO_BWRAP),
    pytest.param(_gvisor, id="gvisor", marks=_NO_RUNSC),
]


@pytest.fixture(params=ISOLATING)
def isolating(request: pytest.FixtureRequest) -> Callable[[], Environment]:
    """A factory of every environment that claims isolation."""
    factory: Callable[[], Environment] = request.param
    return factory
