"""Batch throughput on the latency-bound stub: items per second for N items (default 200), each
one RLM completion whose single model call is answered after 500 ms, with

- the process executor at 1 and 2 workers;
- Ray on 1 and 2 nodes (a real local cluster: a head that runs no tasks and one-CPU worker
  nodes, ``ray.cluster_utils.Cluster``), one item a task;

and Ray's overhead per item over the process executor at the same slot count: the difference of
their steady-state seconds per item (from the first result to the last, over N-1), so the
one-off start of a process pool or a Ray worker is not spread over the items; ``wall_s`` and
``items_per_s`` include it. Targets: 2 nodes >= 1.8x one node; Ray overhead <= 50 ms an item.

Every item runs its own sandbox (``environment="subprocess"``, max_depth 0), so an item costs
the model's 500 ms plus the sandbox start and the RLM set-up; the stub server runs in this
process (threads; it only sleeps). On the 2-core machine both "nodes" share the same cores.

Prints JSON and writes benchmarks/results/batch.json (at 200 items; ``--parts`` run apart are
merged into it). The machine's load average at the start of each part is recorded: the
figures are only comparable when it is low.

Usage: python benchmarks/batch.py [--items 200] [--delay 0.5] [--parts process,ray]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from recursor.batch import Executor, Item, JobSpec, ProcessExecutor, RayExecutor, run
from recursor.lm.stub_server import StubServer

OUT = Path(__file__).parent / "results" / "batch.json"


def _answer(chat: list[dict[str, str]]) -> str:
    found = re.search(r"question (Q\w+)", "\n".join(m["content"] for m in chat))
    return f"FINAL(ans-{found.group(1) if found else 'none'})"


def _items(n: int) -> list[Item]:
    return [Item(id=f"i{i}", query=f"question Q{i}", context=f"doc {i} " * 50) for i in range(n)]


def _time(executor: Executor, n: int) -> dict[str, Any]:
    spec = JobSpec(model="openai:stub", max_depth=0, trace_dir=None)
    with tempfile.TemporaryDirectory() as out:
        arrivals: list[float] = []
        load = os.getloadavg()[0]
        start = time.perf_counter()
        summary = run(
            _items(n),
            executor,
            out=out,
            spec=spec,
            on_result=lambda *_: arrivals.append(time.perf_counter()),
        )
        wall = time.perf_counter() - start
        with open(Path(out) / "results.jsonl") as f:
            records = [json.loads(line) for line in f]
    assert summary.finished == n and summary.failed == 0, summary
    assert all(r["stop_reason"] == "final" for r in records)
    nodes = len({r["node"] for r in records})
    item_wall = sorted(r["wall_s"] for r in records)
    # steady state: from the first result on, so a pool's or a node's start-up is not
    # charged to every item
    steady = (arrivals[-1] - arrivals[0]) / max(1, n - 1)
    return {
        "load_average_at_start": round(load, 2),
        "wall_s": round(wall, 2),
        "items_per_s": round(n / wall, 3),
        "first_result_s": round(arrivals[0] - start, 2),
        "steady_s_per_item": round(steady, 4),
        "steady_items_per_s": round(1 / steady, 3) if steady > 0 else None,
        "nodes_used": nodes,
        "item_wall_s_median": item_wall[len(item_wall) // 2],
    }


def _add_node(cluster: Any) -> None:
    """A one-CPU node; retried, since Ray gives a raylet 30 s to register (hard-coded in 2.x)
    and a loaded 2-core machine sometimes needs longer."""
    for attempt in range(3):
        try:
            cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
            cluster.wait_for_nodes()
            return
        except Exception:
            if attempt == 2:
                raise


def _ray_runs(n: int, env: dict[str, str]) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    out: dict[str, Any] = {}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": 80 * 2**20},
    )
    try:
        _add_node(cluster)
        ray.init(address=cluster.address, log_to_driver=False)
        # warm-up: the node's first worker process and its imports, not per-item cost
        _time(RayExecutor(env=env), 2)
        out["ray_1_node"] = _time(RayExecutor(env=env), n)
        _add_node(cluster)
        _time(RayExecutor(env=env), 4)
        out["ray_2_nodes"] = _time(RayExecutor(env=env), n)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


def _merge_saved(results: dict[str, Any], n: int) -> None:
    """Parts run separately (--parts) add to the figures of the same item count saved before."""
    if not OUT.exists() or n != 200:
        return
    saved = json.loads(OUT.read_text())
    for key in ("process_1", "process_2", "ray_1_node", "ray_2_nodes"):
        if key not in results and key in saved and saved.get("items") == n:
            results[key] = saved[key]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--parts", default="process,ray")
    args = parser.parse_args()
    parts = args.parts.split(",")
    results: dict[str, Any] = {}
    with StubServer(_answer, delay=args.delay, record=False) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": "k"}
        os.environ.update(env)
        if "process" in parts:
            for workers in (1, 2):
                results[f"process_{workers}"] = _time(ProcessExecutor(workers), args.items)
        if "ray" in parts:
            results.update(_ray_runs(args.items, env))
    n = args.items
    _merge_saved(results, n)
    if "ray_2_nodes" in results:
        results["ray_speedup_2_vs_1_node"] = round(
            results["ray_2_nodes"]["items_per_s"] / results["ray_1_node"]["items_per_s"], 3
        )
    if "process_2" in results:
        results["process_speedup_2_vs_1"] = round(
            results["process_2"]["items_per_s"] / results["process_1"]["items_per_s"], 3
        )
    if "ray_1_node" in results and "process_1" in results:
        ray_s = results["ray_1_node"]["steady_s_per_item"]
        over = ray_s - results["process_1"]["steady_s_per_item"]
        results["ray_overhead_ms_per_item"] = round(over * 1000, 1)
    report = {
        "benchmark": "batch",
        "items": n,
        "model_delay_s": args.delay,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"ray_speedup_2_vs_1_node": ">= 1.8", "ray_overhead_ms_per_item": "<= 50"},
        **results,
    }
    print(json.dumps(report, indent=2))
    if n == 200:
        OUT.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
