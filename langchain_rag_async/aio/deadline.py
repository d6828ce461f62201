"""The one way a public coroutine honours ``timeout=``: cancel the work, raise the library's error.

:func:`deadline` wraps :func:`asyncio.timeout`: when the seconds run out, the block's task
is cancelled (task groups inside it cancel their children and wait for them), and the
expiry comes out as a :class:`~langchain_rag_async.errors.RAGTimeoutError` subclass that
says what timed out, never as a bare ``TimeoutError``. A ``TimeoutError`` raised by the
work itself (not by this deadline) passes through unchanged.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from langchain_rag_async.errors import ConfigurationError, RAGTimeoutError

__all__ = ("check_timeout", "deadline", "deadline_at")


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` when it is ``None`` or a positive, finite number of seconds.

    Raises:
        ConfigurationError: ``timeout`` is zero, negative, not finite or not a number.
    """
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError(f"timeout must be positive seconds or None; got {timeout!r}")
    return float(timeout)


@asynccontextmanager
async def deadline(
    timeout: float | None,
    error: Callable[[float], RAGTimeoutError],
    *,
    when: float | None = None,
) -> AsyncIterator[asyncio.Timeout]:
    """Run the block for at most ``timeout`` seconds (``None``: no limit).

    Args:
        timeout: Seconds allowed; checked with :func:`check_timeout`.
        error: Builds the error raised on expiry from the seconds allowed, e.g.
            ``lambda s: RetrievalTimeoutError(f"no results within {s:g} s", timeout=s)``.
        when: End at this loop time instead (:func:`deadline_at` of the whole call's
            ``timeout``), for one wait among several under the same deadline; past it,
            the error is raised at once.

    Yields:
        The :class:`asyncio.Timeout` scope (``reschedule`` it to move the deadline).

    Raises:
        RAGTimeoutError: What ``error`` built, once the block was cancelled and unwound.
        ConfigurationError: ``timeout`` is not positive.
    """
    seconds = check_timeout(timeout)
    if seconds is None:
        scope = asyncio.timeout(None)
    elif when is not None:
        if when <= asyncio.get_running_loop().time():
            raise error(seconds)  # spent already: even a wait that would not suspend stops
        scope = asyncio.timeout_at(when)
    else:
        scope = asyncio.timeout(seconds)
    try:
        async with scope:
            yield scope
    except TimeoutError as exc:
        if seconds is None or not scope.expired() or isinstance(exc, RAGTimeoutError):
            raise  # the work's own timeout (an inner deadline's error included)
        raise error(seconds) from exc


def deadline_at(timeout: float | None) -> float | None:
    """The loop time at which ``timeout`` seconds from now end (``None``: never).

    For async generators, whose own awaits (not their consumer's) must be bounded: each
    wait inside the generator runs under ``asyncio.timeout_at(deadline_at(timeout))``.
    """
    seconds = check_timeout(timeout)
    return None if seconds is None else asyncio.get_running_loop().time() + seconds
