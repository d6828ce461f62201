"""A bounded FIFO queue whose bound can change while producers wait (asyncio.Queue's cannot)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from langchain_rag_async.errors import ConfigurationError

__all__ = ("ResizableQueue",)

T = TypeVar("T")


class ResizableQueue(Generic[T]):
    """``put`` waits while ``maxsize`` items are queued; :meth:`resize` moves the bound.

    Shrinking never drops items: producers wait until consumers bring the queue under the
    new bound. Growing wakes the waiting producers at once. A producer cancelled while
    waiting leaves no trace (a wake-up it had received goes to the next producer).

    Args:
        maxsize: The bound, at least 1.
    """

    __slots__ = ("_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int) -> None:
        self._items: asyncio.Queue[T] = asyncio.Queue()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._maxsize = _checked(maxsize)

    @property
    def maxsize(self) -> int:
        """The current bound."""
        return self._maxsize

    def resize(self, maxsize: int) -> None:
        """Set the bound (at least 1); waiting producers check it again."""
        self._maxsize = _checked(maxsize)
        while self._putters:
            self._wake_next()

    def qsize(self) -> int:
        """Items queued now (it may exceed ``maxsize`` just after a shrink)."""
        return self._items.qsize()

    def empty(self) -> bool:
        """Whether no item is queued."""
        return self._items.empty()

    async def put(self, item: T) -> None:
        """Queue ``item`` once the queue holds fewer than ``maxsize`` items."""
        while self._items.qsize() >= self._maxsize:
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._putters:
                    self._putters.remove(waiter)
                elif not waiter.cancelled():
                    self._wake_next()  # hand the wake-up this producer received on
                raise
        self._items.put_nowait(item)

    async def get(self) -> T:
        """Remove and return the oldest item, waiting for one if needed."""
        item = await self._items.get()
        self._wake_next()
        return item

    def _wake_next(self) -> None:
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def __repr__(self) -> str:
        return f"<ResizableQueue size={self.qsize()} maxsize={self._maxsize}>"


def _checked(maxsize: int) -> int:
    if maxsize < 1:
        raise ConfigurationError(f"a queue's maxsize must be at least 1; got {maxsize}")
    return maxsize
