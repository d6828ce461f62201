"""One limiter per external service: adaptive concurrency plus request and token rate limits.

A :class:`ServiceLimiter` is created once per service (the embedding service, the chat
service) from that service's configuration and injected into every component that calls
it, so that all of them share the same budget. Components never make their own.

Requests are paced by a :class:`RequestPacer`: sliding windows of a stated rate's
one-second share, and of the limits the service states in its answers (OpenAI's
``x-ratelimit-*`` headers and ``Retry-After``, see :class:`LimitAnswer`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import math
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

BURST_SECONDS = 1.0
"""A rate is paced as its share of a window this long: 1200 per minute as 20 per second."""
MAX_LEARNED_WINDOW = 60.0
"""Longest window learnt from a ``reset`` header; longer ones (daily limits) are not paced."""
MAX_WINDOW_MARGIN = 0.25
"""The most a window is lengthened by after refusals met while paced (a fraction)."""
_UNPACED_LOG = 256  # request starts kept while no window is known (to learn from answers)
RATE_BACKOFF = 0.9
"""After a refusal that names no limit, requests are spaced at this share of the rate the
service admitted just before."""
RATE_GROWTH = 0.03
"""Requests per second a learnt rate grows by with each success (about 3 % a second)."""
MIN_LEARNT_RATE = 0.5
"""The slowest a learnt rate goes, in requests per second."""
PEAK_SHARE = 0.4
"""A learnt rate never falls below this share of the highest admitted rate seen, so that
refusals at random (faults, not a limit) cost at most that share of the throughput."""


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


@dataclass(frozen=True, slots=True)
class RequestWindow:
    """At most :attr:`requests` requests may start in any :attr:`seconds` (sliding)."""

    requests: int
    seconds: float


def request_windows(requests: float, seconds: float = 60.0) -> tuple[RequestWindow, ...]:
    """The sliding windows that pace ``requests`` per ``seconds``.

    A limit stated per minute is often enforced over a second or ten, and a bucket holding a
    minute of requests (or even a second of them, refilled as it drains) lets through more
    than a second's share within one second. So the rate is paced as a sliding window of its
    :data:`BURST_SECONDS` share (at least one request): 1200 per minute as 20 in any second,
    which also keeps every longer window (10 s, a minute) within its share. A window
    shorter than that is kept as it is.

    Args:
        requests: Requests allowed per ``seconds``.
        seconds: Length of the window the limit is stated for.
    """
    rate = requests / seconds
    burst = max(1, math.floor(rate * BURST_SECONDS + 1e-9))
    if burst >= requests:  # the window is a second or less (or holds under one request)
        return (RequestWindow(burst, burst / rate),)
    return (RequestWindow(math.floor(requests + 1e-9), seconds), RequestWindow(burst, burst / rate))


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


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitAnswer:
    """What one answer of the service said about its request limit.

    Read from OpenAI's ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests``,
    ``x-ratelimit-reset-requests`` (the time until the limit is back to its initial state)
    and ``retry-after`` headers (any of them may be missing).

    Attributes:
        limit: Requests allowed per window.
        remaining: Requests left in the window when this request was counted.
        reset: Seconds until the window is back to its full limit.
        retry_after: Seconds the service asked to wait (on a refusal).
        refused: The answer was a 429.
    """

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    retry_after: float | None = None
    refused: bool = False


@dataclass(slots=True)
class _Learnt:
    """What the answers taught about the service's window (shared by every loop's pacer)."""

    limit: int | None = None
    window: float = 0.0
    windows: tuple[RequestWindow, ...] = ()
    margin: float = 0.03
    widened_at: int = 0  # the ticket count when the margin was last widened
    rate: float = 0.0  # requests per second learnt from refusals that name no limit (0: none)
    peak: float = 0.0  # the highest admitted rate measured at a refusal
    cut_at: int = 0  # the ticket count when the rate was last cut


class RequestPacer:
    """Decides when the next request may start: sliding windows over past request starts.

    The windows are those of the stated rate (:func:`request_windows`) and those learnt
    from the service's answers (:meth:`observe`): its limit per window, the window's length
    (the longest ``reset`` seen: the time until a window that just counted a request is
    clear again), the requests it counts that this pacer did not send (other clients, an
    earlier run), and the ``Retry-After`` of a 429 that names the limit. Every window is
    checked ``1 + margin`` times as long.

    A service that refuses without naming its limit (no ``x-ratelimit-limit-requests``)
    while no window is known is paced by a rate learnt AIMD-style: at a refusal (once per
    congestion event), requests are held for its ``Retry-After`` and then spaced at
    :data:`RATE_BACKOFF` of the rate the service admitted (requests started and not
    refused) over the last second (and the last ten, once the run is that old), one at
    a time; each success raises the rate by
    :data:`RATE_GROWTH` (nothing is learnt without a success in the last ten seconds: a
    spent quota, an outage). So the requests refused together come back one by one at a rate
    the service accepts, instead of all at once after the same ``Retry-After``.

    A request is counted from when the service most likely received it: its start, or,
    once answered, its answer's time less the quickest answer seen, if that is later. The
    first requests of a run wait for their connections and reach the service tens of
    milliseconds after they start, later ones a millisecond after: counted from their
    starts, the windows would clear too soon.

    No I/O and no clock of its own: callers pass ``now`` (the event loop's time), so tests
    drive it with made-up times.

    Args:
        stated: The windows of the configured rate.
        margin: The fraction every window is lengthened by, at first.
        shared: What the other pacers of the same limiter learnt (one per event loop).
    """

    __slots__ = (
        "_answers",
        "_entries",
        "_foreign",
        "_first_start",
        "_hold_until",
        "_last_start",
        "_learnt",
        "_quickest",
        "_refused",
        "_starts",
        "_times",
        "stated",
    )

    def __init__(
        self,
        stated: tuple[RequestWindow, ...] = (),
        *,
        margin: float = 0.03,
        shared: _Learnt | None = None,
    ) -> None:
        self.stated = stated
        self._learnt = shared if shared is not None else _Learnt(margin=margin)
        self._entries = 0  # requests counted so far
        self._starts: dict[int, float] = {}  # entry -> start (in start order)
        self._answers: dict[int, float] = {}  # entry -> successful answer
        self._foreign: list[float] = []  # when the service's other requests count
        self._times: list[float] | None = None  # when each request counts, sorted (a cache)
        self._quickest = math.inf  # the quickest answer seen, in seconds
        self._hold_until = -math.inf
        self._first_start = math.inf
        self._last_start = -math.inf
        self._refused: set[float] = set()  # starts of the requests refused (no limit named)

    @property
    def windows(self) -> tuple[RequestWindow, ...]:
        """Every window now paced: stated, then learnt."""
        return self.stated + self._learnt.windows

    @property
    def margin(self) -> float:
        """The fraction every window is lengthened by."""
        return self._learnt.margin

    @property
    def learnt_rate(self) -> float | None:
        """Requests per second learnt from refusals that name no limit (``None``: none)."""
        return self._learnt.rate or None

    def delay(self, now: float) -> float:
        """Seconds until a request may start (0: now)."""
        wait = self._hold_until - now
        if self._learnt.rate > 0:
            wait = max(wait, self._last_start + 1.0 / self._learnt.rate - now)
        windows = self.windows
        if windows:
            times = self._counted()
            stretch = 1.0 + self._learnt.margin
            for window in windows:
                if len(times) >= window.requests:
                    wait = max(wait, times[-window.requests] + window.seconds * stretch - now)
        return max(0.0, wait)

    def record_start(self, now: float) -> int:
        """Count a request starting at ``now``; return its entry (for :meth:`record_answer`)."""
        self._entries += 1
        number = self._entries
        self._starts[number] = now
        self._first_start = min(self._first_start, now)
        self._last_start = max(self._last_start, now)
        self._times = None
        keep = 2 * max([w.requests for w in self.windows] + [_UNPACED_LOG]) + 64
        if len(self._starts) > 2 * keep:
            for old in list(self._starts)[:-keep]:
                del self._starts[old]
                self._answers.pop(old, None)
            horizon = now - 2.0 * max([w.seconds for w in self.windows] + [MAX_LEARNED_WINDOW])
            self._foreign = [t for t in self._foreign if t >= horizon]
        return number

    def record_answer(self, number: int, now: float) -> None:
        """The request of entry ``number`` was answered successfully at ``now``.

        The first call counts: the answer's arrival, not the end of the work done with it.
        """
        started = self._starts.get(number)
        if started is None or number in self._answers:
            return
        self._answers[number] = now
        self._quickest = min(self._quickest, now - started)
        self._times = None
        if self._learnt.rate > 0:
            self._learnt.rate += RATE_GROWTH

    def _counted(self) -> list[float]:
        """When each request counts for the service, sorted (see the class docstring)."""
        if self._times is None:
            quickest, answers = self._quickest, self._answers
            self._times = sorted(
                [
                    max(start, answers[number] - quickest) if number in answers else start
                    for number, start in self._starts.items()
                ]
                + self._foreign
            )
        return self._times

    def observe(
        self, answer: LimitAnswer, *, started: float, now: float, ticket: int = 0, issued: int = 0
    ) -> None:
        """Learn from the answer to a request that started at ``started``, read at ``now``.

        Args:
            answer: What the answer said.
            started: When the request was let through (``now`` when unknown).
            now: The current time.
            ticket: The request's number (0: unknown), to widen the margin once per event.
            issued: Requests let through so far.
        """
        learnt = self._learnt
        if answer.limit is None or answer.limit < 1:
            if answer.refused and not self.windows:
                self._refused.add(started)
                self._cut_rate(answer, now=now, ticket=ticket, issued=issued)
            return  # not about a request window
        if answer.refused:
            if answer.retry_after is not None:  # for every request, not only the refused one
                self._hold_until = max(self._hold_until, now + answer.retry_after)
            if self.windows and (ticket == 0 or ticket > learnt.widened_at):
                learnt.margin = min(MAX_WINDOW_MARGIN, max(0.01, learnt.margin * 2))
                learnt.widened_at = issued
        if answer.reset is not None and 0 < answer.reset <= MAX_LEARNED_WINDOW:
            learnt.window = max(learnt.window, answer.reset)
        if learnt.window <= 0:
            return
        if answer.limit != learnt.limit or learnt.windows[:1] != (
            RequestWindow(answer.limit, learnt.window),
        ):
            learnt.limit = answer.limit
            learnt.windows = request_windows(answer.limit, learnt.window)
        if answer.remaining is not None:
            self._count_foreign(answer, started, now)

    def _cut_rate(self, answer: LimitAnswer, *, now: float, ticket: int, issued: int) -> None:
        """A refusal naming no limit: hold for its ``Retry-After``, space by a lower rate.

        Once per congestion event: a refusal of a request let through before the last cut
        reports the congestion already reacted to.
        """
        learnt = self._learnt
        if ticket and ticket <= learnt.cut_at:
            return
        learnt.cut_at = issued
        if answer.retry_after is not None and answer.retry_after > 0:
            self._hold_until = max(self._hold_until, now + answer.retry_after)
        if not any(t >= now - 10.0 for t in self._answers.values()):
            return  # no success lately: no rate to learn (a spent quota, an outage)
        admitted = self._admitted_rate(now)
        learnt.peak = max(learnt.peak, admitted)
        learnt.rate = max(MIN_LEARNT_RATE, PEAK_SHARE * learnt.peak, RATE_BACKOFF * admitted)

    def _admitted_rate(self, now: float) -> float:
        """Requests per second the service admitted lately: started, and not refused.

        Requests still in flight count as admitted (a burst is refused while its first
        requests are still being answered). The lowest over the last second and, once
        this pacer is that old, the last ten: a service with a ten-second window admits
        a burst, then nothing.
        """
        refused = self._refused
        admitted = sorted(t for t in self._starts.values() if t not in refused)
        horizon = now - 11.0  # older refusals fall out of both horizons
        self._refused = {t for t in refused if t >= horizon}
        rates = []
        for seconds in (1.0, 10.0):
            if seconds == 1.0 or now - self._first_start >= seconds:
                count = len(admitted) - bisect.bisect_left(admitted, now - seconds)
                rates.append(count / seconds)
        return min(rates)

    def _count_foreign(self, answer: LimitAnswer, started: float, now: float) -> None:
        """Add the requests the service counts in its window that this pacer did not send.

        Ours are at most those counted since a window before ``started`` (the foreign ones
        found earlier included); the rest came from elsewhere and leave the window at the
        latest when it resets.
        """
        limit, remaining = answer.limit or 0, answer.remaining or 0
        window = self._learnt.window
        counted = max(0, limit - max(0, remaining))
        times = self._counted()
        ours = len(times) - bisect.bisect_left(times, started - window)
        foreign = counted - ours
        if foreign > 0:
            reset = window if answer.reset is None else min(answer.reset, window)
            self._foreign.extend([min(now, now + reset - window)] * foreign)
            self._times = None


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
        self._learnt = _Learnt(margin=self.rate_limit.window_margin)
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
