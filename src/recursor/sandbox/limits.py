"""What one worker may use (:class:`WorkerLimits`), and how much memory that is by default.

The default memory cap is a share of the machine, not a fixed number: a run tree runs many
workers at once (``rlm_query_batched`` opens up to ``max_concurrency`` = 16 child REPLs), and
a fixed 8 GiB each let 16 children ask for 128 GiB on a 24 GB machine. See
:func:`default_memory_bytes` for the rule and its numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

_MB = 1 << 20
_GB = 1 << 30

#: what a worker with no context at all may map: an interpreter, its imports, thread stacks
#: and malloc arenas. RLIMIT_AS counts *virtual* memory, which runs well ahead of what is
#: resident (each thread reserves an 8 MiB stack and may get a 64 MiB malloc arena).
BASE_BYTES = 1 * _GB
#: per byte of context a worker would like: the mapped file, its decoded text, and two working
#: copies (a ``split``, a JSON context's objects)
WANT_PER_CONTEXT_BYTE = 4
#: per byte of context a worker cannot do without: the mapped file and its decoded text. A
#: worker is never capped below this, whatever its share: its context must load.
NEED_PER_CONTEXT_BYTE = 2
#: the default RLIMIT_CPU of a worker (see :attr:`WorkerLimits.cpu_seconds`)
DEFAULT_CPU_SECONDS = 3600
#: how many workers of one run tree the default assumes run at once (the broker's default
#: ``max_concurrency``: the width of one ``rlm_query_batched``)
CONCURRENT_WORKERS = 16


def machine_memory_bytes() -> int:
    """The memory this process may use: physical RAM, or its cgroup's limit when lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = _cgroup_memory_limit()
    return total if limit is None else min(total, limit)


def _cgroup_memory_limit() -> int | None:
    """This process's cgroup memory limit (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``)."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one unified hierarchy
            candidates = [f"/sys/fs/cgroup{path}/memory.max", "/sys/fs/cgroup/memory.max"]
        elif "memory" in controllers.split(","):
            base = "/sys/fs/cgroup/memory"
            candidates = [f"{base}{path}/memory.limit_in_bytes", f"{base}/memory.limit_in_bytes"]
        else:
            continue
        for candidate in candidates:
            try:
                with open(candidate) as f:
                    text = f.read().strip()
            except OSError:
                continue
            # "max" (v2) or a huge page-rounded number (v1): no limit
            if text.isdigit() and int(text) < 1 << 60:
                return int(text)
            return None
    return None


def default_memory_bytes(
    context_bytes: int, *, machine_bytes: int, concurrent: int = CONCURRENT_WORKERS
) -> int:
    """The default memory cap of one worker whose context file is ``context_bytes`` long.

    ``want = 1 GiB + 4 x context``; ``need = 1 GiB + 2 x context``; ``share = machine /
    concurrent``; the cap is ``min(want, max(need, share), machine)``. So a worker gets what
    its context wants up to its share of the machine, and never less than its context needs
    to load. On a 24 GiB machine (share 1.5 GiB): no or a small context, 1 GiB; a 100 MiB
    context, 1.4 GiB; a 1 GiB context, 3 GiB (its need). 16 children with small contexts
    then ask for 16 GiB together, not 128.
    """
    want = BASE_BYTES + WANT_PER_CONTEXT_BYTE * context_bytes
    need = BASE_BYTES + NEED_PER_CONTEXT_BYTE * context_bytes
    share = machine_bytes // max(1, concurrent)
    return min(want, max(need, share), machine_bytes)


@dataclass(frozen=True, slots=True)
class WorkerLimits:
    """rlimits applied by the worker to itself before it loads the context or runs code.

    ``memory_mb``: the address-space cap (and, where cgroups are writable, the memory cgroup
    limit). ``"auto"`` (the default) sizes it per session by :func:`default_memory_bytes`:
    ``min(1 GiB + 4 x context, max(1 GiB + 2 x context, machine / concurrent_workers))``,
    with the machine's memory read at session start (RAM, or this process's cgroup limit when
    lower) and ``concurrent_workers`` = 16. An RLM that makes its environment from a name sets
    ``concurrent_workers`` to the workers its tree can run at once (1 + ``max_concurrency`` per
    level of child runs: 1 for ``max_depth`` <= 1, 17 for ``max_depth=2`` and the default 16),
    so the caps of one tree add up to about the machine. An explicit number of MiB wins; None
    is no cap.
    """

    memory_mb: int | Literal["auto"] | None = "auto"
    #: RLIMIT_CPU: CPU seconds the worker may use over its whole life (all threads), then the
    #: kernel kills it (SIGXCPU) and the model is told its REPL died. CPU only accrues during
    #: cells (the host stops the worker between them), so one hour is 60 full default cells;
    #: it bounds what a thread left spinning can take over a long session. None: no cap.
    cpu_seconds: int | None = DEFAULT_CPU_SECONDS
    file_size_mb: int | None = 1024
    open_files: int | None = 256
    #: threads count too (per uid; the hardened worker has a uid of its own)
    processes: int | None = 128
    #: size of the private tmpfs over the scratch directory (hardened workers)
    scratch_mb: int | None = 256
    #: the largest frame the host reads from the worker (a sub-call's prompts, a variable), in
    #: bytes sent and in bytes its strings take once decoded (a str with one emoji takes 4 bytes
    #: a character): a bound on what the worker can make the host allocate at once (not an
    #: rlimit). 256 MiB: a sub-call prompt of 50 MB in any script still fits
    frame_mb: int = 256
    #: how many workers of one tree the automatic memory cap shares the machine between
    concurrent_workers: int = CONCURRENT_WORKERS

    def memory_bytes(
        self, context_bytes: int = 0, *, machine_bytes: int | None = None
    ) -> int | None:
        """The memory cap of a worker whose context file has ``context_bytes`` (None: none)."""
        if self.memory_mb is None:
            return None
        if self.memory_mb != "auto":
            return self.memory_mb * _MB
        machine = machine_memory_bytes() if machine_bytes is None else machine_bytes
        return default_memory_bytes(
            context_bytes, machine_bytes=machine, concurrent=self.concurrent_workers
        )

    def memory_mib(self, context_bytes: int = 0) -> int | None:
        """:meth:`memory_bytes` in whole MiB, rounded up (for launchers that take MiB)."""
        nbytes = self.memory_bytes(context_bytes)
        return None if nbytes is None else -(-nbytes // _MB)

    def as_rlimits(self, context_bytes: int = 0) -> dict[str, int | None]:
        """The init frame's ``rlimits`` (what the worker applies to itself)."""
        return {
            "address_space_bytes": self.memory_bytes(context_bytes),
            "cpu_seconds": self.cpu_seconds,
            "file_size_bytes": None if self.file_size_mb is None else self.file_size_mb * _MB,
            "open_files": self.open_files,
            "processes": self.processes,
            "core_bytes": 0,
        }
