"""Items as Ray tasks (``pip install "recursor[ray]"``): each runs, sandbox and all, on
whichever node Ray places it, and its result comes back to the driver.

* ``address``: ``"auto"`` joins the cluster named by ``RAY_ADDRESS`` or starts a local Ray;
  any other value is a cluster address (``"ray://head:10001"``, ``"10.0.0.5:6379"``). A Ray
  already initialised in this process is used as it is (and left running).
* A lost node: Ray re-runs the tasks that were on it elsewhere (``max_retries``); an item
  that had already finished there may so end twice, and the driver writes each id once.
* Contexts given by path are read on the node: the path must exist there (a shared
  filesystem), or pass the text as ``context`` (it travels with the task).
* ``env``: variables set in the workers (Ray's ``runtime_env``), for example
  ``OPENAI_BASE_URL``. Keys are not forwarded unless named: Ray keeps ``runtime_env`` in its
  control store in plain text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from recursor.batch.executor import Outcome
from recursor.errors import ConfigurationError

A = TypeVar("A")
R = TypeVar("R")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigurationError(
            f'the Ray executor needs ray (pip install "recursor[ray]"): {exc}'
        ) from exc
    return ray


def _on_node(fn: Callable[[A], R], arg: A) -> tuple[R, str]:
    """The task body: ``fn(arg)`` and the id of the node it ran on."""
    import ray

    return fn(arg), ray.get_runtime_context().get_node_id()


class RayExecutor:
    """Runs each argument as one Ray task needing ``num_cpus`` CPUs; at most ``in_flight``
    tasks are submitted at once (default: twice the cluster's slots, so a node never idles
    waiting for the driver, and a spent budget leaves little in the queue)."""

    def __init__(
        self,
        address: str = "auto",
        *,
        num_cpus: float = 1.0,
        max_retries: int = 3,
        in_flight: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.in_flight = in_flight
        self.env = dict(env or {})
        self._started = False

    def _connect(self) -> Any:
        ray = _import_ray()
        if not ray.is_initialized():
            address = None if self.address == "auto" else self.address
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            self._started = True
        return ray

    @property
    def capacity(self) -> int:
        if self.in_flight is not None:
            return self.in_flight
        ray = self._connect()
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus / self.num_cpus) * 2)

    def map_unordered(self, fn: Callable[[A], R], args: Iterable[A]) -> Iterator[Outcome[A, R]]:
        ray = self._connect()
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "max_retries": self.max_retries}
        if self.env:
            options["runtime_env"] = {"env_vars": self.env}
        task = ray.remote(_on_node).options(**options)
        fn_ref = ray.put(fn)
        source = iter(args)
        room = self.capacity
        running: dict[Any, A] = {}
        try:
            while True:
                for arg in itertools.islice(source, max(0, room - len(running))):
                    running[task.remote(fn_ref, arg)] = arg
                if not running:
                    return
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    arg = running.pop(ref)
                    try:
                        value, node = ray.get(ref)
                    except Exception as exc:  # retries spent (or the task raised)
                        yield Outcome(arg, None, "", f"{type(exc).__name__}: {exc}")
                    else:
                        yield Outcome(arg, value, node)
        finally:
            for ref in running:  # a driver that stops early leaves nothing running
                ray.cancel(ref, force=True)
            if self._started:
                ray.shutdown()
                self._started = False
