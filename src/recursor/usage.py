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
    """Dollars per million tokens.

    A provider's prompt cache bills the input tokens it read from the cache at
    ``cached_input_per_mtok`` and the ones it wrote into it at ``cache_write_per_mtok``
    (Anthropic's 1.25x); ``None`` bills them at the full input rate (no discount known)."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def cost(
        self, input_tokens: int, output_tokens: int, cached: int = 0, written: int = 0
    ) -> float:
        """Cost of a call; ``cached`` and ``written`` are parts of ``input_tokens``."""
        full = input_tokens - cached - written
        read_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else (self.cached_input_per_mtok)
        )
        write_rate = (
            self.input_per_mtok
            if self.cache_write_per_mtok is None
            else (self.cache_write_per_mtok)
        )
        return (
            full * self.input_per_mtok
            + cached * read_rate
            + written * write_rate
            + output_tokens * self.output_per_mtok
        ) / 1e6


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
    #: input tokens the provider read from its prompt cache (part of ``input_tokens``)
    cached_input_tokens: int = 0
    #: input tokens the provider wrote into its prompt cache (part of ``input_tokens``)
    cache_write_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input rate (neither read from nor written to a
        prompt cache)."""
        return self.input_tokens - self.cached_input_tokens - self.cache_write_tokens

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
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )

    @classmethod
    def of_call(
        cls,
        input_tokens: int,
        output_tokens: int,
        pricing: Pricing | None,
        *,
        estimated: bool = False,
        cache: tuple[int, int] = (0, 0),
    ) -> Usage:
        """The usage of one model call, priced when ``pricing`` is known; ``cache`` is the
        (read, written) input tokens of the provider's prompt cache, parts of ``input_tokens``."""
        cached, written = cache
        cost = (
            None if pricing is None else pricing.cost(input_tokens, output_tokens, cached, written)
        )
        return cls(
            calls=1,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            unpriced_calls=1 if pricing is None else 0,
            estimated_calls=1 if estimated else 0,
            cached_input_tokens=cached,
            cache_write_tokens=written,
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
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
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
