"""One limiter per external service: adaptive concurrency plus request and token rate limits.

A :class:`ServiceLimiter` is created once per service (the embedding service, the chat
service) from that service's configuration and injected into every component that calls
it, so that all of them share the same budget. Components never make their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from aiolimiter import AsyncLimiter

from langchain_rag_async.aio import LoopBound
from langchain_rag_async.config import RateLimitConfig
from langchain_rag_async.errors import ConfigurationError, UsageError

__all__ = (
    "AdaptiveConcurrencyGate",
    "ServiceLimits",
    "ServiceLimiter",
    "min_request_interval",
    "request_bucket",
)

_TICKET: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "rag_limiter_ticket", default=None
)
"""(limiter id, number) of the request whose slot the current task holds."""


class ServiceLimits(Protocol):
    """The settings a limiter is built from (``EmbeddingConfig`` and ``LLMConfig`` have them)."""

    @property
    def rate_limit(self) -> RateLimitConfig:
        """Requests and tokens per minute of the service."""
        ...

    @property
    def concurrency(self) -> int:
        """Requests in flight at most."""
        ...


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
            UsageError: More releases than acquisitions.
        """
        if self._in_flight <= 0:
            raise UsageError("AdaptiveConcurrencyGate.release() called without acquire()")
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
        self._issued = 0  # requests let through so far: each one's ticket
        self._halved_at = 0  # the ticket count when the limit was last halved
        self._bound: LoopBound[_LoopPrimitives] = LoopBound(self._new_primitives)

    @classmethod
    def from_config(cls, name: str, config: ServiceLimits) -> ServiceLimiter:
        """Build the limiter of a service from its settings.

        Args:
            name: Service name, used in logs and errors (e.g. ``"embeddings:openai"``,
                ``"chat:openai"``).
            config: Any settings with ``rate_limit`` and ``concurrency``
                (``EmbeddingConfig``, ``LLMConfig``).
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
            tokens: Estimated tokens of the request (``_text.estimate_tokens``).

        Yields:
            Nothing; the slot is released when the block exits, also on errors and cancellation.

        Raises:
            ConfigurationError: ``tokens`` is negative.
        """
        if tokens < 0:
            raise ConfigurationError(f"tokens must not be negative; got {tokens}")
        primitives = self._primitives()
        await primitives.gate.acquire()
        try:
            if primitives.requests is not None:
                await primitives.requests.acquire()
            if primitives.tokens is not None and tokens > 0:
                await primitives.tokens.acquire(min(float(tokens), primitives.tokens.max_rate))
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            self._issued += 1
            ticket = _TICKET.set((id(self), self._issued))
            try:
                yield
            finally:
                self._in_flight -= 1
                _TICKET.reset(ticket)
        finally:
            primitives.gate.release()

    def record_rate_limited(self) -> None:
        """Halve the concurrency limit (never below 1) after the service answered 429.

        Once per congestion event, as TCP does once per round trip: a 429 to a request
        let through before the last halving (called inside its :meth:`slot`) reports the
        congestion already reacted to, so it does not halve again. Without that, a burst
        of 429s to the requests in flight, or a service that refuses a share of requests
        at random, would drive the limit to 1.
        """
        ticket = _TICKET.get()
        if ticket is not None and ticket[0] == id(self) and ticket[1] <= self._halved_at:
            return
        self._successes = 0
        self._halved_at = self._issued
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
        for loop, primitives in self._bound.live():
            if loop is running:
                primitives.gate.set_limit(limit)
            else:
                with contextlib.suppress(RuntimeError):  # closed in the meantime
                    loop.call_soon_threadsafe(primitives.gate.set_limit, limit)

    def _primitives(self) -> _LoopPrimitives:
        primitives = self._bound.peek()
        if primitives is None:
            self._bound.pop_stale()  # closed loops' gates and buckets hold nothing to release
            primitives = self._bound.get()
        return primitives

    def _new_primitives(self) -> _LoopPrimitives:
        return _LoopPrimitives(
            gate=AdaptiveConcurrencyGate(self._limit),
            requests=self._request_limiter(),
            tokens=self._token_limiter(),
        )

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
