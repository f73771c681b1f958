"""``recursor chat`` through a pseudo-terminal (pexpect): two questions where the second uses
the first one's variable, Ctrl-C stopping an ask (not the program), /usage, /save, the
up-arrow history and /quit; models are a stub OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from recursor.lm.stub_server import StubServer


def root(messages: list[dict[str, str]]) -> str:
    question = messages[1]["content"]
    if "sleep" in question:
        return "```repl\nimport time\ntime.sleep(60)\n```" if len(messages) == 2 else "FINAL(woke)"
    if "double" in question:
        return "```repl\nFINAL(n * 2)\n```"
    return "```repl\nn = len(context)\n```" if len(messages) == 2 else "FINAL_VAR(n)"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
# "ignored": started as a background job of a shell without job control (a script's `cmd &`,
# nohup, a CI runner) the chat inherits SIGINT set to "ignore"; Ctrl-C must still stop an ask
@pytest.mark.parametrize("inherited_sigint", ["default", "ignored"])
def test_chat_two_questions_ctrl_c_save_and_history(
    stub_openai: Callable[..., StubServer], tmp_path: Path, inherited_sigint: str
) -> None:
    server = stub_openai(root)
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("z" * 50)
    saved = tmp_path / "chat.json"
    env = dict(os.environ, OPENAI_BASE_URL=server.base_url, TERM="xterm", COLUMNS="100")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "recursor.cli", "chat", "-c", str(ctx), "-m", "openai:gpt-4o-mini"],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 100),
        preexec_fn=_ignore_sigint if inherited_sigint == "ignored" else _default_sigint,
    )
    try:
        child.expect("/quit")
        child.expect("chat>")
        child.sendline("how long is it?")
        child.expect(r"(?<!\d)50(?!\d)")
        child.expect("chat>")
        child.sendline("double that")
        child.expect(r"(?<!\d)100(?!\d)")  # n from the first ask, still in the REPL
        child.expect("chat>")
        child.sendline("now sleep")
        child.expect("iterations")  # the live view of the running ask
        child.sendcontrol("c")
        child.expect("stopping this ask")
        child.expect("chat>")
        assert child.isalive()  # Ctrl-C stopped the ask, not the program
        child.sendline("/usage")
        child.expect("3 asks")
        child.expect("chat>")
        child.sendline(f"/save {saved}")
        child.expect("saved to")
        child.expect("chat>")
        saved.unlink()
        child.send("\x1b[A")  # up-arrow: the last line again
        child.send("\r")
        child.expect("saved to")
        child.expect("chat>")
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    data = json.loads(saved.read_text())
    asks = [e for e in data["log"] if e["kind"] == "ask"]
    assert [a["answer"] for a in asks] == ["50", "100", None]
    assert asks[2]["stop_reason"] == "error"
