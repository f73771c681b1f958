"""``make demo``: an RLM end to end over a generated long context with a planted needle.

With ``--model scripted`` (used until an embedded model is installed) the root model is a
ScriptedLM whose replies are the probe -> regex -> FINAL_VAR strategy a good controller writes;
everything else — the sandboxed worker, the REPL protocol, sub-calls, budgets — is real.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from recursor import RLM, Limits
from recursor.lm.base import LM
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


def make_haystack(n_chars: int, seed: int) -> tuple[str, str, str]:
    """Log lines of about ``n_chars`` with one line holding the access code; (text, key, code)."""
    rng = random.Random(seed)
    key = f"user-{rng.randrange(1000, 9999)}"
    code = str(rng.randrange(10**6, 10**7))
    lines: list[str] = []
    size = 0
    while size < n_chars:
        line = (
            f"2026-03-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d} "
            f"INFO {' '.join(rng.choices(_WORDS, k=8))} id={rng.randrange(10**6)}"
        )
        lines.append(line)
        size += len(line) + 1
    needle = f"2026-03-14 09:26 AUDIT the access code for {key} is {code}"
    lines.insert(rng.randrange(len(lines)), needle)
    return "\n".join(lines), key, code


def scripted_root() -> ScriptedLM:
    return ScriptedLM(
        [
            "Let me look at the format first.\n"
            "```repl\nprint(len(context))\nprint(context[:300])\n```",
            "The lines are logs. I'll search for the access code line.\n```repl\nimport re\n"
            "hits = [l for l in context.splitlines() if 'access code' in l]\n"
            "print(len(hits), hits[:3])\n```",
            "One hit. I'll extract the code and confirm it with the sub-model.\n```repl\n"
            "code = re.search(r'is (\\d+)', hits[0]).group(1)\n"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", default="scripted", help="'scripted' or a provider:model string")
    parser.add_argument("--environment", default="subprocess")
    args = parser.parse_args(argv)

    context, key, gold = make_haystack(args.chars, args.seed)
    query = f"What is the access code for {key}? Answer with the number only."
    if args.model == "scripted":
        print(
            "NOTE: the root model here is SCRIPTED (recursor.testing.ScriptedLM): its replies are "
            "fixed.\nThe sandboxed REPL, protocol, sub-calls and budgets are real.\n"
        )
        root: LM | str = scripted_root()
        sub: LM | str | None = echo_sub()
    else:
        root, sub = args.model, None
    rlm = RLM(
        root, sub, environment=args.environment, limits=Limits(max_iterations=12, timeout_s=600)
    )
    print(f"context: {len(context):,} characters; query: {query}")
    t0 = time.perf_counter()
    result = rlm.completion(query, context=context)
    wall = time.perf_counter() - t0
    correct = result.answer is not None and gold in result.answer
    u = result.usage.total
    print(f"answer:      {result.answer!r} ({'correct' if correct else f'WRONG, expected {gold}'})")
    print(f"stop reason: {result.stop_reason}")
    print(f"iterations:  {result.iterations}")
    print(f"sub-calls:   {sum(1 for e in result.trace if e.type == 'subcall')}")
    print(f"model calls: {u.calls}; tokens: {u.input_tokens:,} in, {u.output_tokens:,} out")
    print(f"wall time:   {wall:.2f} s")
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
