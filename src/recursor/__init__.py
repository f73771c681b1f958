"""recursor: Recursive Language Models with real sandboxes, hard budgets and typed traces.

    from recursor import RLM, Limits
    result = RLM("openai:gpt-5-mini").completion("question", context=big)
"""

from recursor.errors import LimitExceeded, RecursorError
from recursor.limits import Limits
from recursor.rlm import RLM, RLMResult
from recursor.usage import Pricing, Usage, UsageReport

__all__ = [
    "RLM",
    "LimitExceeded",
    "Limits",
    "Pricing",
    "RLMResult",
    "RecursorError",
    "Usage",
    "UsageReport",
]
__version__ = "0.1.0"
