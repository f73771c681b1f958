"""Held-out wordings and the pinned prompt-version methods, on the fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from recursor.bench import generate
from recursor.bench.heldout import reword
from recursor.bench.methods import Models
from recursor.bench.registry import method
from recursor.lm.base import Message
from recursor.lm.profile import LMProfile
from recursor.testing import FunctionLM


@pytest.mark.parametrize(("family", "length"), [("sniah", 600), ("multihop", 800), ("oolong", 800)])
def test_reword_keeps_context_and_gold_and_marks_the_id(family: str, length: int) -> None:
    tasks = generate(family, n=6, length=length, seed=1000)
    held = [reword(t, 1000) for t in tasks]
    for t, h in zip(tasks, held, strict=True):
        assert (h.context, h.gold, h.scorer) == (t.context, t.gold, t.scorer)
        assert h.id == f"{t.id}-heldout1000" and h.query != t.query
    if family == "sniah":
        assert all(t.meta["key"] in h.query for t, h in zip(tasks, held, strict=True))
    if family == "multihop":
        assert all(t.meta["person"] in h.query for t, h in zip(tasks, held, strict=True))
    if family == "oolong":
        for t, h in zip(tasks, held, strict=True):
            for param in ("label", "a", "b", "user"):
                if param in t.meta:
                    assert str(t.meta[param]) in h.query
    with pytest.raises(ValueError, match="codeqa"):
        reword(generate("codeqa", n=1, length=600, seed=0)[0], 1)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_versioned_rlm_methods_pin_their_prompts(version: str) -> None:
    systems: list[str] = []

    def root(messages: list[Message]) -> str:
        systems.append(messages[0]["content"])
        return "FINAL(1234567)"

    [task] = generate("sniah", n=1, length=600, seed=0)
    lm = FunctionLM(root, name="local:tiny", profile=LMProfile(prompt_style="compact"))
    models = Models(root=lm, sub=lm, environment="inprocess")
    m = method(f"rlm-d1-{version}")
    assert m.name == f"rlm-d1-{version}"
    attempt = m.run(task, models)
    assert attempt.stop_reason == "final"
    assert ("grep(" in systems[0]) == (version == "v2")


def test_rlm_methods_write_a_trace_per_run_when_asked(tmp_path: Path) -> None:
    from recursor.trace import RunStarted, Trace

    [task] = generate("sniah", n=1, length=600, seed=0)
    lm = FunctionLM(lambda m: "FINAL(1234567)", name="root")
    models = Models(root=lm, sub=lm, environment="inprocess", trace_dir=tmp_path / "traces")
    method("rlm-d1-v1").run(task, models)
    [started] = Trace.load(tmp_path / "traces" / f"{task.id}.rlm-d1-v1.jsonl").of(RunStarted)
    assert started.config["prompt_version"] == "v1"
