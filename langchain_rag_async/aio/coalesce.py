"""Concurrent calls of one event loop coalesced into batches: few requests for many callers.

Many concurrent callers each asking for one small thing (a query's vector, a keyword
search) cost a request, a thread hop or a turn of a lock each when served one by one.
:class:`Coalescer` hands their items to a batch function instead: up to ``max_batch``
items per call, up to ``max_flushes()`` calls at once. A lone item goes at once (no timer:
the flushing task starts with it), a burst becomes a few batches run in parallel, and the
items that arrive while every flush is busy go together in the next ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ("BatchCall", "Coalescer", "Failed")

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Failed:
    """An item's own error in a batch's results, raised to that item's caller alone."""

    error: Exception


BatchCall = Callable[[list[I]], Awaitable[Sequence[R | Failed]]]
"""Serves a batch of items: one result (or :class:`Failed`) per item, in order."""


class Coalescer(Generic[I, R]):
    """Items of one event loop served in batches by up to ``max_flushes()`` tasks at once.

    Args:
        call: Serves a batch (one request); one result per item, in order.
        max_batch: The most items in one call.
        max_flushes: How many calls may run at once (read at each new item: a service's
            current concurrency limit, say); 1 when not given.
        name: Name of the flushing tasks.
    """

    __slots__ = ("_call", "_flushers", "_max_batch", "_max_flushes", "_name", "_pending")

    def __init__(
        self,
        call: BatchCall[I, R],
        max_batch: int,
        max_flushes: Callable[[], int] | None = None,
        *,
        name: str = "rag-coalescer",
    ) -> None:
        self._call = call
        self._max_batch = max(1, max_batch)
        self._max_flushes = max_flushes or _one
        self._name = name
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._flushers: set[asyncio.Task[Any]] = set()  # strong references: see _flush

    @property
    def flushing(self) -> int:
        """Batches being served (or about to be) now."""
        return len(self._flushers)

    async def submit(self, item: I) -> R:
        """The result of ``item``, served with the items beside it.

        A caller cancelled while waiting leaves its result behind (its batch goes on for
        the others); an error of a batch call is raised to every caller in that batch
        and no other, a :class:`Failed` result to its own caller only.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._flushers) < max(1, self._max_flushes()):
            self._flushers.add(loop.create_task(self._flush(), name=self._name))
        return await future

    async def _flush(self) -> None:
        """Serve batches while items wait; leave the set the moment there are none.

        The task leaves ``_flushers`` in the same step that finds nothing left (no await
        in between), so an item appended after that starts a new flush. A flush ended
        by cancellation (the loop shutting down) cancels the items still waiting when
        no other flush is left to take them.
        """
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._serve([entry for entry in batch if not entry[1].done()])
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._flushers.discard(task)
            if not self._flushers:
                for _, future in self._pending:
                    future.cancel()
                self._pending.clear()

    async def _serve(self, waiting: list[tuple[I, asyncio.Future[R]]]) -> None:
        """One batch: its results (or its error) to its callers alone."""
        if not waiting:
            return
        try:
            results = await self._call([item for item, _ in waiting])
            answers = list(zip(waiting, results, strict=True))
        except asyncio.CancelledError:
            for _, future in waiting:
                future.cancel()
            raise
        except Exception as exc:  # handed to every caller of this batch
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in answers:
            if future.done():
                continue
            if isinstance(result, Failed):
                future.set_exception(result.error)
            else:
                future.set_result(result)


def _one() -> int:
    return 1
