"""Save and resume (issue 13, point 2): a session saved, its process killed with SIGKILL, then
resumed in another process with zero model calls, and a third ask using ask 1's variable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recursor.errors import ResumeError
from recursor.testing import FunctionLM, ScriptedLM
from tests.conftest import code, make_rlm

ENVS = ["inprocess", "subprocess"]
CONTEXT = "alpha beta gamma delta"

_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from recursor import RLM, Limits
    from recursor.sandbox import InProcessEnvironment
    from recursor.testing import FunctionLM, ScriptedLM

    env = sys.argv[1]
    path = sys.argv[2]
    root = ScriptedLM([
        "```repl\\nwords = context.split()\\nsummary = llm_query('name ' + words[0])\\n"
        "print(len(words), summary)\\n```",
        "FINAL_VAR(summary)",
        "```repl\\nlast = words[-1].upper()\\nprint(last)\\n```",
        "FINAL_VAR(last)",
    ])
    sub = FunctionLM(lambda m: "the first word is " + m[-1]["content"].split()[-1])
    environment = InProcessEnvironment(trusted=True) if env == "inprocess" else env
    rlm = RLM(root, sub, environment=environment, limits=Limits(cell_timeout_s=10))
    s = rlm.session(context=CONTEXT)
    s.ask("What is the first word?")
    s.save(path)
    s.ask("And the last, upper-cased?")
    s.save(path)
    print("saved", flush=True)
    time.sleep(60)  # killed here, between asks, with the worker still running
    """
).replace("CONTEXT", repr(CONTEXT))


@pytest.mark.parametrize("env", ENVS)
def test_save_kill_9_resume_then_ask_3_uses_ask_1_variable(env: str, tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, env, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "saved", proc.stderr.read() if proc.stderr else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    assert not list(tmp_path.glob(".session.json.*"))  # no temporary file left behind

    root = ScriptedLM([code("print(summary, last, len(words))\nFINAL(summary + ' / ' + last)")])
    sub = FunctionLM(lambda m: "a sub-call was made")
    with make_rlm(env, root, sub) as rlm:
        s = rlm.resume(path, context=CONTEXT)
        # zero model calls during the resume: the sub-call was answered from the record
        assert root.calls == [] and sub.calls == 0
        report = s.resume_report
        assert report is not None and report.ok and report.stale == []
        assert report.answered == 1 and [c.status for c in report.cells] == ["same", "same"]
        assert [h["answer"] for h in s.history] == ["the first word is alpha", "DELTA"]
        r3 = s.ask("Both, please")
        s.close()
    assert r3.answer == "the first word is alpha / DELTA"
    assert sub.calls == 0
    assert "Q2: And the last, upper-cased?" in root.calls[0][1]["content"]


@pytest.mark.parametrize("env", ENVS)
def test_a_cell_that_reads_the_clock_is_reported_stale(env: str, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    root = ScriptedLM(
        [
            code("import time\nstamp = time.time()\nprint(stamp)"),
            code("n = 3\nprint(n)"),
            "FINAL(ok)",
        ]
    )
    with make_rlm(env, root) as rlm, rlm.session(context="x") as s:
        s.ask("q")
        s.save(path)
    time.sleep(0.01)
    root2 = ScriptedLM([code("FINAL(n)")])
    with make_rlm(env, root2) as rlm:
        s = rlm.resume(path, context="x")
        report = s.resume_report
        assert report is not None
        assert report.stale == ["stamp", "time"]
        assert [c.status for c in report.cells] == ["differs", "same"]
        assert s.ask("n?").answer == "3"
        s.close()
    told = root2.calls[0][1]["content"]
    assert "may be stale" in told and "`stamp`" in told


def test_resume_checks_the_context_and_can_carry_it(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with make_rlm("inprocess", ScriptedLM(["FINAL(a)"])) as rlm, rlm.session(context="abc") as s:
        s.add_context(["x", "y"])
        s.ask("q")
        s.save(path)
        s.save(tmp_path / "full.json", include_context=True)
    with make_rlm("inprocess", ScriptedLM([code("FINAL(context + context_1[1])")])) as rlm:
        with pytest.raises(ResumeError, match="sha256"):
            rlm.resume(path, context="abd")
        with pytest.raises(ResumeError, match="contexts="):
            rlm.resume(path, context="abc")
        with pytest.raises(ResumeError, match="context_1"):
            rlm.resume(path, context="abc", contexts=[["x", "z"]])
        s = rlm.resume(tmp_path / "full.json")  # the file carries both
        assert s.ask("q2").answer == "abcy"
        s.close()
    assert json.loads((tmp_path / "full.json").read_text())["log"][0]["value"] == "abc"


def test_a_bad_file_is_a_resume_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with make_rlm("inprocess", ScriptedLM([])) as rlm:
        with pytest.raises(ResumeError):
            rlm.resume(bad, context="x")
        with pytest.raises(ResumeError):
            rlm.resume(tmp_path / "missing.json", context="x")
