"""A follow-up ask in a session against the same question asked as a fresh completion.

Prints JSON and writes benchmarks/results/sessions.json. The root is a zero-latency FunctionLM
(two turns: a cell that reads the context, then FINAL), so what is measured is the scaffold:

- first_root_call_ms: from the call (``ask`` / ``completion``) to the root model's first call.
  A fresh completion writes the context to a file and starts (or takes the spare) worker, which
  memory-maps it and computes its metadata; a follow-up reuses the session's REPL (target: the
  follow-up within 10 ms, no context load);
- wall_ms: the whole ask / completion;
- root_input_tokens: what the root was sent over the run (the follow-up carries the earlier
  question and answer as a preface, so it is a little more, not less);
- save_ms / resume_ms: ``save`` of the session and ``rlm.resume`` from it (cells re-run, no
  model call), for the same session.

Medians over ``--repeats``; environment ``subprocess``; context ``--mb`` megabytes of text.
Then the measures of streaming.py (unless ``--no-stream``): a root token to its stream event,
a 64-prompt background fan-out overlapped with root work against the same work done
synchronously, and input tokens billed at the full rate over 20 turns with prompt caching on
and off (stub server).

Usage: python benchmarks/sessions.py [--repeats 7] [--mb 20] [--no-stream]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from recursor import RLM, Limits
from recursor.lm.base import Message
from recursor.testing import FunctionLM

QUESTION = "How many lines does the context have?"


class Timed:
    """A root that notes when its first call of a run came."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, messages: list[Message]) -> str:
        if self.first is None:
            self.first = time.perf_counter()
        if messages[-1]["role"] == "user" and len(messages) == 2:
            return "```repl\nlines = context.count('\\n') + 1\nprint(lines)\n```"
        return "FINAL_VAR(lines)"


def _ms(x: float) -> float:
    return round(x * 1000, 2)


def _stream_measures(repeats: int) -> dict[str, object]:
    """The issue's other three measures (streaming, background fan-out, prompt caching): they
    live in streaming.py, which also runs on its own."""
    import streaming  # benchmarks/ is on sys.path when this file runs as a script

    return {
        "token_to_stream_event": streaming.token_to_event(),
        "background_fanout": streaming.fanout(repeats),
        "prompt_caching": streaming.caching(),
    }


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--stream-repeats", type=int, default=3)
    parser.add_argument(
        "--no-stream", action="store_true", help="only the follow-up ask, save and resume"
    )
    return parser.parse_args()


def main() -> None:
    args = _args()
    line = "2026-03-01 12:00 INFO a line of a long log, request id=123456\n"
    context = line * int(args.mb * 1_000_000 / len(line))
    timed = Timed()
    root = FunctionLM(timed, name="root")
    fresh: dict[str, list[float]] = {"first": [], "wall": [], "tokens": []}
    follow: dict[str, list[float]] = {"first": [], "wall": [], "tokens": []}
    saves: list[float] = []
    resumes: list[float] = []
    with RLM(root, environment="subprocess", limits=Limits(cell_timeout_s=60)) as rlm:
        for _ in range(args.repeats):
            time.sleep(0.3)  # the spare worker's boot is not what is measured
            timed.first = None
            t0 = time.perf_counter()
            r = rlm.completion(QUESTION, context=context)
            assert r.ok and timed.first is not None
            fresh["first"].append(timed.first - t0)
            fresh["wall"].append(time.perf_counter() - t0)
            fresh["tokens"].append(r.usage.by_model["root"].input_tokens)
        time.sleep(0.3)
        with rlm.session(context=context) as s:
            s.ask(QUESTION)
            for _ in range(args.repeats):
                timed.first = None
                t0 = time.perf_counter()
                r = s.ask(QUESTION)
                assert r.ok and timed.first is not None
                follow["first"].append(timed.first - t0)
                follow["wall"].append(time.perf_counter() - t0)
                follow["tokens"].append(r.usage.by_model["root"].input_tokens)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "s.json"
                for _ in range(3):
                    t0 = time.perf_counter()
                    s.save(path)
                    saves.append(time.perf_counter() - t0)
                for _ in range(3):
                    t0 = time.perf_counter()
                    resumed = rlm.resume(path, context=context)
                    resumes.append(time.perf_counter() - t0)
                    assert resumed.resume_report is not None and resumed.resume_report.ok
                    resumed.close()

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    out = {
        "environment": "subprocess",
        "context_mb": args.mb,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "fresh_completion": {
            "first_root_call_ms": _ms(med(fresh["first"])),
            "wall_ms": _ms(med(fresh["wall"])),
            "root_input_tokens": med(fresh["tokens"]),
        },
        "follow_up_ask": {
            "first_root_call_ms": _ms(med(follow["first"])),
            "wall_ms": _ms(med(follow["wall"])),
            "root_input_tokens": med(follow["tokens"]),
            "asks_before": f"1 to {args.repeats}",
        },
        "target_first_root_call_ms": 10,
        "save_ms": _ms(med(saves)),
        "resume_ms": _ms(med(resumes)),
        "resume_asks": args.repeats + 1,
    }
    if not args.no_stream:
        out.update(_stream_measures(args.stream_repeats))
    print(json.dumps(out, indent=2))
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    (results / "sessions.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
