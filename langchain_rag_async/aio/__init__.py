"""The library's async utilities: the one sync bridge and the one way to bind state to a loop.

- :class:`BlockingPortal` / :func:`run_sync`: sync code runs a coroutine on the process's
  background event loop (a daemon thread), also from inside a running loop (Jupyter).
- :func:`first_error`: the one error to re-raise from a failed task group; :func:`both`
  runs two coroutines at once and raises that error.
- :class:`LoopBound`: a value per event loop (asyncio primitives, connections), created
  lazily on first use in that loop, with the values of closed loops handed back for cleanup.
- :func:`cancel_on_signal`: SIGINT/SIGTERM cancel the running work, which stops in order.
- :func:`deadline`: ``timeout=`` for a public coroutine: cancel the work, raise the library's
  :class:`~langchain_rag_async.errors.RAGTimeoutError`.
"""

from __future__ import annotations

from langchain_rag_async.aio.deadline import check_timeout, deadline
from langchain_rag_async.aio.groups import both, first_error
from langchain_rag_async.aio.loop_bound import LoopBound
from langchain_rag_async.aio.portal import BlockingPortal, default_portal, run_sync
from langchain_rag_async.aio.signals import cancel_on_signal

__all__ = (
    "BlockingPortal",
    "LoopBound",
    "both",
    "cancel_on_signal",
    "check_timeout",
    "deadline",
    "default_portal",
    "first_error",
    "run_sync",
)
