"""The caller's tools through RLM runs, in the in-process and the subprocess environments:
calls in a loop, async tools, failures, timeouts, JSON only, names, the budget and its limit."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from recursor import Limits
from recursor.errors import ToolNameError
from recursor.prompts import PromptSettings, system_prompt
from recursor.rlm import RLMResult
from recursor.testing import FunctionLM, ScriptedLM
from recursor.tools import Tool, ToolBox
from recursor.trace import LimitHit, ToolCalled
from tests.conftest import code, make_rlm


@pytest.fixture(params=["inprocess", "subprocess"])
def env(request: pytest.FixtureRequest) -> str:
    """Tools sit above the sandbox seam: a direct call, and a worker's tool_call frames."""
    return str(request.param)


def add(a: int, b: int = 1) -> int:
    """Add two integers.

    This second paragraph is not shown to the model.
    """
    return a + b


def run(env: str, cells: list[str], tools: list[Any], **kw: Any) -> RLMResult:
    """Run the scripted root (one reply per cell, then FINAL(none)) with ``tools``."""
    root = ScriptedLM([code(c) for c in cells] + ["FINAL(none)"])
    with make_rlm(env, root, tools=tools, **kw) as rlm:
        return rlm.completion("q", "ctx")


def cells_text(result: RLMResult) -> str:
    return "\n".join(
        e.stdout + (e.error or "") for e in result.trace.events if e.type == "cell_ran"
    )


def tool_events(result: RLMResult) -> list[ToolCalled]:
    return [e for e in result.trace.events if isinstance(e, ToolCalled)]


def test_a_tool_called_50_times_in_a_loop_from_one_cell(env: str) -> None:
    result = run(env, ["t = 0\nfor i in range(50):\n    t = add(t, i)\nFINAL(t)"], [add])
    assert result.answer == str(sum(range(50))), result.error
    events = tool_events(result)
    assert len(events) == 50
    assert {e.name for e in events} == {"add"} and all(e.error is None for e in events)
    assert events[-1].arguments == "[[1176, 49], {}]" and events[-1].result == "1225"


def test_an_async_tool(env: str) -> None:
    async def shout(text: str, times: int = 1) -> str:
        """Upper-case ``text``."""
        await asyncio.sleep(0.01)
        return text.upper() * times

    result = run(env, ["FINAL(shout('ab', times=2) + shout(text='c'))"], [shout])
    assert result.answer == "ABABC", result.error


def test_a_tool_that_raises_raises_in_the_cell_and_the_run_goes_on(env: str) -> None:
    def lookup(key: str) -> str:
        raise KeyError(f"no user {key}")

    body = (
        "try:\n    lookup('bob')\nexcept Exception as e:\n"
        "    print(type(e).__name__, '|', e)\nlookup('eve')"
    )
    result = run(env, [body, "FINAL('went on')"], [lookup])
    assert result.answer == "went on"
    shown = cells_text(result)
    assert "ToolError | tool 'lookup' raised KeyError: 'no user bob'" in shown
    assert "ToolError: tool 'lookup' raised KeyError: 'no user eve'" in shown
    assert [e.error is not None for e in tool_events(result)] == [True, True]


def test_a_sync_tool_past_its_timeout_is_abandoned(env: str) -> None:
    release = threading.Event()

    def hang() -> str:
        release.wait(20)
        return "late"

    t0 = time.monotonic()
    try:
        result = run(env, ["hang()"], [Tool(hang, timeout_s=0.3)])
    finally:
        release.set()
    assert time.monotonic() - t0 < 8
    shown = cells_text(result)
    assert "ToolTimeout: tool 'hang' ran past its timeout_s=0.3 and was abandoned" in shown


def test_an_async_tool_past_its_timeout_is_cancelled(env: str) -> None:
    cancelled = threading.Event()

    async def stall() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    result = run(env, ["stall()"], [Tool(stall, timeout_s=0.3)])
    assert "ToolTimeout: tool 'stall' ran past its timeout_s=0.3 and was cancelled" in (
        cells_text(result)
    )
    assert cancelled.wait(5), "the tool's task was not cancelled"


def test_values_json_cannot_carry_are_clear_errors_in_the_cell(env: str) -> None:
    seen: list[Any] = []

    def echo(value: Any) -> Any:
        seen.append(value)
        return value

    def give_set() -> Any:
        return {1, 2}

    body = (
        "for v in [{1, 2}, b'x', float('nan'), {1: 'a'}, object()]:\n"
        "    try:\n        echo(v)\n    except TypeError as e:\n        print('E', e)\n"
        "print(echo((1, [2.5, None, True], {'k': 'v'})))\n"
        "give_set()"
    )
    result = run(env, [body], [echo, give_set])
    shown = cells_text(result)
    assert "E echo(): argument list[0] is a set, which JSON cannot carry" in shown
    assert "is a bytes, which JSON cannot carry" in shown
    assert "is nan, which JSON cannot carry" in shown
    assert "has a key of type int; JSON keys are str" in shown
    assert "is a object, which JSON cannot carry" in shown
    # a tuple crosses as a list, like JSON carries it, in every environment
    assert "[1, [2.5, None, True], {'k': 'v'}]" in shown
    assert seen == [[1, [2.5, None, True], {"k": "v"}]]
    assert "ToolError: the result of tool 'give_set' is a set, which JSON cannot carry" in shown


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("context", "shadow the REPL's own"),
        ("FINAL", "shadow the REPL's own"),
        ("llm_query", "shadow the REPL's own"),
        ("budget", "shadow the REPL's own"),
        ("input", "shadow the REPL's own"),
        ("print", "shadow a Python builtin"),
        ("len", "shadow a Python builtin"),
        ("class", "a Python keyword"),
        ("match", "a Python keyword"),
        ("1st", "not a Python identifier"),
        ("a-b", "not a Python identifier"),
    ],
)
def test_a_name_that_shadows_or_cannot_be_bound_is_refused(name: str, why: str) -> None:
    with pytest.raises(ToolNameError, match=why):
        Tool(add, name=name)


def test_a_function_named_like_a_builtin_and_two_tools_of_one_name_are_refused() -> None:
    def format(x: str) -> str:
        return x

    with pytest.raises(ToolNameError, match="builtin"):
        ToolBox([format])
    with pytest.raises(ToolNameError, match="two tools are named 'add'"):
        ToolBox([add, Tool(lambda a: a, name="add")])
    root = ScriptedLM([])
    with pytest.raises(ToolNameError):
        make_rlm("inprocess", root, tools=[Tool(add, name="FINAL_VAR")])


def test_the_prompt_shows_each_tool_and_budget_in_both_styles() -> None:
    async def search(query: str, k: int = 5) -> list[str]:
        """Search the web.

        Not shown.
        """
        return []

    lines = tuple(ToolBox([add, search]).prompt_lines())
    from recursor.context import describe

    meta = describe("ctx")
    for style in ("full", "compact"):
        s = PromptSettings(30, 20_000, llm=True, rlm="plain", style=style, budget=True, tools=lines)
        text = system_prompt(meta, s)
        assert "- `add(a: int, b: int = 1) -> int`: Add two integers." in text
        assert "- `search(query: str, k: int = 5) -> list[str]`: Search the web." in text
        assert "Not shown" not in text and "not shown to the model" not in text
        assert "`budget()`" in text
    plain = system_prompt(meta, PromptSettings(30, 20_000, llm=True, rlm="plain", budget=False))
    assert "budget()" not in plain and "Your own tools" not in plain


def test_budget_decreases_as_sub_calls_run(env: str) -> None:
    body = (
        "b0 = budget()\nllm_query('one')\nb1 = budget()\nllm_query_batched(['a', 'b', 'c'])\n"
        "b2 = budget()\nprint([b['subcalls'] for b in (b0, b1, b2)])\n"
        "print([b['tokens'] for b in (b0, b1, b2)])\nprint(b2)"
    )
    result = run(
        env,
        [body, "print(budget()['iterations'])"],
        [],
        sub=FunctionLM(lambda chat: "ok"),
        limits=Limits(max_subcalls=10, max_tokens=100_000, timeout_s=60, max_iterations=5),
    )
    shown = cells_text(result)
    assert "[10, 9, 6]" in shown
    tokens = eval(shown.splitlines()[1])  # three ints, as printed by the cell
    assert tokens[0] > tokens[1] > tokens[2] and tokens[0] <= 100_000
    last = eval(shown.splitlines()[2])
    assert set(last) == {
        "iterations",
        "depth",
        "subcalls",
        "tool_calls",
        "tokens",
        "cost_usd",
        "seconds",
    }
    assert last["iterations"] == 4 and last["depth"] == 1 and last["cost_usd"] is None
    assert 0 < last["seconds"] <= 60
    # the second turn: one more iteration used
    assert shown.splitlines()[-1] == "3"


def test_max_tool_calls_is_enforced_over_the_tree(env: str) -> None:
    body = (
        "ok = 0\nfor i in range(12):\n    try:\n        add(i)\n        ok += 1\n"
        "    except Exception as e:\n        err = f'{type(e).__name__}: {e}'\n"
        "print(ok, budget()['tool_calls'])\nprint(err)"
    )
    result = run(env, [body], [add], limits=Limits(max_tool_calls=5, cell_timeout_s=10))
    shown = cells_text(result)
    assert "5 0" in shown
    assert "ToolLimitExceeded: max_tool_calls=5: every tool call was used" in shown
    assert len(tool_events(result)) == 5
    # the limit is traced once, not once per refused call
    assert len([e for e in result.trace.events if isinstance(e, LimitHit)]) == 1


def test_a_tool_cannot_be_rebound_by_model_code(env: str) -> None:
    result = run(env, ["add = lambda a, b=1: 'forged'", "FINAL(add(1, 2))"], [add])
    assert result.answer == "3"
    assert "`add` is protected; it was restored after this cell." in str(result.trace.events)


def test_closing_the_rlm_stops_the_tool_loop() -> None:
    root = ScriptedLM([code("FINAL(add(1))")])
    rlm = make_rlm("inprocess", root, tools=[add])
    assert rlm.completion("q", "c").answer == "2"
    loop = rlm.tools._loop
    assert loop is not None
    rlm.close()
    loop._thread.join(5)
    assert not loop._thread.is_alive()


def test_tools_in_acompletion_and_in_a_child_run() -> None:
    calls: list[str] = []

    def note(who: str) -> str:
        """Record who called."""
        calls.append(who)
        return who.upper()

    child = ScriptedLM([code("FINAL(note('child'))")])
    root = ScriptedLM([code("a = note('root')\nb = rlm_query('go', context='c')\nFINAL(a + b)")])
    with make_rlm("subprocess", root, tools=[note], max_depth=2, models_by_depth={1: child}) as rlm:
        result = asyncio.run(rlm.acompletion("q", "ctx"))
    assert result.answer == "ROOTCHILD", result.error
    assert calls == ["root", "child"]
    depths = [e.depth for e in tool_events(result)]
    assert depths == [0, 1]
    assert "`note(who: str) -> str`: Record who called." in child.calls[0][0]["content"]


def test_model_code_and_a_tool_share_no_object_in_process() -> None:
    kept: list[list[int]] = []

    def keep(items: list[int]) -> list[int]:
        kept.append(items)
        return items

    body = "mine = [1, 2]\nback = keep(mine)\nmine.append(3)\nback.append(4)\nFINAL(back)"
    result = run("inprocess", [body], [keep])
    assert result.answer == "[1, 2, 4]"
    assert kept == [[1, 2]]  # neither model code's append nor its edit of the result reached it


def test_a_cell_out_of_time_while_a_tool_runs_stops_and_the_run_goes_on(env: str) -> None:
    release = threading.Event()

    def wait() -> str:
        release.wait(20)
        return "late"

    t0 = time.monotonic()
    try:
        result = run(
            env,
            ["wait()", "FINAL('next: ' + str(add(1)))"],
            [Tool(wait, timeout_s=15), add],
            limits=Limits(cell_timeout_s=1),
        )
    finally:
        release.set()
    assert time.monotonic() - t0 < 10
    assert result.answer == "next: 2", result.error
    cells = [e for e in result.trace.events if e.type == "cell_ran"]
    assert cells[0].timed_out
