"""The worker in an E2B sandbox (a Firecracker microVM), driven through the ``e2b`` SDK.

Per session: ``Sandbox.create(template, allow_internet_access=False, timeout=...)`` (E2B's
switch that denies all outbound traffic; the timeout ends the sandbox by itself should this
process die before it could), then one ``files.write_files`` of the recursor package under
``/opt/recursor/recursor`` and another of the context as a file at ``/opt/recursor/context``
(streamed from the host's file, never as a code literal), then
``commands.run(python3 -I -B .../relay.py, background=True, stdin=True, timeout=0)``. The
relay (relay.py) runs the unchanged worker; the frames travel as base64 lines through
``commands.send_stdin`` and the handle's ``on_stdout`` callback (E2B decodes stdout as UTF-8,
so raw frames would not survive), inside the SDK's authenticated connection to the sandbox's
envd: nothing listens on a port. Files are written and the relay runs as root in the VM; the
worker becomes uid 65534 once its context is loaded, as in the Docker environment.

CPU and memory are the template's (E2B sets them when a template is built, not per sandbox);
the worker's rlimits still apply. A cell out of time gets SIGINT through the relay; a kill is
``CommandHandle.kill()``; the session's end, ``sandbox.kill()``.

Tested against a local fake of the SDK (tests/sandbox/fake_e2b.py, processes under bubblewrap),
never against E2B's service: see that file for what the fake does not show.
"""

from __future__ import annotations

import contextlib
import shlex
import threading
from typing import Any

from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import SpawnRequest
from recursor.sandbox.remote.streamed import (
    Box,
    Sink,
    StreamedEnvironment,
    import_sdk,
    package_files,
)


class E2BBox:
    """One E2B sandbox and the relay command started in it."""

    def __init__(self, sdk: Any, sandbox: Any) -> None:
        self._sdk = sdk
        self._sandbox = sandbox
        self.ident = str(getattr(sandbox, "sandbox_id", "?"))
        self._handle: Any = None

    def upload(self, files: list[tuple[str, str]]) -> None:
        with contextlib.ExitStack() as stack:
            # file objects: the SDK streams them instead of reading them into memory
            entries = [
                {"path": remote, "data": stack.enter_context(open(local, "rb"))}
                for local, remote in files
            ]
            self._sandbox.files.write_files(entries, user="root")

    def start(self, argv: list[str], sink: Sink) -> None:
        self._handle = self._sandbox.commands.run(
            shlex.join(argv),
            background=True,
            stdin=True,
            user="root",
            timeout=0,  # the default (60 s) would end the session's stream after a minute
            retain_output=False,  # the output is the channel: never accumulate it
        )
        threading.Thread(
            target=self._stream, args=(sink,), daemon=True, name="recursor-e2b-out"
        ).start()

    def _stream(self, sink: Sink) -> None:
        status: int | None = None
        try:
            status = int(
                self._handle.wait(on_stdout=sink.on_stdout, on_stderr=sink.on_stderr).exit_code
            )
        except self._sdk.CommandExitException as exc:  # a non-zero exit is raised, not returned
            status = int(exc.exit_code)
        except Exception as exc:
            sink.on_stderr(f"\nrecursor: the e2b output stream broke: {exc}\n")
        finally:
            sink.on_exit(status)

    def send(self, text: str) -> None:
        self._sandbox.commands.send_stdin(self._handle.pid, text)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.kill()

    def destroy(self) -> None:
        self._sandbox.kill()


class E2BVendor:
    """Creates E2B sandboxes (see the module docstring)."""

    name = "e2b"

    def __init__(
        self, sdk: Any, template: str | None, api_key: str | None, sandbox_timeout_s: int
    ) -> None:
        self.sdk = sdk
        self.template = template
        self.api_key = api_key
        self.sandbox_timeout_s = sandbox_timeout_s

    def open_box(self, request: SpawnRequest, remote_dir: str, memory_mb: int | None) -> Box:
        # memory_mb is unused: E2B sets memory when a template is built, not per sandbox
        opts: dict[str, Any] = {"api_key": self.api_key} if self.api_key else {}
        sandbox = self.sdk.Sandbox.create(
            template=self.template,
            timeout=self.sandbox_timeout_s,
            allow_internet_access=False,
            metadata={"created_by": "recursor"},
            **opts,
        )
        box = E2BBox(self.sdk, sandbox)
        try:
            box.upload(package_files(remote_dir))
        except BaseException:
            box.destroy()
            raise
        return box

    def measures(self, box: Box, memory_mb: int | None) -> list[Measure]:
        return [
            Measure(
                "e2b",
                True,
                f"microVM {box.ident}, template {self.template or 'default'}; "
                "allow_internet_access=False; context uploaded with files.write_files",
            ),
            Measure("vendor limits", False, "CPU and memory are the template's, not set here"),
        ]


class E2BEnvironment(StreamedEnvironment):
    """``template``: an E2B template whose image has ``python3`` >= 3.11 (the default
    template when None). ``api_key``: else E2B_API_KEY. ``sdk``: the ``e2b`` module (a fake in
    tests); imported here, when the environment is built, if not given."""

    name = "e2b"

    def __init__(
        self,
        *,
        template: str | None = None,
        api_key: str | None = None,
        sandbox_timeout_s: int = 3600,
        sdk: Any = None,
        **kw: Any,
    ) -> None:
        self.sdk = sdk if sdk is not None else import_sdk("e2b", "e2b")
        self.template = template
        super().__init__(E2BVendor(self.sdk, template, api_key, sandbox_timeout_s), **kw)
