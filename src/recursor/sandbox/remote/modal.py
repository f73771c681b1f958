"""The worker in a Modal Sandbox (a gVisor container on Modal's machines), through ``modal``.

Per session: ``modal.Sandbox.create(app=..., image=..., block_network=True, cpu=(n, n),
memory=(mb, mb), timeout=...)`` — no network at all, a hard CPU and memory limit, and a
lifetime after which Modal ends the sandbox by itself should this process die first. The
recursor package travels with the image (``Image.add_local_dir`` of the package alone, to
``/opt/recursor/recursor``: Modal uploads it when the sandbox starts); the context is then
uploaded as a file with ``sandbox.filesystem.copy_from_local`` to ``/opt/recursor/context``
(never as a code literal). Then ``sandbox.exec(python3 -I -B .../relay.py, text=False)``:
the relay (relay.py) runs the unchanged worker, and the frames travel as base64 lines on the
exec's stdin/stdout streams, inside the SDK's authenticated connection: nothing listens on a
port. Modal runs the process as root in the container; the worker becomes uid 65534 once its
context is loaded.

Modal has no call that signals an exec'd process: a cell out of time gets SIGINT through the
relay, and a kill, like the session's end, is ``sandbox.terminate()``.

Tested against a local fake of the SDK (tests/sandbox/fake_modal.py, processes under
bubblewrap), never against Modal's service: see that file for what the fake does not show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import SpawnRequest
from recursor.sandbox.remote.streamed import (
    PACKAGE,
    Box,
    Sink,
    StreamedEnvironment,
    import_sdk,
)


class ModalBox:
    """One Modal sandbox and the relay exec'd in it."""

    def __init__(self, sandbox: Any) -> None:
        self._sandbox = sandbox
        self.ident = str(getattr(sandbox, "object_id", "?"))
        self._proc: Any = None

    def upload(self, files: list[tuple[str, str]]) -> None:
        for local, remote in files:
            self._sandbox.filesystem.copy_from_local(local, remote)

    def start(self, argv: list[str], sink: Sink) -> None:
        # bytes, not text: the SDK then never decodes (the relay's lines are ASCII anyway)
        self._proc = self._sandbox.exec(*argv, text=False)
        out = threading.Thread(
            target=self._drain, args=(self._proc.stdout, sink.on_stdout), daemon=True
        )
        err = threading.Thread(
            target=self._drain, args=(self._proc.stderr, sink.on_stderr), daemon=True
        )
        out.start()
        err.start()
        threading.Thread(target=self._reap, args=(out, sink), daemon=True).start()

    @staticmethod
    def _drain(stream: Any, deliver: Callable[[str | bytes], None]) -> None:
        try:
            for chunk in stream:
                deliver(chunk)
        except Exception as exc:  # the stream broke: the exit below ends the session's
            deliver(f"\nrecursor: the modal stream broke: {exc}\n".encode())

    def _reap(self, out: threading.Thread, sink: Sink) -> None:
        out.join()
        status: int | None = None
        try:
            status = int(self._proc.wait())
        except Exception as exc:
            sink.on_stderr(f"\nrecursor: modal wait failed: {exc}\n")
        sink.on_exit(status)

    def send(self, text: str) -> None:
        self._proc.stdin.write(text.encode("ascii"))
        self._proc.stdin.drain()

    def stop(self) -> None:
        self._sandbox.terminate()

    def destroy(self) -> None:
        self._sandbox.terminate()


class ModalVendor:
    """Creates Modal sandboxes (see the module docstring)."""

    name = "modal"

    def __init__(
        self, sdk: Any, image: str | None, app_name: str, cpus: float, sandbox_timeout_s: int
    ) -> None:
        self.sdk = sdk
        self.image = image
        self.app_name = app_name
        self.cpus = cpus
        self.sandbox_timeout_s = sandbox_timeout_s

    def _image(self, remote_dir: str) -> Any:
        images = self.sdk.Image
        base = (
            images.from_registry(self.image)
            if self.image
            else images.debian_slim(python_version="3.11")
        )
        return base.add_local_dir(
            str(PACKAGE), f"{remote_dir}/recursor", ignore=["**/__pycache__", "**/*.pyc"]
        )

    def open_box(self, request: SpawnRequest, remote_dir: str, memory_mb: int | None) -> Box:
        app = self.sdk.App.lookup(self.app_name, create_if_missing=True)
        sandbox = self.sdk.Sandbox.create(
            app=app,
            image=self._image(remote_dir),
            block_network=True,
            cpu=(self.cpus, self.cpus),  # (request, limit): the limit is a hard one
            memory=(memory_mb, memory_mb) if memory_mb else None,
            timeout=self.sandbox_timeout_s,
        )
        return ModalBox(sandbox)

    def measures(self, box: Box, memory_mb: int | None) -> list[Measure]:
        mem = f"{memory_mb} MiB" if memory_mb else "no memory limit"
        return [
            Measure(
                "modal",
                True,
                f"sandbox {box.ident}; block_network=True; {self.cpus} CPUs, {mem}; "
                "context uploaded with filesystem.copy_from_local",
            )
        ]


class ModalEnvironment(StreamedEnvironment):
    """``image``: a registry tag with ``python3`` >= 3.11 (None: Modal's debian_slim, Python
    3.11). ``app_name``: the Modal app the sandboxes belong to (created if missing).
    ``cpus``: a hard CPU limit; the memory limit is ``limits.memory_mb`` (by default sized to
    the context and the machine, see WorkerLimits). ``sdk``: the ``modal`` module (a fake in
    tests); imported here, when the environment is built, if not given. Credentials are
    Modal's own (``modal token set``, or MODAL_TOKEN_ID/SECRET)."""

    name = "modal"

    def __init__(
        self,
        *,
        image: str | None = None,
        app_name: str = "recursor",
        cpus: float = 1.0,
        sandbox_timeout_s: int = 3600,
        sdk: Any = None,
        **kw: Any,
    ) -> None:
        self.sdk = sdk if sdk is not None else import_sdk("modal", "modal")
        self.cpus = cpus
        vendor = ModalVendor(self.sdk, image, app_name, cpus, sandbox_timeout_s)
        super().__init__(vendor, **kw)
