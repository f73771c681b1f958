"""Nothing outlives the host: a worker (and a fork server) dies with the process that started it.

``prctl(PR_SET_PDEATHSIG, SIGKILL)`` asks the kernel to SIGKILL us when our parent ends. Three
traps, each handled here or by the caller:

* the parent may have died before the prctl: then the signal never comes. So the caller
  passes the pid it expects as parent and we check ``os.getppid()`` right after arming; a
  mismatch (we were re-parented to pid 1 or a subreaper) exits at once.
* the signal fires when the *thread* that forked us ends, not the process: launchers of
  local processes fork on :func:`~recursor.sandbox.launch.on_lasting_thread`.
* the kernel clears it on every credential change (the hardened worker's setuid, its new
  user namespace): the worker arms it again once confinement is done (:func:`rearm`).

A fork's child does not inherit the setting: the fork server's children arm it themselves.
Linux only; elsewhere :func:`die_with_parent` reports it is not in force.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

from recursor.sandbox.hardening import Measure

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
NAME = "parent-death signal"


def _prctl_pdeathsig() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0)


def armed() -> bool:
    """Whether SIGKILL-on-parent-death is set for this process now."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(0)
    if libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0) != 0:
        return False
    return value.value == signal.SIGKILL


def die_with_parent(expected_parent: int | None) -> None:
    """Arm SIGKILL-on-parent-death; exit at once if the parent is already gone.

    ``expected_parent``: the pid our parent had when it started us (None: not checked, for a
    launcher whose pid namespace hides it, where the namespace's own init holds us).
    """
    if sys.platform != "linux" or not _prctl_pdeathsig():
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(70)  # the parent died before we armed the signal: nobody will ever talk to us


def rearm() -> Measure:
    """Arm it again (after a credential change cleared it); the measure for ``ready``."""
    if sys.platform != "linux":
        return Measure(NAME, False, f"no PR_SET_PDEATHSIG on {sys.platform}")
    _prctl_pdeathsig()
    if not armed():
        return Measure(NAME, False, "prctl(PR_SET_PDEATHSIG) did not hold")
    return Measure(NAME, True, "SIGKILL when the host (or fork server) dies; re-armed after setuid")
