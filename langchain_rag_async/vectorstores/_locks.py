"""A thread-based readers-writer lock guarding an in-memory index.

Searches share the lock; mutations hold it alone. Writers are preferred (a waiting
writer stops new readers from entering) so a steady stream of searches cannot starve
an add or a delete. The lock is reentrant per thread: a thread that already reads may
read again, and the writing thread may read or write again. Upgrading a read hold to a
write hold would deadlock, so it raises instead.

All waiting is done with :class:`threading.Condition`, so acquire it only from worker
threads (or synchronous code), never on a running event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from langchain_rag_async.errors import UsageError

__all__ = ("ReadWriteLock",)


class ReadWriteLock:
    """Many readers or one writer, writer-preferring and reentrant per thread."""

    __slots__ = ("_cond", "_readers", "_waiting_writers", "_write_depth", "_writer")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}
        self._writer: int | None = None
        self._write_depth = 0
        self._waiting_writers = 0

    def acquire_read(self) -> None:
        """Block until no writer holds or waits for the lock, then take a read hold."""
        me = threading.get_ident()
        with self._cond:
            if me in self._readers or self._writer == me:
                self._readers[me] = self._readers.get(me, 0) + 1
                return
            while self._writer is not None or self._waiting_writers:
                self._cond.wait()
            self._readers[me] = 1

    def release_read(self) -> None:
        """Give back one read hold of the calling thread.

        Raises:
            UsageError: The calling thread holds no read lock.
        """
        me = threading.get_ident()
        with self._cond:
            count = self._readers.get(me)
            if count is None:
                raise UsageError("release_read() called by a thread that holds no read lock")
            if count > 1:
                self._readers[me] = count - 1
                return
            del self._readers[me]
            if not self._readers:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        """Block until the lock is free, then hold it alone.

        Raises:
            UsageError: The calling thread holds a read lock (upgrades would deadlock).
        """
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._write_depth += 1
                return
            if me in self._readers:
                raise UsageError(
                    "cannot take the write lock while holding a read lock; release it first"
                )
            self._waiting_writers += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            except BaseException:
                self._waiting_writers -= 1
                self._cond.notify_all()  # readers held back by this writer may go on
                raise
            self._waiting_writers -= 1
            self._writer = me
            self._write_depth = 1

    def release_write(self) -> None:
        """Give back one write hold of the calling thread.

        Raises:
            UsageError: The calling thread does not hold the write lock.
        """
        with self._cond:
            if self._writer != threading.get_ident():
                raise UsageError("release_write() called by a thread that is not the writer")
            self._write_depth -= 1
            if self._write_depth == 0:
                self._writer = None
                self._cond.notify_all()

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold a shared read lock for the block."""
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the exclusive write lock for the block."""
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()
