"""Text from the model, the context and the worker reaches a terminal as text: no ESC sequence
gets through (OSC 52 would write the user's clipboard), and no bracket is read as rich markup
(``[link=...]`` would become a live hyperlink, ``[/bold]`` would raise MarkupError).

The CLI runs as a child process whose stdout and stderr are a pseudo-terminal, so rich believes
it writes to a real one (live view on, styling on); the test reads the master side. Rich's own
styling escapes are allowed; the content's sequences are not.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from recursor import RLM, Limits
from recursor._terminal import visible
from recursor.cli_view import LiveView
from recursor.lm.stub_server import StubError, StubServer
from recursor.testing import ScriptedLM
from recursor.trace import LimitHit
from recursor.trace.console import ConsoleSink

from ..conftest import code

#: sequences a hostile text carries: clipboard write, window title, alternate screen, a
#: cursor report request; and markup that rich would act on
OSC52 = "\x1b]52;c;cHduZWQ=\x07"
TITLE = "\x1b]0;pwned\x07"
ALT_SCREEN = "\x1b[?1049h"
CURSOR_REPORT = "\x1b[6n"
MARKUP = "[link=https://evil.example/x]click[/link] [/bold] [bold red]loud"
HOSTILE = f"A{OSC52}B{TITLE}C{ALT_SCREEN}D{CURSOR_REPORT}E {MARKUP} \x9b31m \u202eevil"
#: byte strings that appear on the terminal only if the content's sequences got through
FORBIDDEN = [
    b"\x1b]52;",
    b"\x1b]0;pwned",
    b"\x1b[?1049h",
    b"\x1b[6n",
    b"\x07",
    b"\x1b]8;",  # an OSC 8 hyperlink: what [link=...] becomes when read as markup
    "\x9b".encode(),
    "\u202e".encode(),
]


def _hostile_model(messages: list[dict[str, str]]) -> str:
    """The root model: a cell whose code, stdout, stderr and worker fd 2 carry the hostile text
    (then the worker dies, so its stderr tail is quoted to the model); then an answer made of
    the hostile text and everything the model was told about that cell."""
    if messages[0]["role"] != "system":
        return HOSTILE  # a sub-model, if ever asked
    if len(messages) == 2:
        body = (
            f"# {HOSTILE}\n"
            "import os, sys\n"
            f"print({HOSTILE!r})\n"
            f"sys.stderr.write({HOSTILE!r})\n"
            "sys.stdout.flush(); sys.stderr.flush()\n"
            f"os.write(2, {HOSTILE!r}.encode())\n"
            "os._exit(3)"
        )
        return code(body, HOSTILE)
    told = messages[-1]["content"]
    return code(f"FINAL({HOSTILE!r} + ' | ' + {told!r})")


def _read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    out = bytearray()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every slave fd is closed (the child exited)
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            # drain what is left, then stop
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                break
    return bytes(out)


def _run_on_pty(args: list[str], server: StubServer, tmp_path: Path) -> tuple[int, bytes]:
    """``recursor ARGS`` with stdout and stderr on a pseudo-terminal; (exit code, bytes seen)."""
    master, slave = os.openpty()
    env = {
        **os.environ,
        "TERM": "xterm",
        "COLUMNS": "400",
        "LINES": "60",
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-secret",
    }
    for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "recursor.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=tmp_path,
        close_fds=True,
    )
    os.close(slave)
    try:
        seen = _read_all(master, proc, timeout=120)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, seen


#: what rich itself writes: SGR styling, line erase and cursor up (live view), cursor hide/show
_RICH_OWN = re.compile(r"\x1b\[[0-9;]*m|\x1b\[2K|\x1b\[1A|\x1b\[\?25[lh]|\r")


def _shown(seen: bytes) -> str:
    """The text a reader sees: the bytes without rich's own escapes."""
    return _RICH_OWN.sub("", seen.decode("utf-8", "replace"))


def _assert_clean(seen: bytes) -> None:
    for bad in FORBIDDEN:
        assert bad not in seen, (bad, seen[-3000:])
    text = seen.decode("utf-8", "replace")
    assert "MarkupError" not in text and "Traceback" not in text, text[-3000:]


@pytest.fixture
def hostile_server(stub_openai: Callable[..., StubServer]) -> StubServer:
    return stub_openai(_hostile_model)


def test_run_on_a_terminal_shows_hostile_text_as_text(
    hostile_server: StubServer, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx.txt"
    ctx.write_text(f"context says {HOSTILE}")
    args = ["run", f"q {MARKUP}", "-c", str(ctx), "-m", "openai:gpt-4o-mini"]
    code, seen = _run_on_pty([*args, "-e", "subprocess"], hostile_server, tmp_path)
    assert code == 0, seen.decode("utf-8", "replace")[-3000:]
    _assert_clean(seen)
    text = _shown(seen)
    # the sequences are there, made visible, and the markup is shown as typed
    assert "A\\x1b]52;c;cHduZWQ=\\x07B" in text
    assert "\\x1b[6n" in text and "\\x9b31m" in text and "\\u202eevil" in text
    assert MARKUP in text
    # the worker died after writing to its fd 2: its stderr tail reached the answer, visibly
    assert "stderr:" in text and text.count("A\\x1b]52;c;cHduZWQ=\\x07B") >= 3


def test_run_on_a_terminal_error_path(
    stub_openai: Callable[..., StubServer], tmp_path: Path
) -> None:
    """The provider's error quotes hostile text: the CLI's error line shows it as text."""

    def refuse(messages: list[dict[str, str]]) -> str:
        raise StubError(400, f"bad request: {HOSTILE}")

    server = stub_openai(refuse)
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("c")
    args = ["run", "q", "-c", str(ctx), "-m", "openai:gpt-4o-mini", "-e", "subprocess"]
    code, seen = _run_on_pty(args, server, tmp_path)
    assert code != 0, seen.decode("utf-8", "replace")[-3000:]
    _assert_clean(seen)
    text = _shown(seen)
    assert "A\\x1b]52;c;cHduZWQ=\\x07B" in text and MARKUP in text


def test_json_and_raw_keep_the_answer_exact(hostile_server: StubServer, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("c")
    base = ["run", "q", "-c", str(ctx), "-m", "openai:gpt-4o-mini", "-e", "subprocess"]
    res = subprocess.run(
        [sys.executable, "-m", "recursor.cli", *base, "--json"],
        capture_output=True,
        env={**os.environ, "OPENAI_BASE_URL": hostile_server.base_url},
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)["answer"]
    assert answer.startswith(HOSTILE + " | ")  # the exact answer, every control character kept
    assert b"\x1b" not in res.stdout  # JSON escapes them
    res = subprocess.run(
        [sys.executable, "-m", "recursor.cli", *base, "--raw", "-q"],
        capture_output=True,
        env={**os.environ, "OPENAI_BASE_URL": hostile_server.base_url},
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().startswith(HOSTILE + " | ")  # --raw: the bytes as they are
    res = subprocess.run(
        [sys.executable, "-m", "recursor.cli", *base, "-q"],
        capture_output=True,
        env={**os.environ, "OPENAI_BASE_URL": hostile_server.base_url},
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert b"\x1b" not in res.stdout and b"A\\x1b]52;" in res.stdout  # piped: still visible


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=300, force_terminal=True, color_system="truecolor"), buf


def _assert_text_clean(out: str) -> None:
    _assert_clean(out.encode())
    assert "A\\x1b]52;c;cHduZWQ=\\x07B" in _shown(out.encode())


def test_console_sink_shows_hostile_text_as_text() -> None:
    console, buf = _terminal()
    short = f"[/bold] [link=https://x]y A{OSC52}B{CURSOR_REPORT}"  # the tree clips long lines
    root = ScriptedLM([code(f"# {short}\nprint(1)\n1/0  # {HOSTILE}"), f"FINAL({short})"])
    with ConsoleSink(console) as sink:
        rlm = RLM(root, environment="inprocess", sinks=[sink], limits=Limits(cell_timeout_s=10))
        rlm.completion(f"q {short}", "c")
        sink(LimitHit(sink._roots[0], limit="max_tokens", message=HOSTILE))
        console.print(sink.render())
    out = buf.getvalue()
    _assert_text_clean(out)
    shown = _shown(out.encode())
    assert "# [/bold] [link=https://x]y A" in shown  # the cell's first line
    assert "✓ [/bold] [link=https://x]y A" in shown  # the answer
    assert f"limit hit: max_tokens · {visible(HOSTILE)}" in shown


def test_live_view_shows_hostile_text_as_text() -> None:
    console, buf = _terminal()
    view = LiveView(console, enabled=True)
    root = ScriptedLM([code(f"x = 1  # {HOSTILE}")] * 3)
    limits = Limits(max_iterations=2, cell_timeout_s=10)
    with view:
        rlm = RLM(root, environment="inprocess", sinks=[view.on_event], limits=limits)
        result = rlm.completion(f"q {HOSTILE}", "c")
        view.on_event(LimitHit(view.root_id or "", limit="max_tokens", message=HOSTILE))
        console.print(view.render())
    assert result.answer is None
    result.stop_reason = f"error {HOSTILE}"  # type: ignore[assignment]
    result.error = RuntimeError(HOSTILE)
    view.summary(result)
    out = buf.getvalue()
    _assert_text_clean(out)
    assert MARKUP in _shown(out.encode())


def test_replay_report_shows_hostile_text_as_text() -> None:
    from recursor.apps.replay import CellDiff, ReplayReport
    from recursor.cli_trace import _print_report

    diff = CellDiff("r1", 0, 1, 0, f"print(1)  # {HOSTILE}", "stdout", HOSTILE, f"{HOSTILE}!")
    report = ReplayReport(
        run_id=f"r1{MARKUP}",
        runs=1,
        cells=1,
        diffs=[diff],
        recorded_answer=HOSTILE,
        replayed_answer=MARKUP,
        recorded_stop=HOSTILE,
        replayed_stop="final",
        error=HOSTILE,
    )
    console, buf = _terminal()
    _print_report(console, report)
    out = buf.getvalue()
    _assert_text_clean(out)
    shown = _shown(out.encode())
    assert f"replay error: {visible(HOSTILE)}" in shown
    assert f"+{visible(HOSTILE)}!" in shown  # the diff's replayed line
    assert MARKUP in shown
