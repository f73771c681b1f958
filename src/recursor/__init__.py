"""recursor: Recursive Language Models with real sandboxes, hard budgets and typed traces.

    from recursor import RLM, Limits
    result = RLM("openai:gpt-5-mini").completion("question", context=big)

Exports are resolved lazily: the sandbox worker imports submodules of this package, and must not
pay for the front end (asyncio, the engine, the broker) at every start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recursor.broker import ModelLimits, RetryPolicy
    from recursor.errors import LimitExceeded, RecursorError
    from recursor.limits import Limits
    from recursor.lm.base import LMProfile
    from recursor.rlm import RLM, RLMResult
    from recursor.tools import MCPTools, Tool
    from recursor.usage import Pricing, Usage, UsageReport

_EXPORTS = {
    "RLM": "recursor.rlm",
    "RLMResult": "recursor.rlm",
    "Limits": "recursor.limits",
    "LMProfile": "recursor.lm.base",
    "ModelLimits": "recursor.broker",
    "RetryPolicy": "recursor.broker",
    "LimitExceeded": "recursor.errors",
    "RecursorError": "recursor.errors",
    "Pricing": "recursor.usage",
    "Usage": "recursor.usage",
    "UsageReport": "recursor.usage",
    "Tool": "recursor.tools",
    "MCPTools": "recursor.tools",
}

__all__ = [
    "RLM",
    "LMProfile",
    "LimitExceeded",
    "Limits",
    "MCPTools",
    "ModelLimits",
    "Pricing",
    "RLMResult",
    "RecursorError",
    "RetryPolicy",
    "Tool",
    "Usage",
    "UsageReport",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'recursor' has no attribute {name!r}")
