"""One value per event loop: the library's single way to bind loop-affine state."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ("LoopBound",)

T = TypeVar("T")


class LoopBound(Generic[T]):
    """A value per event loop, created by ``factory`` on first use inside that loop.

    asyncio primitives (locks, futures, rate buckets) and clients such as aiosqlite
    connections belong to the loop they were first used on. An object used from several
    loops (successive ``asyncio.run`` calls, the sync bridge's loop and the caller's)
    keeps one value per loop here. Loops are held weakly: a value whose loop was closed
    or collected is *stale*, and :meth:`pop_stale` hands it back so its owner can release
    what it holds (close a connection) instead of leaking it.

    Not thread-safe by itself: each value is created and used by the code of its own loop;
    the owner guards cross-thread calls (e.g. a sync ``close()``) with its own lock.
    :meth:`live` reads a snapshot, so a thread may list the values while loops add theirs.

    Args:
        factory: Builds the value; called with the new loop running.
    """

    __slots__ = ("_factory", "_stale", "_values")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], T]] = {}
        self._stale: list[T] = []

    def get(self) -> T:
        """The running loop's value, created on first use.

        Raises:
            RuntimeError: No event loop is running in this thread (asyncio's own error).
        """
        loop = asyncio.get_running_loop()
        key = id(loop)
        entry = self._values.get(key)
        if entry is not None:
            if entry[0]() is loop:
                return entry[1]
            self._stale.append(entry[1])  # a dead loop's value under a reused id
        value = self._factory()
        self._values[key] = (weakref.ref(loop), value)
        return value

    def peek(self) -> T | None:
        """The running loop's value if it has one (never creates it); ``None`` outside a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        entry = self._values.get(id(loop))
        return entry[1] if entry is not None and entry[0]() is loop else None

    def live(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """``(loop, value)`` for every loop that is still open."""
        pairs = []
        for ref, value in list(self._values.values()):  # a snapshot: another loop may add
            loop = ref()
            if loop is not None and not loop.is_closed():
                pairs.append((loop, value))
        return pairs

    def pop_stale(self) -> list[T]:
        """Remove and return the values whose loop is closed or gone."""
        stale, self._stale = self._stale, []
        for key, (ref, value) in list(self._values.items()):
            loop = ref()
            if loop is None or loop.is_closed():
                del self._values[key]
                stale.append(value)
        return stale

    def pop_all(self) -> list[tuple[asyncio.AbstractEventLoop | None, T]]:
        """Remove and return every value with its loop (``None`` when the loop is gone)."""
        pairs: list[tuple[asyncio.AbstractEventLoop | None, T]] = [
            (None, value) for value in self._stale
        ]
        pairs.extend((ref(), value) for ref, value in self._values.values())
        self._values.clear()
        self._stale = []
        return pairs

    def __len__(self) -> int:
        return len(self._values) + len(self._stale)

    def __repr__(self) -> str:
        return f"<LoopBound loops={len(self._values)} stale={len(self._stale)}>"
