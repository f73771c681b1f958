"""Token and cost accounting.

``Usage`` is a value: add two and you get their sum. ``cost_usd`` is the sum of the
priced calls only; it is ``None`` when no call in the sum had a known price, and
``unpriced_calls`` says how many calls were left out of it. An unknown price is never 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def estimate_tokens(text: str) -> int:
    """The estimate used wherever a real tokenizer is not at hand: one token per 4 characters.

    It is the usual rule of thumb for English and code with BPE vocabularies; the fakes in
    :mod:`recursor.testing` use it, and so do budget pre-checks before a call is made.
    """
    return (len(text) + 3) // 4


def estimate_message_tokens(messages: list[dict[str, str]]) -> int:
    """Estimated input tokens of a chat: content estimate plus 4 tokens of framing per message."""
    return sum(estimate_tokens(m.get("content") or "") + 4 for m in messages)


@dataclass(frozen=True, slots=True)
class Pricing:
    """Dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True, slots=True)
class Usage:
    """Calls, tokens and cost of one call or of many added together."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    #: calls whose price was unknown and so are not in ``cost_usd``
    unpriced_calls: int = 0
    #: calls answered from a cache (they cost nothing and are in ``calls`` too)
    cached_calls: int = 0
    #: calls whose token counts are estimates (the server sent no usage)
    estimated_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if self.cost_usd is None and other.cost_usd is None:
            cost = None
        else:
            cost = (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=cost,
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
            cached_calls=self.cached_calls + other.cached_calls,
            estimated_calls=self.estimated_calls + other.estimated_calls,
        )

    @classmethod
    def of_call(
        cls,
        input_tokens: int,
        output_tokens: int,
        pricing: Pricing | None,
        *,
        estimated: bool = False,
    ) -> Usage:
        """The usage of one model call, priced when ``pricing`` is known."""
        return cls(
            calls=1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=None if pricing is None else pricing.cost(input_tokens, output_tokens),
            unpriced_calls=1 if pricing is None else 0,
            estimated_calls=1 if estimated else 0,
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "unpriced_calls": self.unpriced_calls,
            "cached_calls": self.cached_calls,
            "estimated_calls": self.estimated_calls,
        }


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Usage of a whole recursion tree: in total and per model name."""

    total: Usage = field(default_factory=Usage)
    by_model: dict[str, Usage] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "total": self.total.to_dict(),
            "by_model": {k: v.to_dict() for k, v in self.by_model.items()},
        }
