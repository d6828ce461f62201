"""Memory-adaptive batches: the embed batch size and the queue depth follow available memory.

While an indexing run goes on, :class:`AdaptiveBatching` reads the memory the system has
available (``psutil.virtual_memory().available``) every ``memory_check_interval``
seconds, off the event loop. The heuristic is the one TCP uses for its window (AIMD):

- under ``low_memory_bytes`` available, the batch size and the queues' depth are
  **halved** (down to 1), at each reading for as long as memory stays low: what the
  pipeline holds in flight (texts per request, documents and chunks queued between
  stages) halves within a second, then again;
- once available memory is back above ``RECOVERY_MARGIN`` times the threshold (the margin
  keeps the sizes from flapping around it), they **grow back additively**, by a quarter
  of the configured sizes per reading, never beyond them.

Each decision is logged (``memory_low_shrinking``, ``memory_recovered_growing``) and
counted in the metrics (``rag_memory_adaptations_total{direction}``, with the current
sizes in ``rag_embed_batch_size`` and ``rag_pipeline_queue_depth``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import psutil
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.aio.queues import ResizableQueue
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.metrics import EMBED_BATCH_SIZE, MEMORY_ADAPTATIONS, PIPELINE_QUEUE_DEPTH
from langchain_rag_async.observability import get_logger

__all__ = (
    "RECOVERY_MARGIN",
    "AdaptiveBatching",
    "MemoryDecision",
    "MemoryReading",
    "available_memory",
)

RECOVERY_MARGIN = 1.25
"""Sizes grow back only once available memory exceeds the threshold by this factor."""
_GROWTH_SHARE = 4
"""Each step up adds ``configured // _GROWTH_SHARE`` (at least 1): back to full in 4 steps."""

MemoryReading = Callable[[], int]
"""Returns the bytes of memory available now (tests inject a fake)."""

_log = get_logger(__name__)
_MB = 1024 * 1024


def available_memory() -> int:
    """Bytes the system can give without swapping (``psutil.virtual_memory().available``)."""
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True, slots=True)
class MemoryDecision:
    """One change of the sizes, and the reading that caused it."""

    direction: Literal["shrink", "grow"]
    batch_size: int
    queue_size: int
    available: int


class AdaptiveBatching:
    """The embed stage's batch size and the queues' depth, adapted to available memory.

    :meth:`observe` is the heuristic (no I/O); :meth:`watching` runs it over the readings
    of ``read`` during a block and resizes the given queues.

    Args:
        batch_size: The configured batch size (the most ever used).
        queue_size: The configured queue depth (the most ever used).
        low_memory: Shrink under this many bytes available; 0 turns adaptation off.
        interval: Seconds between two readings.
        read: Where readings come from (:func:`available_memory` by default).
    """

    __slots__ = (
        "_batch",
        "_configured_batch",
        "_configured_queue",
        "_interval",
        "_low",
        "_queue",
        "_read",
        "decisions",
    )

    def __init__(
        self,
        *,
        batch_size: int,
        queue_size: int,
        low_memory: int,
        interval: float = 1.0,
        read: MemoryReading | None = None,
    ) -> None:
        if batch_size < 1 or queue_size < 1 or low_memory < 0 or not interval > 0:
            raise ConfigurationError(
                "batch_size and queue_size must be at least 1, low_memory at least 0 and "
                f"interval positive; got {batch_size}, {queue_size}, {low_memory}, {interval}"
            )
        self._configured_batch = self._batch = batch_size
        self._configured_queue = self._queue = queue_size
        self._low = low_memory
        self._interval = interval
        self._read = read or available_memory
        self.decisions: list[MemoryDecision] = []
        """Every change made so far, oldest first."""

    @property
    def enabled(self) -> bool:
        """Whether memory is watched at all (a threshold is set)."""
        return self._low > 0

    @property
    def batch_size(self) -> int:
        """Texts per embedding request now."""
        return self._batch

    @property
    def queue_size(self) -> int:
        """Depth of each queue between stages now."""
        return self._queue

    def observe(self, available: int) -> MemoryDecision | None:
        """Apply one reading: halve under the threshold, grow back above the margin."""
        if not self.enabled:
            return None
        if available < self._low:
            batch, queue = max(1, self._batch // 2), max(1, self._queue // 2)
            direction: Literal["shrink", "grow"] = "shrink"
        elif available >= self._low * RECOVERY_MARGIN:
            batch = min(self._configured_batch, self._batch + _step(self._configured_batch))
            queue = min(self._configured_queue, self._queue + _step(self._configured_queue))
            direction = "grow"
        else:
            return None
        if (batch, queue) == (self._batch, self._queue):
            return None
        self._batch, self._queue = batch, queue
        decision = MemoryDecision(direction, batch, queue, available)
        self.decisions.append(decision)
        return decision

    @asynccontextmanager
    async def watching(self, queues: Sequence[ResizableQueue[Any]]) -> AsyncIterator[None]:
        """Read memory every ``interval`` during the block; resize ``queues`` on each change."""
        self._publish()
        if not self.enabled:
            yield
            return
        watcher = asyncio.create_task(self._watch(queues), name="rag-memory-watch")
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})
            if not watcher.cancelled() and watcher.exception() is not None:
                _log.warning("memory_watch_failed", error=str(watcher.exception()))

    async def _watch(self, queues: Sequence[ResizableQueue[Any]]) -> None:
        while True:
            available = await run_in_executor(None, self._read)  # reads /proc: off the loop
            decision = self.observe(available)
            if decision is not None:
                for queue in queues:
                    queue.resize(decision.queue_size)
                self._report(decision)
            await asyncio.sleep(self._interval)

    def _report(self, decision: MemoryDecision) -> None:
        MEMORY_ADAPTATIONS.labels(direction=decision.direction).inc()
        self._publish()
        event = "memory_low_shrinking" if decision.direction == "shrink" else "memory_recovered"
        log = _log.warning if decision.direction == "shrink" else _log.info
        log(
            event,
            available_mb=decision.available // _MB,
            threshold_mb=self._low // _MB,
            batch_size=decision.batch_size,
            queue_size=decision.queue_size,
        )

    def _publish(self) -> None:
        EMBED_BATCH_SIZE.set(self._batch)
        PIPELINE_QUEUE_DEPTH.set(self._queue)


def _step(configured: int) -> int:
    return max(1, configured // _GROWTH_SHARE)
