"""The one sync bridge: a background event loop that sync callers hand coroutines to.

Every sync twin that must run async code (``RAGEngine``, ``index_directory``, ``answer``,
closing aiosqlite connections from ``close()``) goes through :func:`run_sync`, which
uses the process's :func:`default_portal`: one event loop in one daemon thread, started
on first use. Loop-bound clients (HTTP connection pools, aiosqlite connections) therefore
stay valid from one sync call to the next, and a sync call works the same from a plain
script and from inside a running loop (Jupyter, an async web handler calling sync code).
This module is the only place outside the CLI that creates an event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from langchain_rag_async.errors import UsageError

__all__ = ("BlockingPortal", "default_portal", "run_sync")

T = TypeVar("T")

_STOP_TIMEOUT = 5.0  # seconds stop() waits for the loop's tasks to finish cancelling

_portals: weakref.WeakSet[BlockingPortal] = weakref.WeakSet()  # reset in a forked child


class BlockingPortal:
    """An event loop running in a daemon thread, and a blocking :meth:`call` into it.

    Coroutines run as tasks on the portal's loop, in a copy of the caller's contextvars
    (LangChain callbacks and tracing context follow the call). Interrupting the waiting
    caller (Ctrl-C) cancels the task. Calling into the portal from its own loop thread
    would wait for itself forever and is refused with a :class:`UsageError`.

    Args:
        name: The thread's name (``rag-async-portal`` for the default portal).
    """

    __slots__ = ("__weakref__", "_lock", "_loop", "_name", "_pid", "_thread")

    def __init__(self, name: str = "rag-async-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        _portals.add(self)

    def _forget_parent(self) -> None:
        """In a forked child: the parent's loop thread does not exist here; start afresh.

        The lock may have been held by one of the parent's threads at fork time (starting
        or stopping the loop), and nothing in the child would ever release it.
        """
        self._lock = threading.Lock()
        self._loop = self._thread = None
        self._pid = 0

    @property
    def running(self) -> bool:
        """Whether the loop thread is alive (in this process)."""
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread, once started."""
        return self._thread

    def start(self) -> asyncio.AbstractEventLoop:
        """Start the loop thread if it is not running (also after a fork); return the loop."""
        with self._lock:
            if self._loop is not None and self.running:
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name=self._name, daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal's loop and wait for its result (or its exception).

        Raises:
            UsageError: Called from the portal's own loop thread.
        """
        if threading.current_thread() is self._thread and self.running:
            coro.close()
            raise UsageError(
                "a sync method was called from the event loop of its own sync bridge, "
                "which would wait for itself forever; await the async twin instead"
            )
        loop = self.start()
        context = contextvars.copy_context()
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def launch() -> None:
            if not result.set_running_or_notify_cancel():
                coro.close()
                return
            task = loop.create_task(coro, context=context)
            tasks.append(task)
            task.add_done_callback(lambda done: _copy_outcome(done, result))

        try:
            # Inside the try: a Ctrl-C can land on any bytecode of this thread, also the one
            # right after the work was handed over (the loop may have started it already).
            loop.call_soon_threadsafe(launch)
            return result.result()
        except BaseException:
            if not result.done():  # the caller was interrupted: stop the work it asked for
                if not result.cancel():
                    loop.call_soon_threadsafe(lambda: [task.cancel() for task in tasks])
            raise

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Cancel what still runs, stop the loop and join its thread (idempotent)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        if threading.current_thread() is thread:
            raise UsageError("a BlockingPortal cannot be stopped from its own loop thread")
        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), loop).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass  # tasks that ignore cancellation: the daemon thread goes down with the process
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def __repr__(self) -> str:
        return f"<BlockingPortal {self._name!r} running={self.running}>"


def _copy_outcome(task: asyncio.Task[T], result: concurrent.futures.Future[T]) -> None:
    if result.done():
        return
    if task.cancelled():  # the caller waits on a running future: cancel() would not wake it
        result.set_exception(asyncio.CancelledError())
        return
    error = task.exception()
    if error is not None:
        result.set_exception(error)
    else:
        result.set_result(task.result())


async def _shutdown() -> None:
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks(loop) if task is not current]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    await loop.shutdown_asyncgens()


_default: BlockingPortal | None = None
_default_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """Fresh locks and no loop thread in a forked child (a worker process after fork)."""
    global _default_lock
    _default_lock = threading.Lock()
    for portal in list(_portals):
        portal._forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)


def default_portal() -> BlockingPortal:
    """The process's portal, created on first use (and anew in a forked child)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BlockingPortal()
            atexit.register(_default.stop)
        return _default


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the default portal's loop and return its result.

    Works from plain sync code and from inside a running event loop alike (the caller's
    thread blocks until the result is there). The coroutine's exception is re-raised here.
    """
    return default_portal().call(coro)
