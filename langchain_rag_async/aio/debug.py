"""``--debug-async``: look inside a running event loop (what every task awaits, what blocks it).

:class:`AsyncDebugMonitor` does two things while it runs, both written to stderr:

- every ``interval`` seconds it dumps the loop's tasks, each with its await chain: the
  coroutine frames from the task's own down to what it waits on (``Event.wait`` in
  ``asyncio/locks.py``, a future, another task), followed through ``cr_await``, which
  ``Task.get_stack`` does not do;
- a watchdog thread notices when one callback holds the loop longer than
  ``slow_callback`` seconds (the loop's heartbeat stops), prints the loop thread's stack
  *while* it is blocked, which names the blocking call, and how long the block lasted
  once the loop runs again. asyncio's own debug mode only names the callback afterwards,
  and slows every call.

The CLI turns it on for ``index``, ``ask`` and ``serve`` (``--debug-async``,
``RAG_DEBUG_ASYNC``); library users wrap their own code in :func:`debug_async`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, TextIO

from langchain_rag_async.config import DebugAsyncConfig

__all__ = ("AsyncDebugMonitor", "await_chain", "debug_async", "format_tasks")

_MAX_DEPTH = 64
"""Await chains are followed this deep at most (a chain never loops, but stay bounded)."""


def await_chain(awaitable: Any) -> list[str]:
    """What a coroutine (or task) is waiting on, outermost first, one line per link.

    Coroutine, generator and async-generator frames are shown as ``name (file:line)``;
    the last link, when it is not a frame (a future, a task, a third-party awaitable),
    as ``awaits <repr>``.
    """
    task = awaitable if isinstance(awaitable, asyncio.Task) else None
    obj = task.get_coro() if task is not None else awaitable
    lines: list[str] = []
    for _ in range(_MAX_DEPTH):
        frame: FrameType | None = _frame_of(obj)
        if frame is None and not _is_coroutine_like(obj):
            if obj is not None:
                lines.append(f"awaits {_short_repr(_leaf(task, obj))}")
            break
        if frame is not None:
            code = frame.f_code
            lines.append(f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})")
        obj = _awaited_by(obj)
        if obj is None:
            break
    return lines


def format_tasks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """Every unfinished task of ``loop`` (the running one by default) with its await chain."""
    loop = loop or asyncio.get_running_loop()
    tasks = sorted(asyncio.all_tasks(loop), key=lambda task: task.get_name())
    stamp = time.strftime("%H:%M:%S")
    out = [f"--- debug-async {stamp}: {len(tasks)} task(s) on the event loop ---"]
    for task in tasks:
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", type(coro).__name__)
        out.append(f"task {task.get_name()!r}: {name}()")
        out.extend(f"    {line}" for line in await_chain(task))
    return "\n".join(out) + "\n"


class AsyncDebugMonitor:
    """Dump the tasks of the running loop periodically and warn when a callback blocks it.

    Use it as an async context manager inside the loop to watch; everything it starts
    (the dump task, the heartbeat, the watchdog thread) stops when the block exits.

    Args:
        interval: Seconds between two task dumps.
        slow_callback: Warn when the loop is held this many seconds by one callback.
        stream: Where to write; ``sys.stderr`` (looked up at each write) by default.
    """

    __slots__ = (
        "_beat",
        "_dumper",
        "_handle",
        "_interval",
        "_last_beat",
        "_loop",
        "_slow",
        "_stop",
        "_stream",
        "_watchdog",
        "warnings",
    )

    def __init__(
        self, *, interval: float = 5.0, slow_callback: float = 0.1, stream: TextIO | None = None
    ) -> None:
        config = DebugAsyncConfig(enabled=True, interval=interval, slow_callback=slow_callback)
        self._interval = config.interval
        self._slow = config.slow_callback
        self._beat = min(self._slow / 2, 0.05)
        self._stream = stream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_beat = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._dumper: asyncio.Task[None] | None = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self.warnings = 0
        """How many times the loop was found blocked (for tests and summaries)."""

    async def __aenter__(self) -> AsyncDebugMonitor:
        self._loop = loop = asyncio.get_running_loop()
        self._stop.clear()
        self._heartbeat()
        self._dumper = loop.create_task(self._dump_every_interval(), name="rag-debug-async")
        loop_thread = threading.get_ident()
        self._watchdog = threading.Thread(
            target=self._watch, args=(loop_thread,), name="rag-debug-async-watchdog", daemon=True
        )
        self._watchdog.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._dumper is not None:
            self._dumper.cancel()
            await asyncio.wait({self._dumper})
        # The watchdog wakes every heartbeat; joined from a thread, the loop never waits.
        if self._watchdog is not None and self._loop is not None:
            await self._loop.run_in_executor(None, self._watchdog.join)

    def dump(self) -> None:
        """Write the task dump now (on the loop thread)."""
        self._write(format_tasks(self._loop))

    # -- internals ------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed stderr must not break the program
            pass

    async def _dump_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.dump()

    def _heartbeat(self) -> None:
        self._last_beat = time.monotonic()
        if self._loop is not None and not self._stop.is_set():
            self._handle = self._loop.call_later(self._beat, self._heartbeat)

    def _watch(self, loop_thread: int) -> None:
        """Watchdog thread: the heartbeat is late by more than ``slow_callback``: report."""
        blocked_since: float | None = None
        while not self._stop.wait(self._beat):
            last = self._last_beat
            late = time.monotonic() - last - self._beat
            if blocked_since is None and late > self._slow:
                blocked_since = last + self._beat
                self.warnings += 1
                self._write(_blocked_report(late, sys._current_frames().get(loop_thread)))
            elif blocked_since is not None and last > blocked_since:
                held = last - blocked_since
                self._write(f"--- debug-async: the event loop ran again after {held:.3f} s ---\n")
                blocked_since = None


def _blocked_report(late: float, frame: FrameType | None) -> str:
    head = (
        f"--- debug-async WARNING: a callback has held the event loop for {late:.3f} s "
        "(no other task can run); the loop thread is in: ---\n"
    )
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "    (unknown)\n"
    return head + stack


def _leaf(task: asyncio.Task[Any] | None, obj: Any) -> Any:
    """The future a task waits on, rather than the iterator ``await future`` leaves in the chain.

    ``await future`` suspends on the future's C iterator, which does not say whose it is;
    the task itself knows (``_fut_waiter``, the field ``Task.cancel`` uses: asyncio has no
    public accessor). Anything else is shown as found.
    """
    waiter = getattr(task, "_fut_waiter", None) if task is not None else None
    return waiter if waiter is not None else obj


def _frame_of(obj: Any) -> FrameType | None:
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(obj, attribute, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _is_coroutine_like(obj: Any) -> bool:
    return any(hasattr(obj, a) for a in ("cr_await", "gi_yieldfrom", "ag_await"))


def _awaited_by(obj: Any) -> Any:
    for attribute in ("cr_await", "gi_yieldfrom", "ag_await"):
        if hasattr(obj, attribute):
            return getattr(obj, attribute)
    return None


def _short_repr(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 300 else text[:297] + "..."


@asynccontextmanager
async def debug_async(
    config: DebugAsyncConfig | None, *, stream: TextIO | None = None
) -> AsyncIterator[AsyncDebugMonitor | None]:
    """Run the block under an :class:`AsyncDebugMonitor` when ``config.enabled``, else as is."""
    if config is None or not config.enabled:
        yield None
        return
    monitor = AsyncDebugMonitor(
        interval=config.interval, slow_callback=config.slow_callback, stream=stream
    )
    async with monitor:
        yield monitor
