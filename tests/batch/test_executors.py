"""The same suite for both executors, on real worker processes and on a real two-node Ray
cluster started here on 127.0.0.1: items land on both, a lost worker or node costs no item,
a killed driver resumes, and every id has exactly one result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recursor.batch import JobSpec, ProcessExecutor, RayExecutor, run
from recursor.batch.executor import Executor
from recursor.lm.stub_server import StubServer
from tests.batch.conftest import make_items, read_results

REPO = Path(__file__).resolve().parents[2]
SPEC = JobSpec(model="openai:stub", max_depth=0, trace_dir=None)


def add_node(cluster: Any) -> Any:
    """A one-CPU node. Ray 2.x gives a raylet a hard-coded 30 s to register; on a loaded
    2-core machine that is sometimes too short, so a node that timed out is tried again."""
    for attempt in range(3):
        try:
            node = cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
            cluster.wait_for_nodes()
            return node
        except Exception:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A head that runs no tasks (num_cpus=0) and two one-CPU worker nodes; node deaths are
    noticed within about two seconds."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 80 * 2**20,
            "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    for _ in range(2):
        add_node(cluster)
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def _executor(kind: str, request: pytest.FixtureRequest, stub: StubServer) -> Executor:
    if kind == "process":
        return ProcessExecutor(2)
    request.getfixturevalue("ray_cluster")
    return RayExecutor(env={"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": "k"})


KINDS = [pytest.param("process"), pytest.param("ray", marks=pytest.mark.ray)]


def _one_per_id(out: Path, n: int) -> list[dict[str, Any]]:
    results = read_results(out)
    counts = Counter(r["id"] for r in results)
    assert counts == Counter({f"i{i}": 1 for i in range(n)})
    for r in results:
        assert r["answer"] == f"ans-Q{r['id'][1:]}", r
    return results


@pytest.mark.parametrize("kind", KINDS)
def test_items_land_on_both_workers_once_each(
    kind: str, request: pytest.FixtureRequest, stub: StubServer, tmp_path: Path
) -> None:
    stub.script.delay = 0.3  # long enough that one worker cannot take every item
    summary = run(make_items(8), _executor(kind, request, stub), out=tmp_path, spec=SPEC)
    assert summary.finished == 8 and summary.failed == 0
    results = _one_per_id(tmp_path, 8)
    assert len({r["node"] for r in results}) == 2
    assert all(r["stop_reason"] == "final" and r["wall_s"] > 0 for r in results)
    again = run(make_items(8), _executor(kind, request, stub), out=tmp_path, spec=SPEC)
    assert again.skipped == 8 and again.finished == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_driver_resumes_and_writes_each_id_once(
    kind: str, request: pytest.FixtureRequest, stub: StubServer, tmp_path: Path
) -> None:
    stub.script.delay = 0.2
    n = 10
    where = "process"
    if kind == "ray":
        where = request.getfixturevalue("ray_cluster").address
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.batch._driver", str(tmp_path), str(n), where],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results = tmp_path / "results.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its local workers
    driver.wait()
    done_before = len(read_results(tmp_path))
    assert 3 <= done_before < n
    with results.open("a") as f:  # what a kill in the middle of a write leaves
        f.write('{"id": "i9", "answer": "ans-')
    summary = run(make_items(n), _executor(kind, request, stub), out=tmp_path, spec=SPEC)
    assert summary.skipped == done_before and summary.finished == n - done_before
    _one_per_id(tmp_path, n)


def test_a_lost_worker_process_costs_no_item(stub: StubServer, tmp_path: Path) -> None:
    """A worker process killed mid-item: the pool breaks, and the items it held start again
    in a new one (as Ray re-runs a lost node's tasks); each id is written once."""
    stub.script.delay = 0.3
    killed = False

    def kill_one(record: Any, outcome: Any, summary: Any) -> None:
        nonlocal killed
        if not killed and outcome.node:
            killed = True
            os.kill(int(outcome.node.rpartition(":")[2]), signal.SIGKILL)

    summary = run(make_items(8), ProcessExecutor(2), out=tmp_path, spec=SPEC, on_result=kill_one)
    assert killed
    assert summary.failed == 0 and summary.finished == 8
    _one_per_id(tmp_path, 8)


def _die_on_two(x: int) -> int:
    if x == 2:
        os._exit(1)  # what an out-of-memory kill looks like to the pool
    return x * 10


def test_an_argument_whose_worker_keeps_dying_is_reported_after_its_retries() -> None:
    outcomes = list(ProcessExecutor(1, max_retries=1).map_unordered(_die_on_two, [1, 2, 3]))
    by_arg = {o.arg: o for o in outcomes}
    assert sorted(by_arg) == [1, 2, 3] and len(outcomes) == 3
    assert by_arg[1].value == 10 and by_arg[3].value == 30
    assert by_arg[2].value is None and "worker lost 2 times" in (by_arg[2].error or "")


@pytest.mark.ray
def test_a_node_lost_mid_batch_has_its_items_finished_elsewhere(
    ray_cluster: Any, stub: StubServer, tmp_path: Path
) -> None:
    stub.script.delay = 0.3
    victim = add_node(ray_cluster)
    victim_id = victim.node_id
    removed = False

    def lose_node(record: Any, outcome: Any, summary: Any) -> None:
        nonlocal removed
        # once the victim has finished an item it surely holds another: remove it then
        if not removed and outcome.node == victim_id:
            removed = True
            ray_cluster.remove_node(victim, allow_graceful=False)

    executor = RayExecutor(env={"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": "k"})
    summary = run(make_items(12), executor, out=tmp_path, spec=SPEC, on_result=lose_node)
    assert removed
    assert summary.failed == 0 and summary.finished == 12
    results = _one_per_id(tmp_path, 12)
    nodes = Counter(r["node"] for r in results)
    assert nodes[victim_id] >= 1 and len(nodes) >= 2


@pytest.mark.ray
def test_bench_ray_runs_the_matrix_on_the_cluster(
    ray_cluster: Any, stub: StubServer, tmp_path: Path
) -> None:
    import json
    import re

    from typer.testing import CliRunner

    from recursor.cli import app

    calls: list[int] = []

    def reader(chat: list[dict[str, str]]) -> str:
        calls.append(1)
        found = re.search(r"magic numbers for [\w-]+ is: (\d+)", chat[-1]["content"])
        return found.group(1) if found else "unknown"

    stub.script.handler = reader
    out = tmp_path / "bench"
    args = [
        "bench", "--families", "sniah", "--methods", "direct,bm25", "--model", "openai:gpt-4o-mini",
        "--n", "2", "--lengths", "1000", "--ray", "auto", "--out", str(out),
    ]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["ray"] == "auto"
    assert len(data["records"]) == 4 and all(r["score"] == 1.0 for r in data["records"])
    made = len(calls)
    assert made >= 4  # by tasks on the cluster's nodes, through the forwarded base URL
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and len(calls) == made  # resumed: nothing ran again
