"""One limiter per external service: adaptive concurrency plus request and token rate limits.

A :class:`ServiceLimiter` is created once per service (from configuration) and injected into
every component that calls that service, so that all of them share the same budget.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiolimiter import AsyncLimiter

from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.config import EmbeddingConfig, RateLimitConfig
from langchain_rag_async.errors import ConfigurationError

__all__ = [
    "AdaptiveConcurrencyGate",
    "ServiceLimiter",
    "estimate_tokens",
    "min_request_interval",
    "request_bucket",
]


def request_bucket(requests_per_minute: float) -> tuple[float, float]:
    """Shape the leaky bucket of a request-per-minute limit so requests are spread out.

    A bucket holding a whole minute of requests would let them all go in one burst, which
    services that enforce their limit per second answer with 429. The bucket holds about one
    second of requests instead (at least one request).

    Args:
        requests_per_minute: The allowed request rate.

    Returns:
        ``(max_rate, time_period)`` for :class:`aiolimiter.AsyncLimiter`.
    """
    per_second = requests_per_minute / 60.0
    capacity = max(1.0, per_second)
    return capacity, capacity / per_second


def min_request_interval(rate_limit: RateLimitConfig, tokens: int = 0) -> float:
    """Seconds one request of ``tokens`` tokens must occupy to stay within ``rate_limit``.

    Used by sequential (sync) callers to pace their requests.

    Args:
        rate_limit: The limits of the service.
        tokens: Estimated tokens of the request (clamped to the per-minute capacity).

    Returns:
        The minimum spacing in seconds between the start of this request and the next one.
    """
    interval = 0.0
    if rate_limit.requests_per_minute is not None:
        interval = 60.0 / rate_limit.requests_per_minute
    tpm = rate_limit.tokens_per_minute
    if tpm is not None and tokens > 0:
        interval = max(interval, min(float(tokens), tpm) * 60.0 / tpm)
    return interval


class AdaptiveConcurrencyGate:
    """A semaphore whose limit may change while tasks wait; bound to one event loop.

    Waiters are served first come, first served. A waiter cancelled while queued is removed;
    a waiter cancelled right after being handed a slot passes the slot on. Lowering the
    limit never interrupts holders: new acquisitions wait until enough of them release.
    """

    __slots__ = ("_in_flight", "_limit", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ConfigurationError(f"a concurrency limit must be at least 1; got {limit}")
        self._limit = limit
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        """How many holders are allowed at once."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """How many holders there are now (may exceed :attr:`limit` right after a decrease)."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """How many tasks are queued (cancelled waiters not yet cleaned up included)."""
        return len(self._waiters)

    def set_limit(self, limit: int) -> None:
        """Change the limit (at least 1) and wake the waiters that now fit."""
        self._limit = max(1, limit)
        self._wake()

    async def acquire(self) -> None:
        """Wait for a slot, then hold it until :meth:`release`."""
        if not self._waiters and self._in_flight < self._limit:
            self._in_flight += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._wake()  # a slot may be free behind waiters that were cancelled meanwhile
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just before the cancellation
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back and wake the next waiter.

        Raises:
            RuntimeError: More releases than acquisitions.
        """
        if self._in_flight <= 0:
            raise RuntimeError("AdaptiveConcurrencyGate.release() called without acquire()")
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                self._in_flight += 1

    def __repr__(self) -> str:
        return (
            f"<AdaptiveConcurrencyGate limit={self._limit} in_flight={self._in_flight} "
            f"waiting={len(self._waiters)}>"
        )


@dataclass(slots=True)
class _LoopPrimitives:
    """The loop-bound parts of a :class:`ServiceLimiter` (one set per event loop)."""

    loop: asyncio.AbstractEventLoop
    gate: AdaptiveConcurrencyGate
    requests: AsyncLimiter | None
    tokens: AsyncLimiter | None


class ServiceLimiter:
    """Shared limits of one external service: adaptive concurrency, requests and tokens per minute.

    Create one per service (:meth:`from_config`) and inject it into every component that calls
    the service. :meth:`slot` waits for a concurrency slot, then for the request and token
    budgets. The concurrency limit adapts AIMD-style: :meth:`record_rate_limited` halves it,
    :meth:`record_success` adds one after a full window of successes; it stays between 1 and
    :attr:`max_concurrency`.

    The asyncio primitives are bound to the running loop lazily and re-created for each new
    loop (e.g. successive ``asyncio.run`` calls of sync wrappers); the configuration and the
    learned concurrency limit carry over. Each loop starts with a fresh rate bucket.
    """

    def __init__(
        self,
        name: str,
        *,
        rate_limit: RateLimitConfig | None = None,
        max_concurrency: int = 8,
    ) -> None:
        if max_concurrency < 1:
            raise ConfigurationError(
                f"max_concurrency of service {name!r} must be at least 1; got {max_concurrency}"
            )
        self.name = name
        self.rate_limit = rate_limit or RateLimitConfig()
        self._max_concurrency = max_concurrency
        self._limit = max_concurrency
        self._successes = 0
        self._in_flight = 0
        self._peak_in_flight = 0
        self._bound: dict[int, _LoopPrimitives] = {}

    @classmethod
    def from_config(cls, name: str, config: EmbeddingConfig) -> ServiceLimiter:
        """Build the limiter of a service from its embedding settings.

        Args:
            name: Service name, used in logs and errors (e.g. ``"openai-embeddings"``).
            config: Supplies ``rate_limit`` and ``concurrency``.
        """
        return cls(name, rate_limit=config.rate_limit, max_concurrency=config.concurrency)

    @property
    def max_concurrency(self) -> int:
        """The configured upper bound of concurrent requests."""
        return self._max_concurrency

    @property
    def concurrency_limit(self) -> int:
        """The current adaptive bound of concurrent requests."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Requests holding a slot now (past the rate limiters)."""
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """Most requests in flight at once since creation or :meth:`reset_peak`."""
        return self._peak_in_flight

    def reset_peak(self) -> None:
        """Restart :attr:`peak_in_flight` from the current :attr:`in_flight`."""
        self._peak_in_flight = self._in_flight

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Hold a concurrency slot and spend one request and ``tokens`` from the budgets.

        A request estimated above the per-minute token capacity is clamped to that capacity,
        so it waits for a full bucket instead of forever.

        Args:
            tokens: Estimated tokens of the request (see :func:`estimate_tokens`).

        Yields:
            Nothing; the slot is released when the block exits, also on errors and cancellation.
        """
        if tokens < 0:
            raise ValueError(f"tokens must not be negative; got {tokens}")
        primitives = self._primitives()
        await primitives.gate.acquire()
        try:
            if primitives.requests is not None:
                await primitives.requests.acquire()
            if primitives.tokens is not None and tokens > 0:
                await primitives.tokens.acquire(min(float(tokens), primitives.tokens.max_rate))
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            try:
                yield
            finally:
                self._in_flight -= 1
        finally:
            primitives.gate.release()

    def record_rate_limited(self) -> None:
        """Halve the concurrency limit (never below 1) after the service answered 429."""
        self._successes = 0
        self._set_limit(max(1, self._limit // 2))

    def record_success(self) -> None:
        """Count a success; after as many successes as the limit, raise the limit by one."""
        if self._limit >= self._max_concurrency:
            return
        self._successes += 1
        if self._successes >= self._limit:
            self._successes = 0
            self._set_limit(self._limit + 1)

    def _set_limit(self, limit: int) -> None:
        limit = min(self._max_concurrency, max(1, limit))
        if limit == self._limit:
            return
        self._limit = limit
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for primitives in list(self._bound.values()):
            if primitives.loop is running:
                primitives.gate.set_limit(limit)
            elif not primitives.loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed in the meantime
                    primitives.loop.call_soon_threadsafe(primitives.gate.set_limit, limit)

    def _primitives(self) -> _LoopPrimitives:
        loop = asyncio.get_running_loop()
        primitives = self._bound.get(id(loop))
        if primitives is not None and primitives.loop is loop:
            return primitives
        primitives = _LoopPrimitives(
            loop=loop,
            gate=AdaptiveConcurrencyGate(self._limit),
            requests=self._request_limiter(),
            tokens=self._token_limiter(),
        )
        alive = {key: p for key, p in self._bound.items() if not p.loop.is_closed()}
        alive[id(loop)] = primitives
        self._bound = alive
        return primitives

    def _request_limiter(self) -> AsyncLimiter | None:
        rpm = self.rate_limit.requests_per_minute
        if rpm is None:
            return None
        max_rate, period = request_bucket(rpm)
        return AsyncLimiter(max_rate, period)

    def _token_limiter(self) -> AsyncLimiter | None:
        tpm = self.rate_limit.tokens_per_minute
        return None if tpm is None else AsyncLimiter(tpm, 60.0)

    def __repr__(self) -> str:
        return (
            f"<ServiceLimiter {self.name!r} limit={self._limit}/{self._max_concurrency} "
            f"in_flight={self._in_flight} rate_limit={self.rate_limit}>"
        )
