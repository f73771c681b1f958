"""The ``recursor`` command: run an RLM over a file, a directory or stdin; list models.

Exit codes (distinct, so scripts can tell failures apart):

    0  the run finished with an answer
    1  the run ended without an answer (max_iterations, budget, timeout, another error)
    2  bad usage (typer's own)
    3  the context path is missing or unreadable
    4  unknown model or provider, or its extra is not installed
    5  missing or rejected API key
    6  the model server could not be reached
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from recursor import _cli_options as opt
from recursor._cli_options import load_context
from recursor._terminal import markup_safe, visible
from recursor.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextError,
    LMConnectionError,
    RecursorError,
)

if TYPE_CHECKING:
    from recursor.cli_view import LiveView
    from recursor.context import ContextInput
    from recursor.lm.gguf_store import EmbeddedModel
    from recursor.result import RLMResult
    from recursor.rlm import RLM


class Exit(IntEnum):
    OK = 0
    NO_ANSWER = 1
    USAGE = 2
    CONTEXT = 3
    MODEL = 4
    AUTH = 5
    UNREACHABLE = 6


app = typer.Typer(
    name="recursor",
    help="Recursive Language Models: long contexts as REPL variables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _fail(code: Exit, message: str) -> typer.Exit:
    # escaped: a message is text ("[openai]" in an install hint is not a style tag), and it may
    # quote model or worker output, whose control characters must not reach the terminal
    err.print(f"[bold red]error:[/] {markup_safe(message)}")
    return typer.Exit(int(code))


def exit_code_for(error: BaseException | None) -> Exit:
    if error is None:
        return Exit.OK
    if isinstance(error, ContextError):
        return Exit.CONTEXT
    if isinstance(error, ConfigurationError):
        return Exit.MODEL
    if isinstance(error, AuthenticationError):
        return Exit.AUTH
    if isinstance(error, LMConnectionError):
        return Exit.UNREACHABLE
    return Exit.NO_ANSWER


@app.command()
def run(  # noqa: PLR0917 - typer reads options from parameters
    query: Annotated[str, typer.Argument(help="The question to answer.")],
    context: Annotated[
        str | None, typer.Option("--context", "-c", help="A file, a directory, or - for stdin.")
    ] = None,
    model: opt.Model = None,
    sub_model: opt.SubModel = None,
    max_depth: Annotated[
        int, typer.Option(min=0, help="0 REPL only, 1 + llm_query, 2+ rlm_query.")
    ] = 1,
    environment: opt.Environment = "subprocess",
    max_iterations: opt.MaxIterations = 30,
    max_subcalls: Annotated[int | None, typer.Option(min=0)] = None,
    max_tokens: Annotated[int | None, typer.Option(min=0)] = None,
    max_cost: Annotated[float | None, typer.Option(min=0, help="USD over the whole tree.")] = None,
    timeout: Annotated[float | None, typer.Option(min=0, help="Seconds for the whole run.")] = None,
    cell_timeout: Annotated[float, typer.Option(min=0, help="Seconds for one cell.")] = 60.0,
    trace: Annotated[
        Path | None, typer.Option(help="Stream the trace as JSONL here (crash-safe).")
    ] = None,
    store_context: Annotated[
        bool, typer.Option(help="Also store the context in the trace, once, by hash.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Print the answer as it is, control characters included (by default they "
            "are shown as \\xNN escapes, so an answer cannot drive the terminal).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view.")] = False,
    schema: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A JSON Schema file: the answer is validated against it and printed as JSON.",
        ),
    ] = None,
    route: Annotated[
        str | None,
        typer.Option(help="direct, repl, recursive, auto, or a policy file (recursor route)."),
    ] = None,
) -> None:
    """Answer QUERY over a long context with a Recursive Language Model."""
    from recursor.cli_view import LiveView
    from recursor.limits import Limits
    from recursor.rlm import RLM

    try:
        ctx = load_context(context)
    except ContextError as exc:
        raise _fail(Exit.CONTEXT, str(exc)) from None
    output_type = None
    if schema is not None:
        try:
            output_type = json.loads(schema.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise _fail(Exit.USAGE, f"--schema {schema}: {exc}") from None
    limits = Limits(
        max_iterations=max_iterations,
        max_subcalls=max_subcalls,
        max_tokens=max_tokens,
        max_cost_usd=max_cost,
        timeout_s=timeout,
        cell_timeout_s=cell_timeout,
    )
    from recursor.trace import JsonlSink

    view = LiveView(err, enabled=not quiet and not json_out and err.is_terminal)
    sink = None if trace is None else JsonlSink(trace, store_context=store_context)
    try:
        with (
            RLM(
                model,
                sub_model,
                max_depth=max_depth,
                environment=environment,
                limits=limits,
                sinks=None if sink is None else [sink],
                route=route,
            ) as rlm,
            view,
        ):
            result = _watched(rlm, view, query, ctx, output_type)
    except RecursorError as exc:
        raise _fail(exit_code_for(exc), str(exc)) from None
    finally:
        if sink is not None:
            sink.close()
    code = exit_code_for(result.error) if result.answer is None else Exit.OK
    if json_out:
        from recursor.trace.jsonl import dumps  # strict JSON: a NaN cost is written as null

        print(
            dumps(
                {
                    "answer": result.answer,
                    "stop_reason": result.stop_reason,
                    "iterations": result.iterations,
                    "usage": result.usage.to_dict(),
                    "elapsed_s": round(result.elapsed_s, 3),
                    "error": None if result.error is None else str(result.error),
                    "run_id": result.run_id,
                    "output": result.output,
                    "route": None if result.route is None else asdict(result.route),
                },
                ensure_ascii=False,
            )
        )
    else:
        if schema is not None and result.error is None:
            # JSON escapes control characters (ensure_ascii), so this is safe on a terminal
            print(json.dumps(result.output))
        elif result.answer is not None:
            # the answer is model text: ESC sequences in it could write the clipboard (OSC 52)
            print(result.answer if raw else visible(result.answer))
        view.summary(result)
    raise typer.Exit(int(code))


def _install_hint(extra: str) -> str:
    """``(pip install "recursor[extra]")`` as rich markup: the brackets escaped, not a tag."""
    return escape(f'(pip install "recursor[{extra}]")')


@app.command()
def models() -> None:
    """List the configured and available models."""
    from rich.table import Table

    from recursor.lm import gguf_store
    from recursor.lm.registry import DEFAULT_MODEL, PROVIDERS

    out = Console()
    table = Table(title="models", show_lines=False)
    for col in ("model", "status", "notes"):
        table.add_column(col)
    default = os.environ.get("RECURSOR_MODEL", DEFAULT_MODEL)
    for name, emb in gguf_store.EMBEDDED_MODELS.items():
        tag = " (default)" if f"local:{name}" == default else ""
        notes = f"embedded GGUF, {emb.size / 2**30:.2f} GiB"
        table.add_row(f"local:{name}{tag}", _embedded_status(emb), notes)
    table.add_row("local:/path/model.gguf", "-", "any local GGUF file")
    for provider in PROVIDERS:
        if provider == "local":
            continue
        base = os.environ.get(f"{provider.upper()}_BASE_URL")
        status = _provider_status(provider, PROVIDERS[provider][0], base)
        table.add_row(f"{provider}:<model>", status, escape(base or ""))
    out.print(table)
    out.print(f"default root model: [bold]{escape(default)}[/] (set RECURSOR_MODEL or --model)")


def _embedded_status(emb: EmbeddedModel) -> str:
    from recursor.lm import gguf_store

    try:
        gguf_store.resolve_parts(emb)
    except RecursorError:  # not downloaded, or its runtime is missing
        return f"[yellow]not installed[/] {_install_hint(emb.extra)}"
    return "[green]installed[/]"


#: the key variable of the providers that have one
_KEY_VARS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def _provider_status(provider: str, module: str, base: str | None) -> str:
    """Whether ``provider``'s SDK ``module`` is installed, and its key or base URL set."""
    try:
        __import__(module)
    except ImportError:
        return f"[yellow]not installed[/] {_install_hint(provider)}"
    var = _KEY_VARS.get(provider)
    if var and os.environ.get(var):
        return f"[green]configured[/] ({var} set)"
    if base:
        return f"[green]configured[/] (base URL {escape(base)})"
    if var:
        return f"[yellow]no key[/] (set {var})"
    return "[green]installed[/] (keys per provider)"


from recursor.cli_trace import register as _register_trace_commands  # noqa: E402

_register_trace_commands(app)

from recursor.sandbox.doctor import register as _register_doctor  # noqa: E402

_register_doctor(app)

from recursor.bench.cli import register as _register_bench  # noqa: E402

_register_bench(app)

from recursor.cli_chat import register as _register_chat  # noqa: E402

_register_chat(app)
from recursor.cli_serve import register as _register_serve  # noqa: E402

_register_serve(app)
from recursor.cli_batch import register as _register_batch  # noqa: E402

_register_batch(app)
from recursor.cli_route import register as _register_route  # noqa: E402

_register_route(app)


def _watched(
    rlm: RLM, view: LiveView, query: str, ctx: ContextInput, output_type: object
) -> RLMResult:
    """The run, with the live view driven by its stream (token deltas and cells starting
    included); the stream's last event carries the result."""
    from recursor.streaming import Completed

    for event in rlm.stream(query, context=ctx, output_type=output_type):
        view.on_event(event)
        if isinstance(event, Completed):
            return event.result
    raise AssertionError("a stream ends with its result")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
