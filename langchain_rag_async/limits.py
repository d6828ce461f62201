"""One limiter per external service: adaptive concurrency plus request and token rate limits.

A :class:`ServiceLimiter` is created once per service (the embedding service, the chat
service) from that service's configuration and injected into every component that calls
it, so that all of them share the same budget. Components never make their own.

Requests are paced by a :class:`~langchain_rag_async.pacing.RequestPacer` (in
``pacing.py``, re-exported here): sliding windows of a stated rate's one-second share, of
the limits the service states in its answers (OpenAI's ``x-ratelimit-*`` headers and
``Retry-After``), and a rate learnt from refusals that state nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from aiolimiter import AsyncLimiter

from langchain_rag_async.aio import LoopBound
from langchain_rag_async.config import RateLimitConfig
from langchain_rag_async.errors import ConfigurationError, UsageError
from langchain_rag_async.metrics import ADAPTIVE_CONCURRENCY, RATE_LIMITER_WAIT
from langchain_rag_async.pacing import (
    BURST_SECONDS,
    MAX_LEARNED_WINDOW,
    MAX_WINDOW_MARGIN,
    RATE_BACKOFF,
    RATE_GROWTH,
    LearntLimits,
    LimitAnswer,
    RequestPacer,
    RequestWindow,
    request_windows,
)

__all__ = (
    "BURST_SECONDS",
    "MAX_LEARNED_WINDOW",
    "MAX_WINDOW_MARGIN",
    "RATE_BACKOFF",
    "RATE_GROWTH",
    "AdaptiveConcurrencyGate",
    "LimitAnswer",
    "RequestPacer",
    "RequestWindow",
    "ServiceLimits",
    "ServiceLimiter",
    "min_request_interval",
    "request_windows",
)

_TICKET: contextvars.ContextVar[tuple[int, int, float, int] | None] = contextvars.ContextVar(
    "rag_limiter_ticket", default=None
)
"""(limiter id, number, loop time it was let through, pacer entry) of the request whose
slot the current task holds."""


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
    pacer: RequestPacer
    tokens: AsyncLimiter | None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)


class ServiceLimiter:
    """Shared limits of one external service: adaptive concurrency, requests and tokens per minute.

    Create one per service (:meth:`from_config`) and inject it into every component that calls
    the service. :meth:`slot` waits for a concurrency slot, then for the request pacer
    (:class:`RequestPacer`) and the token budget. The concurrency limit adapts AIMD-style:
    :meth:`record_rate_limited` halves it, :meth:`record_success` adds one after a full
    window of successes; it stays between 1 and :attr:`max_concurrency`. What the service's
    answers say about its limits (:meth:`observe`) is paced as well.

    The asyncio primitives are bound to the running loop lazily and re-created for each new
    loop (e.g. successive ``asyncio.run`` calls of sync wrappers); the configuration, the
    learned concurrency limit and the learnt windows carry over. Each loop starts with no
    request counted in its windows.
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
        self._stated = (
            ()
            if self.rate_limit.requests_per_minute is None
            else request_windows(self.rate_limit.requests_per_minute)
        )
        self._learnt = LearntLimits(margin=self.rate_limit.window_margin)
        self._bound: LoopBound[_LoopPrimitives] = LoopBound(self._new_primitives)
        ADAPTIVE_CONCURRENCY.labels(service=name).set(max_concurrency)

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

    @property
    def learnt_rate(self) -> float | None:
        """Requests per second learnt from refusals that name no limit (``None``: none)."""
        return self._learnt.rate or None

    @property
    def paced_windows(self) -> tuple[RequestWindow, ...]:
        """The sliding windows requests are paced by: stated, then learnt from answers."""
        return self._stated + self._learnt.windows

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
        asked = primitives.loop.time()
        await primitives.gate.acquire()
        try:
            if primitives.tokens is not None and tokens > 0:
                await primitives.tokens.acquire(min(float(tokens), primitives.tokens.max_rate))
            entry, started = await self._paced(primitives)
            RATE_LIMITER_WAIT.labels(service=self.name).observe(started - asked)
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            self._issued += 1
            ticket = _TICKET.set((id(self), self._issued, started, entry))
            try:
                yield
            finally:
                self._in_flight -= 1
                _TICKET.reset(ticket)
            primitives.pacer.record_answer(entry, primitives.loop.time())
        finally:
            primitives.gate.release()

    @staticmethod
    async def _paced(primitives: _LoopPrimitives) -> tuple[int, float]:
        """Wait until the pacer lets a request start; count it; its entry and start time."""
        loop, pacer = primitives.loop, primitives.pacer
        while (wait := pacer.delay(loop.time())) > 0:  # noqa: ASYNC110 - a deadline, not an event
            await asyncio.sleep(wait)
        started = loop.time()
        return pacer.record_start(started), started

    def observe(self, answer: LimitAnswer) -> None:
        """Learn from what an answer of the service said about its request limit.

        Called inside the request's :meth:`slot` (a response hook of the HTTP client, or
        the handler of a 429), so that the answer is matched with the time its request
        started. The windows learnt pace the next requests of every loop; a ``Retry-After``
        of a refusal holds back this loop's next requests; a refusal met while already
        paced lengthens the windows (once per congestion event). Outside a running event
        loop, or inside the slot of another limiter (the answer is another service's), it
        does nothing.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        primitives = self._primitives()
        now = loop.time()
        ticket = _TICKET.get()
        if ticket is not None and ticket[0] != id(self):
            return
        primitives.pacer.observe(
            answer,
            started=now if ticket is None else ticket[2],
            now=now,
            ticket=0 if ticket is None else ticket[1],
            issued=self._issued,
        )

    def record_answered(self) -> None:
        """Note that the service answered the request whose :meth:`slot` this task holds.

        Call it as soon as the answer arrives, before working with it (validating, storing):
        the pacer counts a request from its answer's arrival less the quickest answer seen
        (see :class:`RequestPacer`). Without a call, the end of the slot is taken.
        """
        ticket = _TICKET.get()
        primitives = self._bound.peek()
        if ticket is not None and ticket[0] == id(self) and primitives is not None:
            primitives.pacer.record_answer(ticket[3], primitives.loop.time())

    def record_rate_limited(self) -> None:
        """Halve the concurrency limit (never below 1) after the service answered 429.

        Once per congestion event, as TCP does once per round trip: a 429 to a request
        let through before the last halving (called inside its :meth:`slot`) reports the
        congestion already reacted to, so it does not halve again. Without that, a burst
        of 429s to the requests in flight, or a service that refuses a share of requests
        at random, would drive the limit to 1. Refusals naming no limit that the pacer
        finds scattered (:meth:`RequestPacer.scattered_refusals`: a flaky service's) do not
        halve it at all.
        """
        ticket = _TICKET.get()
        if ticket is not None and ticket[0] == id(self) and ticket[1] <= self._halved_at:
            return
        primitives = self._bound.peek()
        if primitives is not None and primitives.pacer.scattered_refusals(primitives.loop.time()):
            return  # a flaky service's random refusals: the refused request's retry is enough
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
        ADAPTIVE_CONCURRENCY.labels(service=self.name).set(limit)
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
            pacer=RequestPacer(self._stated, shared=self._learnt),
            tokens=self._token_limiter(),
        )

    def _token_limiter(self) -> AsyncLimiter | None:
        tpm = self.rate_limit.tokens_per_minute
        return None if tpm is None else AsyncLimiter(tpm, 60.0)

    def __repr__(self) -> str:
        return (
            f"<ServiceLimiter {self.name!r} limit={self._limit}/{self._max_concurrency} "
            f"in_flight={self._in_flight} rate_limit={self.rate_limit}>"
        )
