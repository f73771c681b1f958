"""Context handling at size, per-thread output isolation, the ledger, usage and prompts."""

from __future__ import annotations

import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from recursor import RLM, Limits, Pricing, Usage
from recursor.context import Context, describe
from recursor.errors import ConfigurationError, ContextError, RunTimeout, TokenLimitExceeded
from recursor.limits import Ledger
from recursor.lm import LMProfile
from recursor.prompts import PromptSettings, system_prompt
from recursor.sandbox.repl import RESERVED
from recursor.testing import FunctionLM, ScriptedLM

from .conftest import code


@pytest.mark.slow
def test_hundred_megabyte_file_is_not_copied_in_the_host(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    line = "2026-01-01 INFO request served in 12 ms\n"
    with path.open("w") as f:
        for _ in range(100 * 2**20 // len(line)):
            f.write(line)
        f.write("2026-01-02 ERROR the needle is 8675309\n")
    size = path.stat().st_size
    root = ScriptedLM(
        [
            code("import re\nm = re.search(r'needle is (\\d+)', context)\nprint(len(context))"),
            code("FINAL(m.group(1))"),
        ]
    )
    tracemalloc.start()
    try:
        result = RLM(root, environment="subprocess").completion("find the needle", context=path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.answer == "8675309"
    assert f"{size:,}" in root.calls[0][1]["content"]  # metadata came from the worker
    assert str(size) in root.calls[1][-1]["content"]  # the worker holds all of it
    assert peak < 5 * 2**20, f"the host allocated {peak:,} bytes for a {size:,}-byte context"


def test_context_file_written_once_and_removed() -> None:
    ctx = Context("hello")
    path, kind = ctx.file()
    assert ctx.file() == (path, kind) and kind == "text"
    assert Path(path).read_text() == "hello"
    ctx.close()
    assert not Path(path).exists()


def test_context_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ContextError):
        Context(42)  # type: ignore[arg-type]
    with pytest.raises(ContextError):
        Context(tmp_path / "missing.txt")
    with pytest.raises(ContextError):
        Context({1: "x"})  # type: ignore[dict-item]
    with pytest.raises(ContextError):
        Context([object()]).file()


def test_describe_caps_item_lists() -> None:
    meta = describe([f"d{i}" for i in range(250)])
    assert meta.n_items == 250 and len(meta.item_lengths) == 100
    assert "(150 more)" in meta.render()
    meta = describe({f"k{i}": "v" * i for i in range(120)})
    assert len(meta.keys) == 100 and meta.total_chars == sum(range(120))
    assert describe("").render().endswith("the context is empty")
    text = "\n".join(f"line {i}" for i in range(1000))
    meta = describe(text)
    assert meta.n_lines == 1000 and meta.preview.startswith("line 0\nline 1")
    assert "line 999" not in meta.preview


def test_concurrent_inprocess_children_do_not_mix_output() -> None:
    # Four children print their own tag in loops at the same time; each must see only its own.
    def child(messages: list[dict[str, str]]) -> str:
        if messages[-1]["role"] == "user" and "[cell 1]" in messages[-1]["content"]:
            seen = messages[-1]["content"]
            tag = messages[1]["content"].split("Query: ")[1].split("\n")[0]
            clean = seen.count(tag) == 200 and all(
                f"tag{i}" not in seen for i in range(4) if f"tag{i}" != tag
            )
            return f"FINAL({'clean' if clean else 'MIXED'})"
        return code("import time\nfor _ in range(200):\n    print(context)\n    time.sleep(0.0005)")

    root = ScriptedLM(
        [
            code(
                "print('parent before')\n"
                "tags = [f'tag{i}' for i in range(4)]\n"
                "r = rlm_query_batched(tags, tags)\n"
                "print('parent after')\nprint(r)"
            ),
            "FINAL(ok)",
        ]
    )
    rlm = RLM(root, FunctionLM(child), environment="inprocess", max_depth=2, max_concurrency=4)
    result = rlm.completion("q", context="c")
    obs = root.calls[1][-1]["content"]
    assert "['clean', 'clean', 'clean', 'clean']" in obs
    assert "parent before" in obs and "parent after" in obs
    assert result.usage.total.calls == 2 + 4 * 2


def test_children_run_concurrently() -> None:
    def slow_child(messages: list[dict[str, str]]) -> str:
        time.sleep(0.5)
        return "FINAL(done)"

    root = ScriptedLM([code("FINAL(str(rlm_query_batched(['a', 'b', 'c', 'd'])))")])
    rlm = RLM(root, FunctionLM(slow_child), environment="inprocess", max_depth=2)
    t0 = time.monotonic()
    assert rlm.completion("q", context="c").answer == "['done', 'done', 'done', 'done']"
    assert time.monotonic() - t0 < 1.5  # 4 x 0.5 s run side by side, not one after another


def test_ledger_budgets_and_threads() -> None:
    ledger = Ledger(Limits(max_subcalls=100, max_tokens=1_000))
    granted: list[int] = []

    def grab() -> None:
        granted.extend(ledger.reserve_subcalls(1) for _ in range(30))

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 100 and ledger.subcalls == 100
    ledger.record("m", Usage.of_call(600, 300, Pricing(1, 2)))
    ledger.check_model_call(50)
    with pytest.raises(TokenLimitExceeded):
        ledger.check_model_call(200)
    limits = [h.limit for h in ledger.hits]
    assert limits.count("max_subcalls") == 8 * 30 - 100  # every refused reservation is noted
    assert limits[-1] == "max_tokens"


def test_ledger_deadline() -> None:
    now = [100.0]
    ledger = Ledger(Limits(timeout_s=10, cell_timeout_s=4), clock=lambda: now[0])
    assert ledger.cell_deadline() == (104.0, False)
    now[0] = 107.0
    assert ledger.cell_deadline() == (110.0, True)
    now[0] = 110.0
    with pytest.raises(RunTimeout):
        ledger.check_time()


def test_usage_sums_and_unknown_prices() -> None:
    priced = Usage.of_call(1_000_000, 0, Pricing(2.0, 8.0))
    unpriced = Usage.of_call(10, 10, None)
    total = priced + unpriced
    assert total.calls == 2 and total.cost_usd == pytest.approx(2.0)
    assert total.unpriced_calls == 1
    assert (unpriced + unpriced).cost_usd is None  # never 0 when no price was known


def test_limits_validate() -> None:
    with pytest.raises(ConfigurationError):
        Limits(max_iterations=0)
    with pytest.raises(ConfigurationError):
        Limits(timeout_s=-1)
    with pytest.raises(ConfigurationError):
        RLM(ScriptedLM([]), environment="nowhere")


def test_system_prompt_advertises_exactly_the_names() -> None:
    meta = describe("x" * 1000)
    full = system_prompt(meta, PromptSettings(30, 20_000, llm=True, rlm="child"))
    for name in RESERVED:
        assert f"`{name}" in full, name
    assert "llm_query_batched(prompts: list[str]" in full
    assert "rlm_query(prompt: str, context=None)" in full
    assert "20,000 characters" in full
    for phrase in ("Probe first", "batch", "Verify", "Printed text is never taken"):
        assert phrase in full
    assert "$" not in full.replace("$ ", "")  # every placeholder filled
    plain = system_prompt(meta, PromptSettings(30, 20_000, llm=True, rlm="plain"))
    assert "one plain sub-model call" in plain and "child RLM with a REPL" not in plain
    none = system_prompt(meta, PromptSettings(30, 20_000, llm=False, rlm="none"))
    assert "NOT available" in none and "llm_query_batched([" not in none


def test_compact_prompt_for_local_models() -> None:
    meta = describe("user bob password x\n" * 10)
    v1 = PromptSettings(12, 4_000, llm=True, rlm="plain", style="compact", version="v1")
    compact = system_prompt(meta, v1)
    assert len(compact) < 1_800  # small models read every token of it on a CPU
    assert 'FINAL_VAR("result")' in compact and "context.splitlines()" in compact
    assert "Never assign to it" in compact
    local = FunctionLM(lambda m: "FINAL(x)", name="local:tiny")
    seen: list[str] = []

    def record(messages: list[dict[str, str]]) -> str:
        seen.append(messages[0]["content"])
        return "FINAL(x)"

    # the style is the model's profile's (LocalLM declares "compact"), not guessed from a name
    small = FunctionLM(record, name="local:tiny", profile=LMProfile(prompt_style="compact"))
    RLM(small, environment="inprocess").completion("q", "c")
    RLM(FunctionLM(record, name="api"), environment="inprocess").completion("q", "c")
    RLM(FunctionLM(record, name="api"), environment="inprocess", prompt_style="compact").completion(
        "q", "c"
    )
    assert "You answer a question about a long text" in seen[0]
    assert "You are the root of a Recursive Language Model" in seen[1]
    assert "You answer a question about a long text" in seen[2]
    assert local.calls == 0
