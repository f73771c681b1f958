"""The environment contract: every environment must pass these, on the fakes."""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from pathlib import Path

import pytest

from recursor import Limits
from recursor.errors import RunAborted, ScriptExhausted
from recursor.lm.base import Completion
from recursor.protocol import cut_marker
from recursor.testing import FunctionLM, ScriptedLM
from recursor.trace import CellRan, ModelCalled, RunFinished, RunStarted, SubcallMade

from .conftest import code, make_rlm


def upper_sub() -> FunctionLM:
    # "up: text" -> "TEXT" (exactly the text after ": ", so chunks join back losslessly)
    return FunctionLM(lambda m: m[-1]["content"].split(": ", 1)[1].upper(), name="upper")


def last_observation(lm: ScriptedLM) -> str:
    return lm.calls[-1][-1]["content"]


def test_chunk_batch_final_var(env: str) -> None:
    text = "".join(f"word{i} " for i in range(200))
    root = ScriptedLM(
        [
            code("print(type(context).__name__, len(context))"),
            code(
                "chunks = [context[i:i + 100] for i in range(0, len(context), 100)]\n"
                "parts = llm_query_batched([f'up: {c}' for c in chunks])\n"
                "joined = ''.join(parts)\n"
                "print(len(parts))"
            ),
            "The answer is ready.\nFINAL_VAR(joined)",
        ]
    )
    sub = upper_sub()
    result = make_rlm(env, root, sub).completion("uppercase the text", context=text)
    assert result.stop_reason == "final"
    assert result.answer == text.upper()
    assert result.iterations == 3
    n_chunks = (len(text) + 99) // 100
    assert sub.calls == n_chunks
    # usage: 3 root calls + one call per chunk, each batch item counted once
    assert result.usage.total.calls == 3 + n_chunks
    assert result.usage.by_model["upper"].calls == n_chunks
    assert result.usage.by_model["scripted"].calls == 3
    assert result.usage.total.cost_usd is None
    assert "str 1" in root.calls[1][-1]["content"]  # the probe's output came back
    root.assert_complete()


def test_namespace_persists_and_echo(env: str) -> None:
    root = ScriptedLM([code("x = 41"), code("x + 1"), code("FINAL(x * 2)")])
    result = make_rlm(env, root).completion("q", context="c")
    assert result.answer == "82"
    assert "42" in root.calls[2][-1]["content"]


def test_several_blocks_run_in_order(env: str) -> None:
    reply = code("a = 'first'") + "then\n" + code("a += ' second'\nprint(a)")
    root = ScriptedLM([reply, code("FINAL(a)")])
    result = make_rlm(env, root).completion("q", context="c")
    assert result.answer == "first second"
    obs = root.calls[1][-1]["content"]
    assert "[cell 1]" in obs and "[cell 2]" in obs and "first second" in obs


def test_final_in_code_stops_remaining_blocks(env: str) -> None:
    reply = code("FINAL('done')") + code("raise SystemExit('must not run')")
    result = make_rlm(env, ScriptedLM([reply])).completion("q", context="c")
    assert result.answer == "done"
    assert len(result.trace.of(CellRan)) == 1


def test_answer_dict(env: str) -> None:
    root = ScriptedLM([code("answer['content'] = 'from dict'"), code("answer['ready'] = True")])
    result = make_rlm(env, root).completion("q", context="c")
    assert result.answer == "from dict"
    assert result.iterations == 2


def test_printed_final_is_not_an_answer(env: str) -> None:
    root = ScriptedLM([code("print('FINAL(42)')"), "FINAL(43)"])
    result = make_rlm(env, root).completion("q", context="c")
    assert result.answer == "43"
    assert result.iterations == 2


def test_reserved_names_restored(env: str) -> None:
    root = ScriptedLM(
        [
            code("context = 'overwritten'\nllm_query = None\nanswer = 5"),
            code("FINAL(context + str(callable(llm_query)) + str(answer))"),
        ]
    )
    result = make_rlm(env, root).completion("q", context="orig")
    assert result.answer == "origTrue{'content': None, 'ready': False}"
    obs = root.calls[1][-1]["content"]
    assert "`context` is protected" in obs and "`llm_query` is protected" in obs


def test_traceback_and_stderr(env: str) -> None:
    root = ScriptedLM(
        [
            code("import sys\nprint('to err', file=sys.stderr)\ndef f():\n    return 1 / 0\nf()"),
            "FINAL(ok)",
        ]
    )
    make_rlm(env, root).completion("q", context="c")
    obs = root.calls[1][-1]["content"]
    assert "stderr:\nto err" in obs
    assert "Traceback" in obs and "ZeroDivisionError: division by zero" in obs
    assert "return 1 / 0" in obs  # source lines of the cell are shown
    assert "recursor/sandbox" not in obs  # our frames are not


@pytest.mark.parametrize("environment", ["inprocess", "subprocess"])
def test_failed_subcall_traceback_shows_only_model_code(environment: str) -> None:
    import recursor

    def down(messages: list[dict[str, str]]) -> str:
        raise ConnectionError("sub-model down")

    root = ScriptedLM(
        [
            code("def ask():\n    return llm_query('hi')\nask()"),
            code(
                "import json\ntry:\n    llm_query('hi')\nexcept Exception as e:\n"
                "    raise ValueError('wrapped') from e"
            ),
            code("json.loads('{')"),
            "FINAL(ok)",
        ]
    )
    make_rlm(environment, root, FunctionLM(down, name="sub")).completion("q", context="c")
    package = str(Path(recursor.__file__).parent)
    for i, (shown, needs) in enumerate(
        [
            ("return llm_query('hi')", "sub-model down"),
            ("raise ValueError('wrapped') from e", "ValueError: wrapped"),
            ("json.loads('{')", "JSONDecodeError: Expecting property name"),
        ],
        start=1,
    ):
        obs = root.calls[i][-1]["content"]
        assert shown in obs and needs in obs and 'File "<cell' in obs
        assert package not in obs and 'File "/' not in obs  # no frame from a file of the host


def test_syntax_error_is_reported(env: str) -> None:
    root = ScriptedLM([code("def broken(:\n  pass"), "FINAL(x)"])
    make_rlm(env, root).completion("q", context="c")
    assert "SyntaxError" in last_observation(root)


def test_no_code_gets_corrective_observation(env: str) -> None:
    root = ScriptedLM(["I think the answer is 42.", "FINAL(42)"])
    result = make_rlm(env, root).completion("q", context="c")
    assert result.answer == "42"
    assert "no ```repl code block" in root.calls[1][-1]["content"]


def test_unclosed_fence_runs_unless_cut_off(env: str) -> None:
    # a model that stopped by itself after an unclosed block: the block runs
    root = ScriptedLM(["```repl\nx = 6 * 7\nprint(x)\n", "FINAL_VAR(x)"])
    assert make_rlm(env, root).completion("q", context="c").answer == "42"
    assert "42" in root.calls[1][-1]["content"]

    # a reply cut off by max_tokens ("length") does not run half a block
    class Truncated(ScriptedLM):
        def complete(self, messages: list[dict[str, str]]) -> Completion:
            done = super().complete(messages)
            return Completion(done.text, done.usage, "length" if "```" in done.text else "stop")

    cut = Truncated(["```repl\nimport os\nos.remove('/", "FINAL(x)"])
    make_rlm(env, cut).completion("q", context="c")
    assert "cut off" in cut.calls[1][-1]["content"]


def test_final_var_text_for_missing_variable(env: str) -> None:
    root = ScriptedLM(
        ["FINAL_VAR(nothing_here)", code("nothing_here = 'now'"), "FINAL_VAR(nothing_here)"]
    )
    result = make_rlm(env, root).completion("q", context="c")
    assert result.answer == "now"
    assert "named no variable" in root.calls[1][-1]["content"]


def test_final_var_after_code_in_same_reply(env: str) -> None:
    root = ScriptedLM([code("res = 'x' * 3") + "FINAL_VAR(res)"])
    assert make_rlm(env, root).completion("q", context="c").answer == "xxx"


def test_one_megabyte_print_is_cut(env: str) -> None:
    root = ScriptedLM([code("print('a' * 1_000_000 + 'END')"), "FINAL(done)"])
    result = make_rlm(env, root).completion("q", context="c")
    obs = root.calls[1][-1]["content"]
    assert len(obs) <= 20_000 + 300  # the limit, plus the turn's frame text
    cell = result.trace.of(CellRan)[0]
    assert len(cell.stdout) <= 20_000
    assert cell.stdout.startswith("aaaa") and cell.stdout.rstrip().endswith("END")
    assert "characters cut" in cell.stdout
    cut = int(cell.stdout.split("[… ")[1].split(" characters")[0].replace(",", ""))
    kept = len(cell.stdout) - len(cut_marker(cut))
    assert cut == len("a" * 1_000_000 + "END\n") - kept


def test_output_budget_shared_across_streams_and_configurable(env: str) -> None:
    root = ScriptedLM(
        [
            code("import sys\nprint('o' * 50_000)\nprint('e' * 50_000, file=sys.stderr)\n1/0"),
            "FINAL(x)",
        ]
    )
    rlm = make_rlm(env, root, limits=Limits(max_output_chars=5_000, cell_timeout_s=10))
    result = rlm.completion("q", context="c")
    cell = result.trace.of(CellRan)[0]
    assert len(cell.stdout) + len(cell.stderr) + len(cell.error or "") <= 5_000
    assert "ZeroDivisionError" in (cell.error or "")


def test_depth_zero_has_no_llm_query(env: str) -> None:
    root = ScriptedLM([code("llm_query('hi')"), "FINAL(no)"])
    result = make_rlm(env, root, max_depth=0).completion("q", context="c")
    obs = root.calls[1][-1]["content"]
    assert "DepthLimitExceeded" in obs and "max_depth=0" in obs
    assert result.usage.total.calls == 2
    assert "NOT available" in root.calls[0][0]["content"]  # the prompt says so


def test_depth_two_child_rlm(env: str) -> None:
    # the root asks a child RLM; the child explores its own context and uses llm_query
    root = ScriptedLM(
        [
            code("r = rlm_query('find the secret', context='noise SECRET=7 noise')\nprint(r)"),
            "FINAL_VAR(r)",
        ],
        name="root",
    )
    child_and_leaf = FunctionLM(
        lambda m: (
            code(
                "import re\nv = re.search(r'SECRET=(\\d+)', context).group(1)\n"
                "FINAL(llm_query('double ' + v))"
            )
            if m[0]["role"] == "system"
            else str(2 * int(m[-1]["content"].split()[-1]))
        ),
        name="sub",
    )
    result = make_rlm(env, root, child_and_leaf, max_depth=2).completion("q", context="top")
    assert result.answer == "14"
    starts = result.trace.of(RunStarted)
    assert [s.depth for s in starts] == [0, 1]
    assert starts[1].parent_id == starts[0].run_id
    assert starts[1].context_meta["total_chars"] == len("noise SECRET=7 noise")
    # usage rolls up: 2 root calls + 1 child root call + 1 leaf llm_query
    assert result.usage.total.calls == 4
    assert result.usage.by_model["sub"].calls == 2
    child_sub = [s for s in result.trace.of(SubcallMade) if s.kind == "rlm"]
    assert child_sub and child_sub[0].child_run_id == starts[1].run_id


def test_rlm_query_at_last_level_is_a_plain_call(env: str) -> None:
    root = ScriptedLM([code("FINAL(rlm_query('say hi', context='ctx'))")])
    sub = FunctionLM(lambda m: "plain:" + m[-1]["content"].replace("\n", "|"), name="sub")
    result = make_rlm(env, root, sub, max_depth=1).completion("q", context="c")
    assert result.answer == "plain:say hi||Context:|ctx"
    assert len(result.trace.of(RunStarted)) == 1


def test_models_by_depth(env: str) -> None:
    root = ScriptedLM([code("FINAL(rlm_query('go'))")], name="root")
    child = ScriptedLM([code("FINAL(llm_query('leaf'))")], name="child")
    leaf = FunctionLM(lambda m: "leaf-answer", name="leaf")
    rlm = make_rlm(env, root, child, max_depth=2, models_by_depth={2: leaf})
    result = rlm.completion("q", context="c")
    assert result.answer == "leaf-answer"
    assert set(result.usage.by_model) == {"root", "child", "leaf"}


def test_named_model_and_unknown_model(env: str) -> None:
    root = ScriptedLM(
        [
            code(
                "a = llm_query('x', model='fast')\n"
                "try:\n    llm_query('x', model='nope')\n"
                "except Exception as e:\n    b = type(e).__name__\n"
                "FINAL(a + b)"
            )
        ]
    )
    fast = FunctionLM(lambda m: "F", name="fast-model")
    rlm = make_rlm(env, root, FunctionLM(lambda m: "S"), models={"fast": fast})
    assert rlm.completion("q", context="c").answer == "FConfigurationError"


def test_subcall_budget_stops_a_batch(env: str) -> None:
    root = ScriptedLM(
        [
            code("res = llm_query_batched([f'p: {i}' for i in range(10)])\nprint(res)"),
            code("llm_query('one more')"),
            "FINAL(done)",
        ]
    )
    sub = upper_sub()
    rlm = make_rlm(env, root, sub, limits=Limits(max_subcalls=4, cell_timeout_s=10))
    result = rlm.completion("q", context="c")
    assert sub.calls == 4
    obs = root.calls[1][-1]["content"]
    assert obs.count("max_subcalls=4 reached") == 6
    assert "'0'" in obs and "'3'" in obs
    assert "SubcallLimitExceeded" in root.calls[2][-1]["content"]
    assert result.stop_reason == "final"  # the root may still finish with what it has
    assert result.usage.by_model["upper"].calls == 4


def test_token_budget_stops_the_run(env: str) -> None:
    root = ScriptedLM([code("x = 1")] * 10)
    result = make_rlm(env, root, limits=Limits(max_tokens=2_000, cell_timeout_s=10)).completion(
        "q", context="c"
    )
    assert result.stop_reason == "budget"
    assert result.answer is None
    assert result.error is not None and result.error.limit == "max_tokens"
    assert result.usage.total.total_tokens <= 2_000 + 100


def test_cost_budget(env: str) -> None:
    from recursor import Pricing

    root = ScriptedLM([code("x = 1")] * 10, pricing=Pricing(1_000.0, 1_000.0))
    result = make_rlm(env, root, limits=Limits(max_cost_usd=1.0, cell_timeout_s=10)).completion(
        "q", context="c"
    )
    assert result.stop_reason == "budget"
    assert result.error is not None and result.error.limit == "max_cost_usd"
    assert result.usage.total.cost_usd is not None and result.usage.total.cost_usd >= 1.0


def test_max_iterations_last_call_can_finish(env: str) -> None:
    root = ScriptedLM([code("x = 'late'"), code("y = 2"), "FINAL_VAR(x)"])
    result = make_rlm(env, root, limits=Limits(max_iterations=2, cell_timeout_s=10)).completion(
        "q", context="c"
    )
    assert result.answer == "late" and result.stop_reason == "final"
    assert "no turns left" in root.calls[2][-1]["content"]


def test_max_iterations_without_answer(env: str) -> None:
    root = ScriptedLM([code("x = 1"), code("x = 2"), "still thinking"])
    result = make_rlm(env, root, limits=Limits(max_iterations=2, cell_timeout_s=10)).completion(
        "q", context="c"
    )
    assert result.stop_reason == "max_iterations" and result.answer is None
    assert result.iterations == 2
    root.assert_complete()


def test_raise_errors(env: str) -> None:
    from recursor.errors import IterationLimitExceeded

    root = ScriptedLM([code("x = 1"), "no"])
    rlm = make_rlm(env, root, limits=Limits(max_iterations=1, cell_timeout_s=10), raise_errors=True)
    with pytest.raises(IterationLimitExceeded):
        rlm.completion("q", context="c")


def test_infinite_loop_is_interrupted_and_state_survives(env: str) -> None:
    root = ScriptedLM([code("keep = 'kept'\nwhile True:\n    pass"), code("FINAL(keep)")])
    rlm = make_rlm(env, root, limits=Limits(cell_timeout_s=2))
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    elapsed = time.monotonic() - t0
    assert elapsed < 6, elapsed
    assert result.answer == "kept"
    obs = root.calls[1][-1]["content"]
    assert "TimeoutError" in obs and "while True" in obs
    assert result.trace.of(CellRan)[0].timed_out


def test_cell_that_swallows_interrupts_is_killed(env: str) -> None:
    # The loop ends only when the test says so: inprocess can abandon such a thread but never
    # stop it, and one left spinning in this process would slow every later test.
    body = (
        "import builtins\nx = 1\nwhile not getattr(builtins, 'recursor_test_stop', False):\n"
        "    try:\n        while not getattr(builtins, 'recursor_test_stop', False):\n"
        "            pass\n    except BaseException:\n        pass"
    )
    root = ScriptedLM([code(body), code("FINAL(str('x' in dir()))")])
    rlm = make_rlm(env, root, limits=Limits(cell_timeout_s=1))
    t0 = time.monotonic()
    try:
        result = rlm.completion("q", context="c")
    finally:
        builtins.recursor_test_stop = True  # type: ignore[attr-defined]
        time.sleep(0.2)  # a few switch intervals: the abandoned thread sees it and ends
        del builtins.recursor_test_stop  # type: ignore[attr-defined]
    assert time.monotonic() - t0 < 8
    assert result.answer == "False"  # the REPL was replaced
    cell = result.trace.of(CellRan)[0]
    assert cell.timed_out and cell.lost_state
    assert cell.duration_s >= 1.0
    assert "every variable" in root.calls[1][-1]["content"]


def test_run_timeout_while_subcall_hangs(env: str) -> None:
    def hang(_m: object) -> str:
        time.sleep(30)
        return "late"

    root = ScriptedLM([code("llm_query('wait forever')")])
    rlm = make_rlm(env, root, FunctionLM(hang), limits=Limits(timeout_s=1.5, cell_timeout_s=None))
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    assert time.monotonic() - t0 < 5
    assert result.stop_reason == "timeout" and result.answer is None


def test_run_timeout_while_root_model_hangs(env: str) -> None:
    def slow_root(_m: object) -> str:
        time.sleep(30)
        return "FINAL(late)"

    rlm = make_rlm(env, FunctionLM(slow_root), limits=Limits(timeout_s=1.0))
    t0 = time.monotonic()
    result = rlm.completion("q", context="c")
    assert time.monotonic() - t0 < 4
    assert result.stop_reason == "timeout"
    assert result.error is not None and result.error.limit == "timeout_s"


def test_acompletion_matches_completion(env: str) -> None:
    replies = [code("n = len(context)"), code("FINAL(llm_query('x: ' + str(n)))")]
    sync = make_rlm(env, ScriptedLM(replies), upper_sub()).completion("q", context="abcd")
    result = asyncio.run(
        make_rlm(env, ScriptedLM(replies), upper_sub()).acompletion("q", context="abcd")
    )
    assert result.answer == sync.answer == "4"
    assert result.usage.total == sync.usage.total
    assert [type(e) for e in result.trace] == [type(e) for e in sync.trace]


def test_acompletion_run_timeout(env: str) -> None:
    async def main() -> str:
        def slow(_m: object) -> str:
            time.sleep(20)
            return "FINAL(x)"

        rlm = make_rlm(env, FunctionLM(slow), limits=Limits(timeout_s=0.5))
        return (await rlm.acompletion("q", context="c")).stop_reason

    t0 = time.monotonic()
    assert asyncio.run(main()) == "timeout"
    assert time.monotonic() - t0 < 4


def test_context_kinds(env: str, tmp_path: Path) -> None:
    probe = code("FINAL(type(context).__name__ + ':' + str(len(context)))")
    path = tmp_path / "doc.txt"
    path.write_text("héllo\nworld", encoding="utf-8")
    cases: list[tuple[object, str]] = [
        ("abc", "str:3"),
        (b"\xff\xfeok", "str:4"),
        (path, "str:11"),
        (["a", "bb", "ccc"], "list:3"),
        ({"k1": "v", "k2": "vv"}, "dict:2"),
        ("", "str:0"),
        (None, "str:0"),
    ]
    for ctx, expected in cases:
        root = ScriptedLM([probe])
        result = make_rlm(env, root).completion("q", context=ctx)  # type: ignore[arg-type]
        assert result.answer == expected, (ctx, result.answer, result.error)


def test_metadata_in_prompt(env: str) -> None:
    root = ScriptedLM(["FINAL(x)"])
    docs = [f"document {i} " * (i + 1) for i in range(150)]
    make_rlm(env, root).completion("what?", context=docs)
    user = root.calls[0][1]["content"]
    assert "Query: what?" in user
    assert "items: 150" in user and "(50 more)" in user
    assert "document 0" in user  # preview
    assert "document 149" not in user  # never the whole context


def test_invalid_utf8_is_said(env: str) -> None:
    root = ScriptedLM([code("FINAL(context)")])
    result = make_rlm(env, root).completion("q", context=b"ok \xff\xfe end")
    assert result.answer == "ok \ufffd\ufffd end"
    assert "not valid UTF-8" in root.calls[0][1]["content"]


def test_worker_death_is_survived() -> None:
    # subprocess only: os._exit in-process would end the host (inprocess is for trusted code)
    env = "subprocess"
    root = ScriptedLM([code("import os\nos._exit(3)"), code("FINAL(str(len(context)))")])
    result = make_rlm(env, root).completion("q", context="abc")
    assert result.answer == "3"
    obs = root.calls[1][-1]["content"]
    assert "REPL process died" in obs and "exit status 3" in obs


def test_scripted_lm_exhaustion_is_loud(env: str) -> None:
    with pytest.raises(ScriptExhausted):
        make_rlm(env, ScriptedLM([code("x = 1")])).completion("q", context="c")
    sub = ScriptedLM([], name="sub")
    with pytest.raises(ScriptExhausted):
        make_rlm(env, ScriptedLM([code("llm_query('x')"), "FINAL(x)"]), sub).completion(
            "q", context="c"
        )


@pytest.mark.parametrize("environment", ["inprocess", "subprocess"])
def test_any_run_aborted_propagates_from_root_sub_and_child(environment: str) -> None:
    """The core knows RunAborted, not the fakes: a subclass it never heard of stops the run."""

    class Unplugged(RunAborted):
        pass

    def stop(messages: list[dict[str, str]]) -> str:
        raise Unplugged("the test pulled the plug")

    with pytest.raises(Unplugged):
        make_rlm(environment, FunctionLM(stop)).completion("q", context="c")
    for query in ("llm_query('x')", "rlm_query('x')"):
        root = ScriptedLM([code(query), "FINAL(x)"])
        with pytest.raises(Unplugged):  # not an error string in the cell
            make_rlm(environment, root, FunctionLM(stop), max_depth=2).completion("q", "c")


def test_trace_events_and_jsonl(env: str, tmp_path: Path) -> None:
    big = "x" * 200_000
    root = ScriptedLM([code("print(len(context))"), "FINAL(done)"])
    result = make_rlm(env, root).completion("q", context=big)
    kinds = [e.type for e in result.trace]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("model_called") == 2 and kinds.count("cell_ran") == 1
    calls = result.trace.of(ModelCalled)
    assert [m["role"] for m in calls[0].new_messages] == ["system", "user"]
    assert [m["role"] for m in calls[1].new_messages] == ["user"]  # deltas, not re-dumps
    path = result.trace.save(tmp_path / "run.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(result.trace)
    assert path.stat().st_size < 20_000  # the 200 KB context is not in the trace
    assert json.loads(lines[-1])["answer"] == "done"
    assert result.trace.of(RunFinished)[0].stop_reason == "final"


def test_subprocess_worker_has_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # subprocess only: inprocess shares the host's environment by design (trusted only)
    env = "subprocess"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    root = ScriptedLM([code("import os\nFINAL(os.environ.get('OPENAI_API_KEY', 'absent'))")])
    assert make_rlm(env, root).completion("q", context="c").answer == "absent"


def test_rlm_options_reach_the_rlm_and_an_unknown_keyword_is_a_type_error() -> None:
    from recursor import RLM

    rlm = RLM(
        ScriptedLM([]),
        environment="inprocess",
        max_concurrency=3,
        subcall_errors="raise",
        raise_errors=True,
        prompt_style="compact",
    )
    assert (rlm.max_concurrency, rlm.raise_errors, rlm.prompt_style) == (3, True, "compact")
    assert rlm.broker_options.subcall_errors == "raise"
    with pytest.raises(TypeError, match="max_concurency"):
        RLM(ScriptedLM([]), environment="inprocess", max_concurency=3)  # type: ignore[call-arg]


def test_host_tools_and_budget(env: str) -> None:
    def scale(values: list[float], by: float = 2.0) -> list[float]:
        """Multiply each value."""
        if by == 0:
            raise ValueError("by must not be 0")
        return [v * by for v in values]

    body = (
        "r = scale([1, 2.5])\ntry:\n    scale([1], by=0)\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)\nprint(budget()['tool_calls'])\nFINAL(r)"
    )
    root = ScriptedLM([code(body)])
    result = make_rlm(env, root, tools=[scale]).completion("q", context="c")
    assert result.answer == "[2.0, 5.0]", result.error
    shown = result.trace.of(CellRan)[0].stdout
    assert "ToolError tool 'scale' raised ValueError: by must not be 0" in shown
    assert "9998" in shown
