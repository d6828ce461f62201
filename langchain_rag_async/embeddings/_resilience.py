"""Retry budget, adaptive attempt deadline and response checks for embedding requests.

A run-wide retry budget, a per-attempt deadline learnt from observed latencies, and the
validation of every response. No I/O here: ``RateLimitedEmbeddings`` (async and sync) calls
these.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from langchain_rag_async.config import RetryConfig
from langchain_rag_async.errors import EmbeddingResponseError

__all__ = (
    "MIN_LATENCY_SAMPLES",
    "AdaptiveDeadline",
    "RetryBudget",
    "checked_vectors",
    "quantile",
)

MIN_LATENCY_SAMPLES = 5
"""Successful attempts observed before the adaptive deadline replaces the request timeout."""
LATENCY_WINDOW = 128
"""Recent successful attempts the adaptive deadline is computed from."""


def checked_vectors(
    vectors: object, expected: int, dimension: int | None
) -> tuple[list[list[float]], int]:
    """Validate one response's vectors; return them and their dimension.

    Args:
        vectors: What the model returned for ``expected`` texts.
        expected: How many texts were sent.
        dimension: The dimension seen before (``None``: first response).

    Raises:
        EmbeddingResponseError: Not one vector per text, a vector that is not a list of
            numbers, dimensions that differ from each other or from ``dimension``, or a
            number that is not finite (NaN, infinity).
    """
    if not isinstance(vectors, list) or len(vectors) != expected:
        got = len(vectors) if isinstance(vectors, list) else type(vectors).__name__
        raise EmbeddingResponseError(f"the service returned {got} vector(s) for {expected} texts")
    found = dimension
    for position, vector in enumerate(vectors):
        if not isinstance(vector, list) or not vector:
            raise EmbeddingResponseError(f"vector {position} is empty or not a list of numbers")
        if found is None:
            found = len(vector)
        if len(vector) != found:
            raise EmbeddingResponseError(
                f"vector {position} has dimension {len(vector)}, expected {found}"
            )
    try:
        finite = bool(np.isfinite(np.asarray(vectors, dtype=np.float64)).all())
    except (TypeError, ValueError):
        raise EmbeddingResponseError("a vector holds something that is not a number") from None
    if not finite:
        raise EmbeddingResponseError("a vector holds a number that is not finite (NaN, inf)")
    return vectors, found or 0


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank; ``values`` must not be empty)."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


class RetryBudget:
    """Retries shared by every request of a run (as gRPC's and Finagle's retry budgets).

    A retry may be made while ``retries < minimum + ratio * first_attempts``: a transient
    fault mix, whose retries stay below the ratio, never runs out, while a dead service
    stops being retried after a bounded number of requests. It also counts the run's
    failed attempts per kind of failure (``"429"``, ``"500"``, ``"timeout"``...), from which
    :meth:`streak_likelihood` judges a request that keeps failing. Thread-safe (the sync twin may
    run in several threads).
    """

    __slots__ = (
        "_lock",
        "attempts",
        "failures",
        "first_attempts",
        "minimum",
        "ratio",
        "retries",
    )

    def __init__(self, *, ratio: float, minimum: int) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.first_attempts = 0
        self.retries = 0
        self.attempts = 0
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record_attempt(self, *, first: bool) -> None:
        """Count an attempt about to be made (``first``: not a retry)."""
        with self._lock:
            self.attempts += 1
            if first:
                self.first_attempts += 1

    def record_failure(self, kind: str) -> None:
        """Count a failed attempt of ``kind`` (e.g. ``"429"``, ``"timeout"``)."""
        with self._lock:
            self.failures[kind] += 1

    def streak_likelihood(self, kinds: Sequence[str]) -> float:
        """Chance that a request's latest run of same-kind failures happens by chance.

        ``kinds`` are the request's failures in order; its last ``k`` are of one kind
        whose share of the *other* requests' attempts is ``r`` (smoothed:
        ``(n + 1) / (attempts + 2)``); the chance is ``r ** k``. A request failing with 500
        five times while 5 % of the others' attempts do is ``0.05 ** 5``: a persistent fault.
        One meeting 429, 500 and a hang in turn is never implausible by this rule.
        """
        if not kinds:
            return 1.0
        kind = kinds[-1]
        streak = sum(1 for _ in itertools.takewhile(lambda k: k == kind, reversed(kinds)))
        own = kinds.count(kind)
        with self._lock:
            others = max(0, self.failures[kind] - own)
            attempts = max(0, self.attempts - len(kinds))
        rate = (others + 1) / (attempts + 2)
        return float(rate**streak)

    def try_spend(self) -> bool:
        """Take one retry from the budget; ``False`` when none is left."""
        with self._lock:
            if self.retries >= self.minimum + self.ratio * self.first_attempts:
                return False
            self.retries += 1
            return True


class AdaptiveDeadline:
    """Per-attempt deadlines learnt from the latencies of recent successful attempts.

    The deadline is ``multiplier * quantile(recent latencies)``, at least ``floor``, at most
    ``cap`` (the request timeout; ``None``: no cap), and doubled for each earlier timed-out
    attempt of the same request (so a service that slows down for good is followed, not
    timed out forever). Until :data:`MIN_LATENCY_SAMPLES` successes are observed, it is
    ``cap``. Attempts in flight are watched: each new latency moves their deadline, so a
    request that hangs from the very start is abandoned as soon as the others have shown
    how long an answer takes.
    """

    __slots__ = ("_latencies", "_watched", "cap", "floor", "multiplier", "q")

    def __init__(self, retry: RetryConfig, cap: float | None) -> None:
        self.multiplier = retry.attempt_timeout_multiplier
        self.q = retry.attempt_timeout_quantile
        self.floor = retry.min_attempt_timeout
        self.cap = cap
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._watched: dict[asyncio.Timeout, tuple[asyncio.AbstractEventLoop, float, float]] = {}

    def current(self, stretch: float = 1.0) -> float | None:
        """Seconds an attempt may take now (``stretch``: factor for earlier timeouts)."""
        if len(self._latencies) < MIN_LATENCY_SAMPLES:
            return self.cap
        learnt = max(self.floor, self.multiplier * quantile(self._latencies, self.q)) * stretch
        return learnt if self.cap is None else min(self.cap, learnt)

    def record(self, seconds: float) -> None:
        """Add a successful attempt's latency and move the deadlines of watched attempts.

        Only attempts on the running event loop are moved (none from a sync caller): a
        scope of another loop is moved by that loop's next success.
        """
        self._latencies.append(seconds)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for scope, (owner, started, stretch) in list(self._watched.items()):
            if owner is loop:
                self._schedule(scope, started, stretch)

    @contextmanager
    def watch(self, scope: asyncio.Timeout, started: float, stretch: float) -> Iterator[None]:
        """Keep ``scope`` (started at loop time ``started``) on the current deadline."""
        self._watched[scope] = (asyncio.get_running_loop(), started, stretch)
        self._schedule(scope, started, stretch)
        try:
            yield
        finally:
            self._watched.pop(scope, None)

    def _schedule(self, scope: asyncio.Timeout, started: float, stretch: float) -> None:
        if scope.expired():
            return
        seconds = self.current(stretch)
        scope.reschedule(None if seconds is None else started + seconds)
