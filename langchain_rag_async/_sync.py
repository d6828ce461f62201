"""Run a coroutine to completion from sync code, also when an event loop is already running."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` and return its result.

    With no running loop in this thread it uses :func:`asyncio.run`. Inside a running
    loop (Jupyter, an async web handler calling sync code) it runs the coroutine on a
    fresh loop in a helper thread, with the caller's contextvars, and waits for it.

    Args:
        coro: The coroutine to run.

    Returns:
        What the coroutine returned; its exception is re-raised here.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            result.append(context.run(asyncio.run, coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="rag-async-sync-bridge", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
