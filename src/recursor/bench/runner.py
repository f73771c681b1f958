"""The matrix runner: every (task, method) pair as one job, run concurrently, cached for resume.

Each finished job appends one record (the schema :mod:`recursor.bench.report` reads) to
``DIR/records.jsonl`` as it ends, so an interrupted run loses at most the jobs in flight; a run
over the same DIR reuses every record whose key matches — method, task id (which names family,
length, seed and index), models, window, environment and limits — and re-runs only jobs that
crashed (an exception in the harness, ``stop_reason == "crash"``). Scores of runs that ended by
a limit (timeout, budget, iterations) are results, not crashes, and are kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from recursor.bench.endpoint import Endpoint
from recursor.bench.methods import Attempt, Models
from recursor.bench.registry import method
from recursor.bench.task import Task
from recursor.limits import Limits

if TYPE_CHECKING:
    from recursor.batch.executor import Executor

Record = dict[str, Any]
RECORDS = "records.jsonl"


@dataclass(frozen=True)
class Job:
    task: Task
    method: str


#: limits added after results were first cached: part of a job's key only when set, so records
#: made before they existed (when they could only be unset) still match
_LATER_LIMITS = ("max_cost_without_progress_usd",)


def job_key(job: Job, models: Models) -> str:
    """What makes two jobs the same job: any difference here means a fresh run."""
    limits = asdict(models.limits)
    for name in _LATER_LIMITS:
        if limits.get(name) is None:
            limits.pop(name, None)
    ident = {
        "method": job.method,
        "task": job.task.id,
        "root": models.root.name,
        "sub": models.sub.name,
        "window": models.window_tokens,
        "environment": models.environment,
        "limits": limits,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def record_of(job: Job, models: Models, attempt: Attempt, latency: float) -> Record:
    task = job.task
    usage = attempt.usage
    return {
        "key": job_key(job, models),
        "family": task.family,
        "length": task.length,
        "method": job.method,
        "task_id": task.id,
        "model": models.root.name,
        "sub_model": models.sub.name,
        "score": task.score(attempt.answer),
        "answer": attempt.answer,
        "gold": _json_safe(task.gold),
        "latency_s": round(latency, 4),
        "calls": usage.calls,
        "subcalls": attempt.subcalls,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": usage.cost_usd,
        "iterations": attempt.iterations,
        "stop_reason": attempt.stop_reason,
        "error": attempt.error,
    }


def run_job(job: Job, models: Models) -> Record:
    start = time.perf_counter()
    try:
        attempt = method(job.method).run(job.task, models)
    except Exception as exc:  # one job's crash is a record, never the matrix's end
        attempt = Attempt(None, stop_reason="crash", error=f"{type(exc).__name__}: {exc}")
    return record_of(job, models, attempt, time.perf_counter() - start)


def read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    out: list[Record] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a killed run: that job simply runs again
    return out


class _Appender:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, record: Record) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock, self.path.open("a") as f:
            f.write(line)


class MatrixOptions(TypedDict, total=False):
    """How :func:`run_matrix` runs its jobs."""

    #: jobs at once (default 1)
    concurrency: int
    #: ``on_record(record, done, total)``, called as each job ends (for progress display)
    on_record: Callable[[Record, int, int], None] | None
    #: run the jobs on this :mod:`recursor.batch` executor (Ray, worker processes) instead of
    #: threads here; models travel by name (:mod:`recursor.bench.distributed`)
    executor: Executor | None


def run_matrix(
    tasks: Iterable[Task],
    methods: Sequence[str],
    models: Models,
    out_dir: str | Path,
    **options: Unpack[MatrixOptions],
) -> list[Record]:
    """Run every method on every task; the records of this matrix, cached ones included."""
    concurrency = options.get("concurrency", 1)
    on_record = options.get("on_record")
    for name in methods:
        method(name)  # unknown names fail before anything runs
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [Job(task, m) for task in tasks for m in methods]
    cached = {
        r["key"]: r
        for r in read_records(out / RECORDS)
        if r.get("stop_reason") != "crash" and "key" in r
    }
    results: dict[str, Record] = {}
    todo: list[Job] = []
    for job in jobs:
        key = job_key(job, models)
        if key in cached:
            results[key] = cached[key]
        else:
            todo.append(job)
    done = len(results)
    total = len(jobs)
    appender = _Appender(out / RECORDS)
    if on_record is not None:
        for record in results.values():
            on_record(record, done, total)
    for record in _records(todo, models, concurrency, options.get("executor")):
        if record["key"] in results:
            continue  # written once, whatever an executor hands back twice
        appender.add(record)
        results[record["key"]] = record
        done += 1
        if on_record is not None:
            on_record(record, done, total)
    return [results[job_key(job, models)] for job in jobs]


def _records(
    todo: list[Job], models: Models, concurrency: int, executor: Executor | None
) -> Iterable[Record]:
    if executor is not None:
        yield from run_jobs(executor, todo, models)
        return
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="recursor-bench") as pool:
        futures = [pool.submit(run_job, job, models) for job in todo]
        for future in as_completed(futures):
            yield future.result()


# ``recursor bench --ray``: the jobs as tasks of a :mod:`recursor.batch` executor. LM objects
# hold clients and loaded models and do not travel, so a job carries the models by name
# (:class:`ModelSpec`) and each task builds them on its node; the record comes back here and
# is written exactly as a local run's.


@dataclass(frozen=True)
class ModelSpec:
    """:class:`Models` by name: picklable, resolved where the job runs."""

    root: str
    sub: str
    window_tokens: int | None = None
    environment: str = "subprocess"
    limits: Limits = field(default_factory=Limits)
    concurrency: int = 8
    endpoint: Endpoint | None = None

    @classmethod
    def of(cls, models: Models) -> ModelSpec:
        return cls(
            models.root.name,
            models.sub.name,
            models.window_tokens,
            models.environment,
            models.limits,
            models.concurrency,
            models.endpoint,
        )


def run_named_job(spec: ModelSpec, job: Job) -> Record:
    """One job on a worker: the models built from their names, then :func:`run_job`."""
    from recursor.lm.registry import resolve_lm

    root = resolve_lm(spec.root)
    sub = root if spec.sub == spec.root else resolve_lm(spec.sub)
    models = Models(
        root,
        sub,
        spec.window_tokens,
        spec.environment,
        spec.limits,
        spec.concurrency,
        spec.endpoint,
    )
    return run_job(job, models)


def run_jobs(executor: Executor, jobs: Sequence[Job], models: Models) -> Iterator[Record]:
    """Records of ``jobs`` as they end on ``executor`` (a job lost for good is a crash record,
    so the next run retries it)."""
    fn: Callable[[Job], Record] = functools.partial(run_named_job, ModelSpec.of(models))
    for outcome in executor.map_unordered(fn, jobs):
        if outcome.value is not None:
            yield outcome.value
        else:
            lost = Attempt(None, stop_reason="crash", error=outcome.error)
            yield record_of(outcome.arg, models, lost, 0.0)
