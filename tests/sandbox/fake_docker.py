"""A fake ``docker`` CLI: just enough of create/cp/start -ai/kill/rm for DockerEnvironment.

It checks the flags a real run depends on (``--network none`` and the limits), keeps each
"container" as a directory (uploads land in its ``fs/``), and "starts" it as the worker under
bubblewrap with that directory's files mounted where the container would have them, no
network, and a private /tmp. Installed by the tests as an executable named ``docker``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

STATE = Path(sys.argv[0]).resolve().parent.parent / "docker-state"
REQUIRED = ("--network", "--memory", "--pids-limit", "--cpus")


def fail(msg: str) -> None:
    print(f"fake docker: {msg}", file=sys.stderr)
    sys.exit(1)


def create(args: list[str]) -> None:
    flags: dict[str, list[str]] = {}
    i = 0
    while args[i].startswith("-"):
        if args[i] == "-i":
            i += 1
            continue
        flags.setdefault(args[i], []).append(args[i + 1])
        i += 2
    for flag in REQUIRED:
        if flag not in flags:
            fail(f"refusing a container without {flag}")
    if flags["--network"] != ["none"]:
        fail("the network must be none")
    image, cmd = args[i], args[i + 1 :]
    box = STATE / flags["--name"][0]
    (box / "fs").mkdir(parents=True)
    env = dict(e.split("=", 1) for e in flags.get("--env", []))
    (box / "config.json").write_text(json.dumps({"image": image, "cmd": cmd, "env": env}))


def cp(src: str, dest: str) -> None:
    name, _, path = dest.partition(":")
    target = STATE / name / "fs" / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.endswith("/."):
        shutil.copytree(src[:-2], target, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, target)
        os.chmod(target, 0o600)


def start(name: str) -> None:
    box = STATE / name
    config = json.loads((box / "config.json").read_text())
    (box / "pid").write_text(str(os.getpid()))
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    args += ["--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", "/opt", "--chdir", "/tmp"]
    # This fake runs the host's interpreter; keep its venv visible when it lives under one of
    # the tmpfs mounts above (CI clones may sit under /tmp).
    if sys.prefix.startswith(("/tmp/", "/run/", "/opt/")):
        args += ["--ro-bind", sys.prefix, sys.prefix]
    args += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent"]
    for sub in ("opt/recursor", "run/recursor/context"):
        if (box / "fs" / sub).exists():
            args += ["--ro-bind", str(box / "fs" / sub), "/" + sub]
    args += ["--clearenv"]
    for k, v in config["env"].items():
        args += ["--setenv", k, v]
    cmd = config["cmd"]
    os.execvp("bwrap", [*args, sys.executable, *cmd[1:]])  # "python3" is this interpreter


def leaf(pid: int) -> int:
    for _ in range(8):
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return pid
        if not kids:
            return pid
        pid = int(kids[0])
    return pid


def kill(name: str, sig: int) -> None:
    pid_file = STATE / name / "pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(leaf(pid) if sig == signal.SIGINT else pid, sig)
    except ProcessLookupError:
        pass


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "create":
        create(args)
    elif cmd == "cp":
        cp(args[0], args[1])
    elif cmd == "start":
        start(args[-1])
    elif cmd == "kill":
        sig = signal.SIGINT if args[:2] == ["--signal", "INT"] else signal.SIGKILL
        kill(args[-1], sig)
    elif cmd == "rm":
        kill(args[-1], signal.SIGKILL)
        shutil.rmtree(STATE / args[-1], ignore_errors=True)
    else:
        fail(f"unsupported command {cmd}")


if __name__ == "__main__":
    main()
