"""Exception groups from task groups, turned back into the one error a caller should see."""

from __future__ import annotations

import asyncio

__all__ = ("first_error",)


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
