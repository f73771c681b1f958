"""The sub-call broker: serves ``llm_query``, ``rlm_query`` and their batched forms.

Modules, by idea:

* :mod:`~recursor.broker.batch` — :class:`Broker`, the seam a REPL calls: a request as a batch
  of items, each a plain call or a child run, cancelled with its cell or run;
* :mod:`~recursor.broker.depth` — :class:`DepthPlan`, what the functions do at each depth;
* :mod:`~recursor.broker.plain` — one plain call: window, cache, slots, cost, retries;
* :mod:`~recursor.broker.items` — :class:`ItemResult`, one record per item of a batch;
* :mod:`~recursor.broker.scope` — :class:`BrokerScope`, what a broker knows of its tree;
* :mod:`~recursor.broker.runtime` — the tree's event loop and shared limits, and
  :class:`BrokerOptions`;
* :mod:`~recursor.broker.policy` — per-model limits, rate buckets, retries;
* :mod:`~recursor.broker.cache` — the sub-call cache (memory, optionally SQLite).
"""

from recursor.broker.batch import Broker
from recursor.broker.cache import SubcallCache, cache_key
from recursor.broker.depth import DepthPlan
from recursor.broker.items import ItemResult
from recursor.broker.policy import ModelLimits, RetryPolicy
from recursor.broker.runtime import BrokerOptions, BrokerRuntime
from recursor.broker.scope import BrokerScope, ChildRunner

__all__ = [
    "Broker",
    "BrokerOptions",
    "BrokerRuntime",
    "BrokerScope",
    "ChildRunner",
    "DepthPlan",
    "ItemResult",
    "ModelLimits",
    "RetryPolicy",
    "SubcallCache",
    "cache_key",
]
