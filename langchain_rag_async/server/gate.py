"""Back-pressure on answers: a bound on generations running at once, a short queue, then 429."""

from __future__ import annotations

import asyncio

from langchain_rag_async.errors import RequestError
from langchain_rag_async.limits import AdaptiveConcurrencyGate

__all__ = ("GenerationGate", "GenerationSlot")


class GenerationSlot:
    """A held generation slot; :meth:`release` may be called twice (stream end, fallback)."""

    __slots__ = ("_gate", "_released")

    def __init__(self, gate: AdaptiveConcurrencyGate) -> None:
        self._gate = gate
        self._released = False

    def release(self) -> None:
        """Give the slot back (once)."""
        if not self._released:
            self._released = True
            self._gate.release()


class GenerationGate:
    """At most ``limit`` answers generate at once; others wait up to ``queue_timeout`` seconds.

    A request that waits longer is refused with 429 and ``Retry-After``, so a client backs
    off instead of piling up. Waiters are served first come, first served. (A client that
    disconnects while queued is noticed only when its answer starts streaming.)
    """

    __slots__ = ("_gate", "_queue_timeout")

    def __init__(self, limit: int, queue_timeout: float) -> None:
        self._gate = AdaptiveConcurrencyGate(limit)
        self._queue_timeout = queue_timeout

    @property
    def in_flight(self) -> int:
        """Generations running now."""
        return self._gate.in_flight

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return self._gate.waiting

    async def acquire(self) -> GenerationSlot:
        """Wait for a slot (bounded); the caller must release it.

        Raises:
            RequestError: 429 when no slot freed up within the queue timeout.
        """
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._gate.acquire()
        except TimeoutError:
            raise RequestError(
                429,
                f"the server is generating {self._gate.in_flight} answers, its limit; "
                "retry in a moment",
                type="rate_limit_error",
                code="too_many_generations",
                headers={"Retry-After": "1"},
            ) from None
        return GenerationSlot(self._gate)
