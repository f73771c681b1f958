"""What the container-style launchers (bwrap, gvisor) share: where the worker finds things.

The worker's root file system holds only read-only ``/usr``, the interpreter's prefix, the
virtualenv and this package (:func:`python_roots`), and the context file at
:data:`CONTEXT_MOUNT`; inside, the worker runs as :data:`SANDBOX_UID`.
"""

from __future__ import annotations

import os
import sys
import sysconfig

#: where the context file is mounted read-only inside the sandbox
CONTEXT_MOUNT = "/run/recursor/context"
#: nobody: the uid the worker has inside
SANDBOX_UID = 65534


def python_roots() -> list[str]:
    """The directories the worker's interpreter reads (prefixes, site-packages, this package),
    minus those inside another one and those under /usr (mounted whole)."""
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = {sys.base_prefix, sys.prefix, package}
    paths.update(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    return roots([p for p in paths if os.path.isdir(p)])


def roots(paths: list[str]) -> list[str]:
    """The paths, minus those inside another one (a bind of the parent covers them)."""
    out: list[str] = []
    for p in sorted({os.path.realpath(p) for p in paths} | set(paths), key=len):
        if not os.path.isdir(p) or p.startswith("/usr/"):
            continue
        if not any(p == r or p.startswith(r.rstrip("/") + "/") for r in out):
            out.append(p)
    return out


def leaf(pid: int) -> int:
    """The deepest first descendant of ``pid`` (``pid`` itself when it has no children): the
    worker, under a launcher's own process and its pid-1 reaper."""
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return pid
        if not kids:
            return pid
        pid = int(kids[0])
    return pid
