"""Model code forging tool calls: past the REPL's checks, straight onto its worker's channel.

Unknown names, arguments over the size limit and floods each get an error answer; the host
does not raise, block, or start a thread per forged call, and the run goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from recursor import Limits
from recursor.sandbox.base import Environment
from recursor.sandbox.session import MAX_IN_FLIGHT
from recursor.testing import FunctionLM
from recursor.tools import Tool

from ..conftest import code, make_rlm
from ._host import FORGE, RSS_BOUND_MB, _Sampler

#: model code that calls its worker's own tool-call method, skipping the REPL's checks
BYPASS = """\
import gc
from recursor.sandbox.hostcall import ToolRequest
w = next(o for o in gc.get_objects() if type(o).__name__ == 'Worker')
def raw(name, *args):
    r = w.call_tool(ToolRequest(name, list(args), {}))
    return (r.error_type, (r.error or '')[:90], r.value)
print(raw('no_such_tool'))
print(raw('__import__', 'os'))
print(raw('echo', 'x' * 5_000_000))
print(raw('echo', 'fine'))
"""

FLOOD = (
    FORGE
    + "for i in range(2000):\n"
    + "    frame({'op': 'tool_call', 'id': 10**6 + i,"
    + " 'request': {'name': 'slow', 'args': [i], 'kwargs': {}}})\n"
    + "time.sleep(1.0)\nprint('sent')\n"
)


def _run(factory: Callable[[], Environment], cells: list[str], tools: list[object]) -> tuple:
    replies = [code(c) for c in cells]
    shown: list[str] = []

    def root(messages: list[dict[str, str]]) -> str:
        if len(messages) > 2:
            shown.append(messages[-1]["content"])
        return replies.pop(0)

    env = factory()
    rlm = make_rlm(env, FunctionLM(root), tools=tools, limits=Limits(cell_timeout_s=20))  # type: ignore[arg-type]
    sampler = _Sampler()
    try:
        result = rlm.completion("q", context="ctx")
    finally:
        sampler.stop()
        rlm.close()
        env.close()
    return result, shown, sampler


def test_forged_names_and_huge_arguments_get_clean_errors(
    isolating: Callable[[], Environment],
) -> None:
    def echo(x: str) -> str:
        return x

    result, shown, _ = _run(isolating, [BYPASS, "FINAL('alive: ' + context)"], [echo])
    assert result.answer == "alive: ctx", result.error
    out = shown[0]
    assert "('ToolError', \"no tool named 'no_such_tool' (tools: echo)\", None)" in out
    assert "no tool named '__import__'" in out
    assert "the arguments of tool 'echo' is 5,000,010 bytes of JSON; the limit is" in out
    assert "(None, '', 'fine')" in out


def test_a_flood_of_forged_tool_calls_gets_no_host_thread_each(
    isolating: Callable[[], Environment],
) -> None:
    running = [0, 0]  # now, peak
    lock = threading.Lock()

    def slow(i: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return i

    result, shown, sampler = _run(
        isolating, [FLOOD, "FINAL('alive: ' + context)"], [Tool(slow, timeout_s=5)]
    )
    assert result.answer == "alive: ctx", result.error
    assert "sent" in shown[0]
    assert running[1] <= MAX_IN_FLIGHT, f"{running[1]} tool calls ran at once"
    assert sampler.threads - sampler.base_threads <= MAX_IN_FLIGHT + 16
    assert sampler.rss - sampler.base_rss < RSS_BOUND_MB
