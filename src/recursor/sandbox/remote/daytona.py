"""The worker in a Daytona sandbox, driven through the ``daytona`` SDK.

Per session: ``Daytona().create(CreateSandboxFromImageParams(image, resources=Resources(cpu,
memory, disk), network_block_all=True, ephemeral=True, auto_stop_interval=...))`` — all
network blocked, vendor resource limits, and a sandbox that deletes itself once stopped (it
stops by itself after the idle interval should this process die first). Then one
``fs.upload_files`` of the recursor package under ``/tmp/recursor/recursor`` and one of the
context as a file at ``/tmp/recursor/context`` (streamed from the host's file, never as a code
literal); ``/tmp`` because the sandbox's user may not write elsewhere. Then a session
(``process.create_session``) runs ``python3 -I -B .../relay.py`` asynchronously with input
echo suppressed: the relay (relay.py) runs the unchanged worker, and the frames travel as
base64 lines through ``process.send_session_command_input`` and the command's log stream
(``get_session_command_logs_async``, text over a websocket), inside the SDK's authenticated
connection: nothing listens on a port.

A cell out of time gets SIGINT through the relay; a kill is ``process.delete_session``; the
session's end, ``sandbox.delete()``.

Tested against a local fake of the SDK (tests/sandbox/fake_daytona.py, processes under
bubblewrap), never against Daytona's service: see that file for what the fake does not show.
"""

from __future__ import annotations

import asyncio
import math
import shlex
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Unpack

from recursor.sandbox.environment import WorkerOptions
from recursor.sandbox.hardening import Measure
from recursor.sandbox.launch import SpawnRequest
from recursor.sandbox.remote.streamed import (
    Box,
    Sink,
    StreamedEnvironment,
    import_sdk,
    package_files,
)


class DaytonaBox:
    """One Daytona sandbox and the relay command of its session."""

    def __init__(self, sdk: Any, sandbox: Any) -> None:
        self._sdk = sdk
        self._sandbox = sandbox
        self.ident = str(getattr(sandbox, "id", "?"))
        self._session = f"recursor-{uuid.uuid4().hex[:12]}"
        self._cmd_id: str | None = None

    def upload(self, files: list[tuple[str, str]]) -> None:
        # a local path as the source: the SDK streams the file instead of reading it whole
        self._sandbox.fs.upload_files(
            [self._sdk.FileUpload(local, remote) for local, remote in files]
        )

    def start(self, argv: list[str], sink: Sink) -> None:
        process = self._sandbox.process
        process.create_session(self._session)
        request = self._sdk.SessionExecuteRequest(
            command=shlex.join(argv), run_async=True, suppress_input_echo=True
        )
        self._cmd_id = str(process.execute_session_command(self._session, request).cmd_id)
        threading.Thread(
            target=self._stream, args=(sink,), daemon=True, name="recursor-daytona-out"
        ).start()

    def _stream(self, sink: Sink) -> None:
        process = self._sandbox.process
        status: int | None = None
        try:
            # the SDK streams logs only as a coroutine: this thread runs its own event loop
            asyncio.run(
                process.get_session_command_logs_async(
                    self._session, self._cmd_id, sink.on_stdout, sink.on_stderr
                )
            )
            for _ in range(20):  # the exit code is recorded a moment after the stream ends
                code = process.get_session_command(self._session, self._cmd_id).exit_code
                if code is not None:
                    status = int(code)
                    break
                time.sleep(0.1)
        except Exception as exc:
            sink.on_stderr(f"\nrecursor: the daytona log stream broke: {exc}\n")
        finally:
            sink.on_exit(status)

    def send(self, text: str) -> None:
        self._sandbox.process.send_session_command_input(self._session, self._cmd_id, text)

    def stop(self) -> None:
        self._sandbox.process.delete_session(self._session)

    def destroy(self) -> None:
        self._sandbox.delete()


@dataclass(frozen=True, slots=True)
class DaytonaSandbox:
    """What every sandbox of one environment is created with."""

    image: str
    cpus: int
    disk_gb: int
    idle_stop_minutes: int
    create_timeout_s: float


class DaytonaOptions(WorkerOptions, total=False):
    """:class:`DaytonaEnvironment`'s keywords: its sandbox's (defaults: ``python:3.11-slim``,
    1 CPU, 3 GB disk, stopped after 30 idle minutes), the streamed environment's, and every
    worker environment's."""

    image: str
    cpus: int
    disk_gb: int
    idle_stop_minutes: int
    remote_dir: str | None
    python_in_sandbox: str


class DaytonaVendor:
    """Creates Daytona sandboxes (see the module docstring), with one client for them all."""

    name = "daytona"

    def __init__(self, sdk: Any, sandbox: DaytonaSandbox, *, api_key: str | None) -> None:
        self.sdk = sdk
        self.sandbox = sandbox
        self._config = sdk.DaytonaConfig(api_key=api_key) if api_key else None
        self._client: Any = None
        self._client_lock = threading.Lock()

    def client(self) -> Any:
        """One Daytona client for every session of this environment, made when first needed."""
        with self._client_lock:
            if self._client is None:
                self._client = self.sdk.Daytona(self._config)
            return self._client

    def open_box(self, request: SpawnRequest, remote_dir: str, memory_mb: int | None) -> Box:
        sdk, spec = self.sdk, self.sandbox
        params = sdk.CreateSandboxFromImageParams(
            image=spec.image,
            resources=sdk.Resources(cpu=spec.cpus, memory=_gib(memory_mb), disk=spec.disk_gb),
            network_block_all=True,
            ephemeral=True,
            auto_stop_interval=spec.idle_stop_minutes,
            labels={"created_by": "recursor"},
        )
        box = DaytonaBox(sdk, self.client().create(params, timeout=spec.create_timeout_s))
        try:
            box.upload(package_files(remote_dir))
        except BaseException:
            box.destroy()
            raise
        return box

    def measures(self, box: Box, memory_mb: int | None) -> list[Measure]:
        gib = _gib(memory_mb)
        mem = f"{gib} GiB" if gib else "default memory"
        spec = self.sandbox
        return [
            Measure(
                "daytona",
                True,
                f"sandbox {box.ident}, image {spec.image}; network_block_all=True; "
                f"{spec.cpus} CPUs, {mem}, {spec.disk_gb} GiB disk; context uploaded with "
                "fs.upload_files",
            )
        ]


def _gib(memory_mb: int | None) -> int | None:
    """Daytona's memory is whole GiB: rounded up."""
    return None if memory_mb is None else max(1, math.ceil(memory_mb / 1024))


class DaytonaEnvironment(StreamedEnvironment):
    """``image``: an image with ``python3`` >= 3.11. ``cpus``, ``disk_gb`` and the memory of
    ``limits`` (by default sized to the context and the machine, see WorkerLimits; rounded up
    to whole GiB) are the sandbox's resources. ``api_key``: else DAYTONA_API_KEY (and
    DAYTONA_API_URL). ``sdk``: the ``daytona`` module (a fake in tests); imported here, when
    the environment is built, if not given."""

    name = "daytona"
    remote_dir_default = "/tmp/recursor"

    def __init__(
        self, *, api_key: str | None = None, sdk: Any = None, **kw: Unpack[DaytonaOptions]
    ) -> None:
        self.sdk = sdk if sdk is not None else import_sdk("daytona", "daytona")
        spec = DaytonaSandbox(
            image=kw.pop("image", "python:3.11-slim"),
            cpus=kw.pop("cpus", 1),
            disk_gb=kw.pop("disk_gb", 3),
            idle_stop_minutes=kw.pop("idle_stop_minutes", 30),
            create_timeout_s=float(kw.get("start_timeout_s", 180.0)),
        )
        vendor = DaytonaVendor(self.sdk, spec, api_key=api_key)
        super().__init__(vendor, **kw)
