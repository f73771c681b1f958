"""Streaming, background sub-calls and prompt caching, against the stub server on 127.0.0.1.

Prints JSON and writes benchmarks/results/streaming.json:

- token_to_event: ``RLM.stream`` over the OpenAI backend (real SDK, SSE from the stub, a word
  every 5 ms, 3 root turns of 200 words): for every ModelDelta, the time from the moment the
  driver got the piece from the SDK (the event's ``t``, stamped in the backend's callback) to
  the moment the reader's loop received it. Target p50 <= 5 ms. What it does not include: the
  server's write and the SDK's SSE parsing before the callback.
- fanout: 64 ``llm_query`` prompts (the stub answers each after 250 ms, max_concurrency=16, so
  4 waves, ~1 s) and 0.8 s of root work in another cell. "overlapped": started with
  ``llm_query_batched_async`` in turn 1, the root works in turn 2, collects in turn 3;
  "synchronous": ``llm_query_batched`` in turn 1, the same work in turn 2. Wall time of the
  whole completion, median of ``--repeats``.
- caching: a 20-turn run (19 cells, then FINAL) over a 6,000-character context, caching on and
  off (``prompt_cache=``), for Anthropic (cache_control breakpoints) and OpenAI
  (``prompt_cache_key``) on the stub, whose cache model is :mod:`recursor.lm.stub_cache`:
  input tokens in all, read from cache, written to it, billed at the full rate; cost at the
  list prices of claude-sonnet-4-5 and gpt-5-mini.

Usage: python benchmarks/streaming.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from recursor import RLM, Limits
from recursor.lm import anthropic as anthropic_lm
from recursor.lm import openai as openai_lm
from recursor.lm.pricing import lookup
from recursor.lm.stub_server import StubServer
from recursor.sandbox import InProcessEnvironment
from recursor.testing import ScriptedLM
from recursor.trace import ModelDelta

RESULTS = Path(__file__).with_name("results") / "streaming.json"


def _env() -> InProcessEnvironment:
    return InProcessEnvironment(trusted=True)


def token_to_event() -> dict[str, Any]:
    words = " ".join(f"w{i}" for i in range(200))
    replies = iter([f"{words}\n```repl\nx = 1\n```", f"{words}\n```repl\ny = 2\n```", "FINAL(ok)"])
    lags: list[float] = []
    with StubServer(handler=lambda chat: next(replies), stream_delay=0.005) as srv:
        lm = openai_lm.create("gpt-x", base_url=srv.base_url, api_key="k")
        with RLM(lm, environment=_env(), max_depth=0) as rlm:
            for event in rlm.stream("q", context="c"):
                now = time.time()
                if isinstance(event, ModelDelta):
                    lags.append(now - event.t)
        lm.close()
    lags.sort()
    ms = [x * 1000 for x in lags]
    return {
        "deltas": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[int(len(ms) * 0.95)], 3),
        "max_ms": round(ms[-1], 3),
        "target_p50_ms": 5,
    }


_PROMPTS = "[f'part {i}' for i in range(64)]"


def _fanout_once(srv: StubServer, overlapped: bool) -> float:
    if overlapped:
        turns = [
            f"```repl\nhs = llm_query_batched_async({_PROMPTS})\n```",
            "```repl\nimport time\ntime.sleep(0.8)\n```",
            "```repl\nres = [h.result() for h in hs]\nprint(len(res))\n```",
            "FINAL(done)",
        ]
    else:
        turns = [
            f"```repl\nres = llm_query_batched({_PROMPTS})\n```",
            "```repl\nimport time\ntime.sleep(0.8)\n```",
            "FINAL(done)",
        ]
    sub = openai_lm.create("gpt-x", base_url=srv.base_url, api_key="k")
    with RLM(
        ScriptedLM(turns),
        sub,
        environment=_env(),
        max_concurrency=16,
        cache=False,
        limits=Limits(cell_timeout_s=30),
    ) as rlm:
        t0 = time.perf_counter()
        result = rlm.completion("q", context="c")
        wall = time.perf_counter() - t0
    sub.close()
    assert result.answer == "done", result.error
    return wall


def fanout(repeats: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {"overlapped": [], "synchronous": []}
    with StubServer(handler=lambda chat: "ok", delay=0.25) as srv:
        for _ in range(repeats):
            for name in ("overlapped", "synchronous"):
                times[name].append(_fanout_once(srv, name == "overlapped"))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "prompts": 64,
        "subcall_latency_s": 0.25,
        "max_concurrency": 16,
        "root_work_s": 0.8,
        "overlapped_s": round(med["overlapped"], 3),
        "synchronous_s": round(med["synchronous"], 3),
        "speedup": round(med["synchronous"] / med["overlapped"], 2),
        "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
    }


def _cached_run(kind: str, cache: bool) -> dict[str, Any]:
    turns = [f"```repl\nprint(len(context) + {i})\n```" for i in range(19)] + ["FINAL(done)"]
    replies = iter(turns)
    with StubServer(handler=lambda chat: next(replies)) as srv:
        if kind == "anthropic":
            price = lookup("anthropic", "claude-sonnet-4-5")
            lm: Any = anthropic_lm.create(
                "claude-sonnet-4-5",
                base_url=srv.url,
                api_key="k",
                prompt_cache=cache,
                pricing=price,
            )
        else:
            price = lookup("openai", "gpt-5-mini")
            lm = openai_lm.create(
                "gpt-5-mini",
                base_url=srv.base_url,
                api_key="k",
                prompt_cache=cache,
                pricing=price,
            )
        with RLM(lm, environment=_env(), max_depth=0, limits=Limits(max_iterations=25)) as rlm:
            result = rlm.completion("q", context="lorem ipsum " * 500)
        lm.close()
    u = result.usage.total
    assert result.answer == "done", result.error
    return {
        "calls": u.calls,
        "input_tokens": u.input_tokens,
        "cached_input_tokens": u.cached_input_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "full_rate_input_tokens": u.uncached_input_tokens,
        "cost_usd": None if u.cost_usd is None else round(u.cost_usd, 6),
    }


def caching() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("anthropic", "openai"):
        on, off = _cached_run(kind, True), _cached_run(kind, False)
        out[kind] = {
            "on": on,
            "off": off,
            "full_rate_ratio": round(
                on["full_rate_input_tokens"] / off["full_rate_input_tokens"], 3
            ),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "token_to_event": token_to_event(),
        "fanout": fanout(args.repeats),
        "caching": caching(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
