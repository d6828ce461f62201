"""Cancel a request's work when its client goes away (for answers that are not streamed).

A streamed response notices a disconnect when it writes; a plain JSON answer would keep
retrieving and generating for nobody. :func:`cancel_on_disconnect` runs the work next to
a watcher of the ASGI receive channel and cancels it on ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request

from langchain_rag_async.errors import RequestError

__all__ = ("cancel_on_disconnect",)

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away (the body is already read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``; cancel it, and raise, when the client disconnects first.

    Call it once the request body has been read (FastAPI has read it before a route with
    a body model runs): the receive channel then only brings the disconnect.

    Raises:
        RequestError: 499 when the client went away (``work`` was cancelled and awaited
            by then; nobody reads the answer).
    """
    task: asyncio.Task[T] = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request itself is cancelled (server shutdown)
        for pending in (watcher, task):
            if not pending.done():
                pending.cancel()
        await asyncio.wait((watcher, task))
    if task.cancelled():  # by us: the watcher saw the client go
        raise RequestError(499, "the client closed the request", code="client_closed_request")
    return task.result()  # the answer, or the error the work raised
