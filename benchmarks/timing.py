"""Measuring an event loop: its stalls (a heartbeat), garbage-collection pauses, fresh loops."""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = ("HEARTBEAT_INTERVAL", "Heartbeat", "fresh", "gc_pauses", "heartbeat_while")

HEARTBEAT_INTERVAL = 0.005


class Heartbeat:
    """A task that sleeps ``interval`` seconds in a loop and records how late each wake-up is.

    The lateness of a wake-up is how long the event loop could not run it (a stall) beyond
    the requested sleep. The CPU time the loop's thread used meanwhile tells why: close to
    the lateness, the loop itself was running something (code blocking the loop); close to
    zero, the thread was waiting for the GIL or for a CPU (contention from other threads or
    processes on this shared machine).
    """

    def __init__(self, interval: float = HEARTBEAT_INTERVAL) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (wake-up, lateness, loop CPU)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat(), name="bench-heartbeat")
        await asyncio.sleep(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves

    async def _beat(self) -> None:
        before, cpu_before = time.monotonic(), time.thread_time()
        while True:
            await asyncio.sleep(self.interval)
            now, cpu = time.monotonic(), time.thread_time()
            lateness = max(0.0, now - before - self.interval)
            self.samples.append((now, lateness, min(lateness, cpu - cpu_before)))
            before, cpu_before = now, cpu

    def lateness(self) -> list[float]:
        """The lateness of every wake-up so far, in seconds, in order."""
        return [lateness for _, lateness, _ in self.samples]

    def max_stall_ms(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The largest lateness of the wake-ups between ``start`` and ``end``, in ms."""
        late = [lateness for at, lateness, _ in self.samples if start <= at <= end]
        return round(1000.0 * max(late, default=0.0), 1)

    def max_busy_stall_ms(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The largest CPU time the loop's thread spent within one stall, in ms."""
        busy = [cpu for at, _, cpu in self.samples if start <= at <= end]
        return round(1000.0 * max(busy, default=0.0), 1)


async def heartbeat_while(
    work: Awaitable[Any], interval: float = HEARTBEAT_INTERVAL
) -> list[float]:
    """Seconds each ``interval`` sleep overran while ``work`` ran (the loop's stalls).

    The heartbeat beats a few times before ``work`` starts, so that it is running when it does.
    """
    async with Heartbeat(interval) as beat:
        await asyncio.sleep(interval * 4)
        await work
    return beat.lateness()


@contextmanager
def gc_pauses() -> Iterator[list[float]]:
    """Collect the duration (seconds) of every garbage collection inside the block."""
    pauses: list[float] = []
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(callback)


def fresh(run: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one scenario (a coroutine function on a new event loop, or a plain function).

    The garbage of earlier scenarios is collected first, outside any event loop, so that
    it is not collected (and its open clients closed) inside the next measurement.
    """
    gc.collect()
    if inspect.iscoroutinefunction(run):
        result: dict[str, Any] = asyncio.run(run(*args, **kwargs))
    else:
        result = run(*args, **kwargs)
    return result


def high_water_kb(pid: int) -> int:
    """``VmHWM`` (peak resident set) of a running process in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
