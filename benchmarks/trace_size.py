"""Trace size and logging overhead: a 100 MB context over 3 root iterations (issue 6).

Prints JSON and writes benchmarks/results/trace_size.json:
- recursor: bytes of the JSONL written by the streaming ``JsonlSink`` (target: under 2 MB), the
  same with ``store_context=True`` (the context stored once, as a blob), and the median wall
  time of a completion with no sink, with the sink, and with the blob; overhead = difference
  and ratio of the medians;
- rlms (when ``rlm`` from the ``rlms`` package imports): the same run through its ``RLM`` with
  a scripted client and its ``RLMLogger(log_dir=...)`` against no logger, in this process.
  Otherwise "skipped" with the reason.

The scripted root model (zero latency) makes three turns: probe the length, print a slice,
finish in code. Runs with and without logging alternate, so drift hits both alike.

Usage: python benchmarks/trace_size.py [--mb 100] [--repeats 5] [--environment inprocess]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recursor import RLM, Limits
from recursor.testing import ScriptedLM
from recursor.trace import JsonlSink

TARGET_BYTES = 2_000_000
CELLS = ["print(len(context))", "print(context[:60])", "FINAL(str(len(context)))"]
LINE = "{:09d}: the quick brown fox jumps over the lazy dog, again and again\n"


def make_context(mb: int) -> str:
    line_len = len(LINE.format(0))
    n = mb * 1_000_000 // line_len
    return "".join(LINE.format(i) for i in range(n))


def replies(fence: str = "repl") -> list[str]:
    return [f"Step {i + 1}.\n```{fence}\n{cell}\n```\n" for i, cell in enumerate(CELLS)]


def median_s(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def alternate(repeats: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            out[name].append(run())
    return out


# -- recursor ------------------------------------------------------------------------------


def recursor_run(context: str, env: str, trace: Path | None, store: bool = False) -> float:
    sink = None if trace is None else JsonlSink(trace, store_context=store)
    rlm = RLM(
        ScriptedLM(replies()),
        environment=env,
        limits=Limits(cell_timeout_s=120),
        sinks=[sink] if sink else [],
    )
    t0 = time.perf_counter()
    result = rlm.completion("How many characters does the context have?", context=context)
    elapsed = time.perf_counter() - t0
    if sink is not None:
        sink.close()
    assert result.answer == str(len(context)), result
    assert result.iterations == 3
    return elapsed


def bench_recursor(context: str, env: str, repeats: int, tmp: Path) -> dict[str, Any]:
    plain, blob = tmp / "recursor.jsonl", tmp / "recursor-blob.jsonl"
    recursor_run(context, env, None)  # warm imports, the spare worker, caches
    times = alternate(
        repeats,
        {
            "none": lambda: recursor_run(context, env, None),
            "jsonl": lambda: recursor_run(context, env, plain),
            "blob": lambda: recursor_run(context, env, blob, store=True),
        },
    )
    none, jsonl, with_blob = (median_s(times[k]) for k in ("none", "jsonl", "blob"))
    size = plain.stat().st_size
    return {
        "trace_bytes": size,
        "trace_lines": len(plain.read_text().splitlines()),
        "target_bytes": TARGET_BYTES,
        "under_target": size < TARGET_BYTES,
        "trace_bytes_with_context_blob": blob.stat().st_size,
        "completion_s_no_sink": none,
        "completion_s_jsonl_sink": jsonl,
        "completion_s_jsonl_sink_with_context_blob": with_blob,
        "logging_overhead_s": round(jsonl - none, 4),
        "logging_overhead_ratio": round(jsonl / none, 3),
        "context_blob_overhead_ratio": round(with_blob / none, 3),
    }


# -- rlms ----------------------------------------------------------------------------------


def bench_rlms(context: str, repeats: int, tmp: Path) -> dict[str, Any]:
    try:
        from _rlms import RLMS_FINISH, make_rlms, rlms_version

        rlms_version()
    except ImportError as exc:
        return {"skipped": f"rlms is not importable: {exc}"}
    except Exception as exc:
        return {"skipped": f"rlms is not installed: {exc}"}

    # rlms signals the end through its answer dict, not FINAL(...): same work, its protocol.
    script = [*replies()[:-1], RLMS_FINISH]

    def run(log_dir: Path | None) -> float:
        rlm = make_rlms(script, log_dir=log_dir)
        t0 = time.perf_counter()
        result = rlm.completion(context, root_prompt="How many characters does the context have?")
        elapsed = time.perf_counter() - t0
        assert str(result.response) == str(len(context)), result.response
        return elapsed

    logs = tmp / "rlms-logs"
    sizes: list[int] = []

    def logged() -> float:
        for old in logs.glob("*.jsonl"):
            old.unlink()
        elapsed = run(logs)
        sizes.append(sum(p.stat().st_size for p in logs.glob("*.jsonl")))
        for old in logs.glob("*.jsonl"):
            old.unlink()  # hundreds of MB each: keep the disk free
        return elapsed

    try:
        run(None)  # warm up
        times = alternate(repeats, {"none": lambda: run(None), "logger": logged})
    except Exception as exc:  # a peer that cannot run here is reported, not fatal
        return {"skipped": f"rlms failed to run offline: {type(exc).__name__}: {exc}"}
    none, logger = median_s(times["none"]), median_s(times["logger"])
    return {
        "version": rlms_version(),
        "trace_bytes": max(sizes),
        "completion_s_no_logger": none,
        "completion_s_rlm_logger": logger,
        "logging_overhead_s": round(logger - none, 4),
        "logging_overhead_ratio": round(logger / none, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100, help="context size in MB")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rlms-repeats", type=int, default=3, help="its logs are 100s of MB")
    parser.add_argument("--environment", default="inprocess")
    args = parser.parse_args()

    context = make_context(args.mb)
    with tempfile.TemporaryDirectory(prefix="recursor-trace-size-") as d:
        tmp = Path(d)
        ours = bench_recursor(context, args.environment, args.repeats, tmp)
        peer = bench_rlms(context, args.rlms_repeats, tmp)
    out: dict[str, Any] = {
        "benchmark": "trace_size",
        "context_chars": len(context),
        "root_iterations": len(CELLS),
        "environment": args.environment,
        "repeats": args.repeats,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "recursor": ours,
        "rlms": peer,
    }
    if "trace_bytes" in peer:
        out["trace_bytes_ratio_rlms_over_recursor"] = round(
            peer["trace_bytes"] / ours["trace_bytes"], 1
        )
    text = json.dumps(out, indent=2)
    print(text)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "trace_size.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
