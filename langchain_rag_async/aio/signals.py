"""Cancel the running work on SIGINT / SIGTERM, and let it stop in order.

:func:`cancel_on_signal` wraps the body of a command: the first signal cancels the task
running the block (every ``finally``, checkpoint and ``async with`` runs as the
cancellation unwinds), then :class:`~langchain_rag_async.errors.Interrupted` is raised
from the block; a second signal exits the process at once, for a user who does not want to
wait. Signal handlers only exist on the main thread's loop on Unix; elsewhere the block
runs without them (Ctrl-C then behaves as Python's default). On the way out the handlers
the process had before the block are put back (asyncio alone would reset them to Python's
defaults), so an application's own SIGTERM handler survives. A signal the process was
started with ignored (a background job's SIGINT) is handled inside the block all the same,
and ignored again after it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from types import FrameType

from langchain_rag_async.errors import Interrupted

__all__ = ("cancel_on_signal",)

_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


@asynccontextmanager
async def cancel_on_signal(
    signals: Sequence[signal.Signals] = _DEFAULT_SIGNALS,
) -> AsyncIterator[None]:
    """Run the block; on the first of ``signals`` cancel it and raise ``Interrupted``.

    A second signal ends the process at once with exit status ``128 + signum``.

    Raises:
        Interrupted: A signal cancelled the block (after the block finished unwinding).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if received:  # the second one: the user does not want to wait
            os._exit(128 + signum)
        received.append(signum)
        if task is not None:
            task.cancel()

    installed: list[tuple[signal.Signals, _Handler]] = []
    for signum in signals:
        previous = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, on_signal, int(signum))
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or not Unix: keep Python's default handling
        installed.append((signum, previous))
    try:
        yield
    except asyncio.CancelledError:
        if received and task is not None and task.uncancel() == 0:
            raise Interrupted(received[0]) from None
        raise
    finally:
        for signum, previous in installed:
            loop.remove_signal_handler(signum)  # which resets it to Python's default...
            if previous is not None:
                signal.signal(signum, previous)  # ...so give back the caller's own handler
