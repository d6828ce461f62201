"""Exception groups from task groups, turned back into the one error a caller should see."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ("both", "first_error")

_T = TypeVar("_T")
_U = TypeVar("_U")


async def both(first: Coroutine[Any, Any, _T], second: Coroutine[Any, Any, _U]) -> tuple[_T, _U]:
    """Run two coroutines concurrently (the first starts first); raise the first error.

    A failure of either cancels the other; the error raised is :func:`first_error` of
    the task group's, not the group.
    """
    error: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            one = group.create_task(first)
            two = group.create_task(second)
    except BaseExceptionGroup as failed:
        error = first_error(failed)
    if error is not None:
        raise error
    return one.result(), two.result()


def first_error(exc: BaseException) -> BaseException:
    """The error to raise for ``exc``: itself, or the first real leaf of an exception group.

    A failed ``asyncio.TaskGroup`` raises a group holding the error of the task that
    failed and the cancellations of its siblings. Callers catch library errors
    (``RAGError``), not groups, so the first leaf that is not a cancellation is the one to
    re-raise (``raise first_error(group) from group``). When every leaf is a cancellation,
    the first of them is returned.

    Args:
        exc: An exception, possibly a (nested) ``BaseExceptionGroup``.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
    return leaves[0] if leaves else exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
