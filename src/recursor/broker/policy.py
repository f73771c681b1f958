"""The broker's policies: per-model limits, rate limiting (token buckets) and retries.

Small and loop-bound on purpose: everything here runs on the broker's one event loop, so the
buckets need an ``asyncio.Lock`` and no thread locks.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from recursor.errors import (
    BadResponseError,
    ConfigurationError,
    LMConnectionError,
    LMTimeoutError,
    RateLimitError,
)

#: output tokens assumed for a call whose backend does not say its ``max_tokens``, when
#: reserving its cost (and its tokens-per-minute share) before it starts
DEFAULT_OUTPUT_TOKENS_ESTIMATE = 1024


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """Limits for the calls to one model (``RLM(model_limits={"openai:gpt-5-nano": ...})``).

    ``rpm`` / ``tpm`` are requests / tokens per minute, enforced by token buckets that hold one
    second's worth (so a burst is at most ``rpm / 60`` requests, never a whole minute's).
    """

    max_concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_concurrency", "rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"ModelLimits.{name} must be > 0 or None")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of a failed sub-call: exponential backoff with full jitter.

    Attempt ``k`` (0-based) failing with a retryable error waits ``uniform(0, min(max_s,
    base_s * 2**k))`` seconds, or the server's ``Retry-After`` when it sent one, and never past
    the run deadline. Retryable: 429, 5xx, timeouts and connection errors; never auth errors,
    other 4xx or a context overflow.
    """

    max_attempts: int = 4
    base_s: float = 0.5
    max_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be >= 1")
        if self.base_s < 0 or self.max_s < 0:
            raise ConfigurationError("RetryPolicy delays must be >= 0")

    def delay(self, attempt: int, exc: BaseException) -> float:
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after >= 0:
            return float(retry_after)
        return random.uniform(0.0, min(self.max_s, self.base_s * 2**attempt))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a mapped error: backends chain the SDK exception as the cause."""
    for e in (exc, exc.__cause__):
        status = getattr(e, "status_code", None) or getattr(e, "status", None)
        if isinstance(status, int):
            return status
    return None


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, RateLimitError | LMTimeoutError | LMConnectionError):
        return True
    if isinstance(exc, BadResponseError):
        status = http_status(exc)
        return status is not None and status >= 500
    return False


class TokenBucket:
    """``rate`` units a second, up to ``capacity`` banked; ``take(n)`` waits until it may.

    Waiters are served in arrival order (the lock is held while waiting), so a big request
    is not starved by small ones. A request larger than the capacity waits for a full bucket.
    """

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, capacity)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, n: float = 1.0) -> None:
        n = min(n, self.capacity)
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= n:
                    self._tokens -= n
                    return
                await asyncio.sleep((n - self._tokens) / self.rate)


class ModelGate:
    """What a call to one model must pass: its concurrency slot and its rate buckets."""

    def __init__(self, limits: ModelLimits | None) -> None:
        limits = limits or ModelLimits()
        self.semaphore = (
            asyncio.Semaphore(limits.max_concurrency) if limits.max_concurrency else None
        )
        self.requests = TokenBucket(limits.rpm / 60, limits.rpm / 60) if limits.rpm else None
        self.tokens = TokenBucket(limits.tpm / 60, limits.tpm / 60) if limits.tpm else None

    async def admit(self, tokens: int) -> None:
        """Wait for the rate buckets (call while holding the concurrency slot)."""
        if self.requests is not None:
            await self.requests.take(1)
        if self.tokens is not None:
            await self.tokens.take(tokens)
