"""``recursor serve`` and ``recursor mcp``: the server commands, registered on the main app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from recursor._terminal import markup_safe
from recursor.errors import ConfigurationError

err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="recursor.toml: profiles, keys, limits.")
]
RootOpt = Annotated[
    str | None, typer.Option("--root", help="Without --config: the root model, provider:model.")
]
SubOpt = Annotated[str | None, typer.Option("--sub", help="Without --config: the sub-model.")]
DepthOpt = Annotated[int, typer.Option("--max-depth", min=0, help="Without --config.")]
EnvOpt = Annotated[str, typer.Option("--environment", "-e", help="Without --config: sandbox.")]
TrustedOpt = Annotated[
    bool, typer.Option("--trusted", help="Allow --environment inprocess (model code in-server).")
]
DataOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Runs, events and uploads (SQLite + files).")
]


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {markup_safe(message)}")
    return typer.Exit(4)


def build_config(  # noqa: PLR0913, PLR0917 - one argument per command-line option
    config: Path | None,
    root: str | None,
    sub: str | None,
    max_depth: int,
    environment: str,
    trusted: bool,
    server: dict[str, Any],
) -> Any:
    """The configuration from ``--config``, or one RLM profile ``rlm`` plus the root model as
    a plain profile under its own name; command-line server options win over the file."""
    from recursor.serve.config import load_config

    if config is None and root is None:
        raise ConfigurationError("give --config FILE, or --root MODEL")
    defaults: dict[str, Any] = {}
    if config is None:
        assert root is not None
        rlm: dict[str, Any] = {
            "root": root,
            "max_depth": max_depth,
            "environment": environment,
            "trusted": trusted,
        }
        if sub is not None:
            rlm["sub"] = sub
        defaults = {"profiles": {"rlm": rlm, root: {"model": root}}}
    loaded = load_config(config, defaults=defaults)
    if not server:
        return loaded
    from recursor.serve.config import validate

    data = loaded.model_dump(exclude={"keys"})
    data["keys"] = [k.model_dump() for k in loaded.keys]
    data["server"].update(server)
    return validate(data, str(config) if config else "(command line)")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(  # noqa: PLR0913, PLR0917 - typer reads options from parameters
        config: ConfigOpt = None,
        host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
        port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
        root: RootOpt = None,
        sub: SubOpt = None,
        max_depth: DepthOpt = 1,
        environment: EnvOpt = "subprocess",
        trusted: TrustedOpt = False,
        data_dir: DataOpt = None,
    ) -> None:
        """Serve RLMs over the OpenAI chat API, with jobs, uploads and a live run page."""
        try:
            from recursor.serve.server import serve as run_server
        except ImportError as exc:
            raise _fail(
                f'the server needs its extra (pip install "recursor[serve]"): {exc}'
            ) from None
        overrides = {
            k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v
        }
        try:
            cfg = build_config(config, root, sub, max_depth, environment, trusted, overrides)
        except ConfigurationError as exc:
            raise _fail(str(exc)) from None
        s = cfg.server
        err.print(f"recursor serve on http://{markup_safe(s.host)}:{s.port} ", end="")
        err.print(f"(profiles: {markup_safe(', '.join(cfg.profiles))})")
        try:
            run_server(cfg)
        except ConfigurationError as exc:  # a profile's model or sandbox could not be built
            raise _fail(str(exc)) from None

    @app.command()
    def mcp(  # noqa: PLR0913, PLR0917 - typer reads options from parameters
        config: ConfigOpt = None,
        root: RootOpt = None,
        sub: SubOpt = None,
        max_depth: DepthOpt = 1,
        environment: EnvOpt = "subprocess",
        trusted: TrustedOpt = False,
        data_dir: DataOpt = None,
        allow: Annotated[
            list[Path] | None,
            typer.Option(
                "--allow",
                help="A directory rlm_complete may read context paths under (repeatable; "
                "default: the current directory).",
            ),
        ] = None,
        http: Annotated[bool, typer.Option("--http", help="Streamable HTTP, not stdio.")] = False,
        host: Annotated[str, typer.Option(help="With --http.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="With --http.")] = 8765,
    ) -> None:
        """An MCP server (stdio, or --http) with the tools rlm_complete and rlm_trace."""
        try:
            from recursor.serve.mcp_server import run_mcp
        except ImportError as exc:
            raise _fail(
                f'the MCP server needs its extras (pip install "recursor[mcp,serve]"): {exc}'
            ) from None
        overrides = {"data_dir": data_dir} if data_dir else {}
        try:
            cfg = build_config(config, root, sub, max_depth, environment, trusted, overrides)
            roots = [p.expanduser().resolve() for p in (allow or [Path.cwd()])]
            run_mcp(cfg, roots, http=http, host=host, port=port)
        except ConfigurationError as exc:
            raise _fail(str(exc)) from None
