"""``recursor chat --context PATH``: a conversation with an RLM in the terminal.

One :class:`~recursor.conversation.Conversation` over the context; each line typed is an ask,
shown with the CLI's live view (:class:`~recursor.cli_view.LiveView`) while it runs. Line editing
and the up-arrow history come from prompt-toolkit. Commands: ``/usage``, ``/save FILE``,
``/trace FILE``, ``/quit`` (or Ctrl-D). Ctrl-C during an ask stops that ask (its cell is
interrupted, its sub-calls cancelled; a root model call already sent is waited for), not the
program; at the prompt it clears the line. ``--resume FILE`` continues a saved session.

Answers are model text: they are printed through :func:`recursor._terminal.visible`.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from recursor import _cli_options as opt
from recursor._terminal import markup_safe, visible
from recursor.errors import RecursorError

if TYPE_CHECKING:
    from recursor.conversation import Conversation
    from recursor.trace import Event

HELP = "/usage  /save FILE  /trace FILE  /quit   (Ctrl-C stops an ask, Ctrl-D quits)"


class _Views:
    """The RLM's one sink: keeps every recorded event of the session for ``/trace`` (the live
    view of an ask is driven by the ask's stream)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)


def register(app: typer.Typer) -> None:
    app.command()(chat)


def chat(  # noqa: PLR0913, PLR0917 - typer reads options from parameters
    context: Annotated[
        str | None, typer.Option("--context", "-c", help="A file or a directory.")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue a session saved with /save.")
    ] = None,
    model: opt.Model = None,
    sub_model: opt.SubModel = None,
    environment: opt.Environment = "subprocess",
    max_iterations: opt.MaxIterations = 30,
    cell_timeout: Annotated[float, typer.Option(min=0, help="Seconds for one cell.")] = 60.0,
) -> None:
    """Talk to an RLM about one context: its REPL lives on between questions."""
    from recursor._cli_options import load_context
    from recursor.errors import ContextError
    from recursor.limits import Limits
    from recursor.rlm import RLM

    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        ctx = load_context(context)
    except ContextError as exc:
        err.print(f"[red]error:[/] {markup_safe(str(exc))}")
        raise typer.Exit(3) from None
    _take_back_ctrl_c()
    views = _Views()
    limits = Limits(max_iterations=max_iterations, cell_timeout_s=cell_timeout)
    try:
        with RLM(model, sub_model, environment=environment, limits=limits, sinks=[views]) as rlm:
            conv = (
                rlm.session(context=ctx)
                if resume is None
                else rlm.resume(resume, context=ctx if context is not None else None)
            )
            with conv:
                if conv.resume_report is not None:
                    _print_resume(out, conv)
                _loop(conv, views, out, err)
    except RecursorError as exc:
        err.print(f"[red]error:[/] {markup_safe(str(exc))}")
        raise typer.Exit(1) from None


def _take_back_ctrl_c() -> None:
    # A shell that starts a program in the background without job control (`cmd &` in a
    # script, nohup, some CI runners) sets SIGINT to "ignore", and Python then installs no
    # KeyboardInterrupt handler: Ctrl-C typed into the chat's terminal would be dropped and the
    # ask could not be stopped. A chat on a terminal is interactive, so it takes Ctrl-C back.
    if sys.stdin.isatty() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _print_resume(out: Console, conv: Conversation) -> None:
    report = conv.resume_report
    assert report is not None
    out.print(
        f"[dim]resumed {len(conv.history)} asks, {len(report.cells)} cells replayed "
        f"({report.answered} sub-call answers from the file, no model calls)[/]"
    )
    if report.stale:
        out.print(f"[yellow]may be stale:[/] {markup_safe(', '.join(report.stale))}")


def _loop(conv: Conversation, views: _Views, out: Console, err: Console) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import InMemoryHistory

    prompt: PromptSession[str] = PromptSession(history=InMemoryHistory())
    out.print(f"[dim]{HELP}[/]")
    while True:
        try:
            line = prompt.prompt("chat> ").strip()
        except KeyboardInterrupt:
            continue  # clears the line
        except EOFError:
            return
        if not line:
            continue
        if line.startswith("/"):
            if _command(line, conv, views, out):
                return
            continue
        _ask(line, conv, err, out)


def _command(line: str, conv: Conversation, views: _Views, out: Console) -> bool:
    """Run a slash command; True to quit."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit"):
        return True
    if name == "/usage":
        u = conv.usage.total
        cost = "unknown" if u.cost_usd is None else f"${u.cost_usd:.4f}"
        out.print(
            f"{len(conv.history)} asks · {u.calls} model calls · "
            f"{u.input_tokens:,} in / {u.output_tokens:,} out · cost {cost}"
        )
    elif name in ("/save", "/trace") and not arg:
        out.print(f"usage: {name} FILE")
    elif name == "/save":
        try:
            path = conv.save(arg)
        except OSError as exc:
            out.print(f"[red]cannot save:[/] {markup_safe(str(exc))}")
        else:
            out.print(f"saved to {markup_safe(str(path))}")
    elif name == "/trace":
        from recursor.trace.jsonl import write_events

        try:
            path = write_events(arg, list(views.events))
        except OSError as exc:
            out.print(f"[red]cannot write:[/] {markup_safe(str(exc))}")
        else:
            out.print(f"trace written to {markup_safe(str(path))}")
    else:
        out.print(f"unknown command {markup_safe(name)}; {HELP}")
    return False


def _ask(question: str, conv: Conversation, err: Console, out: Console) -> None:
    from recursor.cli_view import LiveView
    from recursor.streaming import Completed

    view = LiveView(err, enabled=err.is_terminal)
    box: list[Any] = []
    # an Event, not Thread.join: a join interrupted by Ctrl-C can leave the thread's state
    # wrong (is_alive() False while it still runs)
    done = threading.Event()

    def work() -> None:
        # the ask's stream drives the view (token deltas, cells starting); Ctrl-C stops the
        # ask through conv.stop(), which also abandons a root model call in flight
        try:
            for event in conv.stream(question):
                view.on_event(event)
                if isinstance(event, Completed):
                    box.append(event.result)
        except BaseException as exc:
            box.append(exc)
        finally:
            done.set()

    with view:
        threading.Thread(target=work, daemon=True).start()
        while not done.is_set():
            try:
                done.wait(0.1)
            except KeyboardInterrupt:
                conv.stop("stopped with Ctrl-C")
                err.print("[yellow]stopping this ask…[/]")
    got = box[0]
    if isinstance(got, BaseException):
        err.print(f"[red]error:[/] {markup_safe(str(got))}")
        return
    if got.answer is not None:
        out.print(visible(got.answer), markup=False)
    view.summary(got)
