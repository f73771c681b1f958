"""``recursor doctor``: which confinement measures are in force here, per environment.

It does not guess from the kernel version: it starts a real session of each environment on a
tiny context and prints what its worker reported (each measure, in force or not, and why).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recursor._terminal import markup_safe

#: environments doctor probes by default (each one whose launcher is installed)
DEFAULT = ("subprocess", "forkserver", "bwrap", "gvisor")
_LAUNCHERS = {"bwrap": "bwrap", "gvisor": "runsc"}


def host_facts() -> dict[str, Any]:
    from recursor.sandbox import landlock, seccomp

    return {
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": sys.version.split()[0],
        "root": hasattr(os, "geteuid") and os.geteuid() == 0,
        "landlock_abi": landlock.abi_version(),
        "seccomp_filter": seccomp.supported(),
        "bwrap": shutil.which("bwrap"),
        "runsc": shutil.which("runsc"),
    }


def probe(name: str) -> dict[str, Any]:
    """Open one session of environment ``name``; its measures, or why it could not start."""
    from recursor.context import Context
    from recursor.errors import RecursorError
    from recursor.sandbox import resolve_environment
    from recursor.sandbox.base import SessionSpec, SubcallResponse

    def handler(request: Any) -> SubcallResponse:
        return SubcallResponse.failure(len(request.prompts), "doctor serves no sub-calls")

    ctx = Context("doctor")
    env: Any = None
    try:
        env = resolve_environment(name)
        session = env.open(SessionSpec(ctx, handler))
    except (RecursorError, OSError) as exc:
        return {"environment": name, "available": False, "error": str(exc), "measures": []}
    try:
        measures = [m.to_dict() for m in getattr(session, "measures", [])]
    finally:
        session.close()
        if hasattr(env, "close"):
            env.close()
        ctx.close()
    return {"environment": name, "available": True, "measures": measures}


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(
        environment: Annotated[
            list[str] | None,
            typer.Option("--environment", "-e", help="Probe only these (repeatable)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Show which sandbox measures are in force on this machine, per environment."""
        names = environment or [
            n for n in DEFAULT if n not in _LAUNCHERS or shutil.which(_LAUNCHERS[n])
        ]
        facts = host_facts()
        reports = [probe(n) for n in names]
        if as_json:
            typer.echo(json.dumps({"host": facts, "environments": reports}, indent=2))
            return
        out = Console()
        out.print(
            f"{facts['platform']} · Python {facts['python']} · "
            f"{'root' if facts['root'] else 'not root'} · Landlock ABI {facts['landlock_abi']} "
            f"· bwrap {facts['bwrap'] or 'not installed'} · runsc {facts['runsc'] or 'absent'}"
        )
        out.print("[dim]inprocess: no isolation at all; for trusted input only[/]")
        for rep in reports:
            if not rep["available"]:
                out.print(
                    f"[bold]{rep['environment']}[/]: [red]unavailable[/] "
                    f"{markup_safe(rep['error'])}"
                )
                continue
            table = Table(title=rep["environment"], title_justify="left")
            table.add_column("measure")
            table.add_column("in force")
            table.add_column("detail", overflow="fold")
            for m in rep["measures"]:
                mark = "[green]yes[/]" if m["in_force"] else "[yellow]no[/]"
                table.add_row(markup_safe(m["name"]), mark, markup_safe(m["detail"]))
            out.print(table)
