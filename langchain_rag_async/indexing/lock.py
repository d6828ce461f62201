"""One indexing run at a time per index directory, across processes (a file lock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.errors import IndexLockedError

__all__ = ("RUN_LOCK_FILE", "run_lock", "run_lock_if_free")

RUN_LOCK_FILE = ".run.lock"
DEFAULT_RUN_LOCK_TIMEOUT = 600.0


@asynccontextmanager
async def run_lock(
    index_dir: Path, *, timeout: float = DEFAULT_RUN_LOCK_TIMEOUT
) -> AsyncIterator[None]:
    """Hold the index directory's run lock for the block (waiting up to ``timeout`` s).

    Two runs that each load the store, add to it and save it would otherwise lose the
    first run's chunks; the lock makes the second run wait for the first.

    Raises:
        IndexLockedError: Another run kept the lock longer than ``timeout``.
    """
    lock = FileLock(str(index_dir / RUN_LOCK_FILE), timeout=timeout, thread_local=False)
    acquiring = asyncio.ensure_future(run_in_executor(None, lock.acquire))
    try:
        await asyncio.shield(acquiring)
    except Timeout as exc:
        raise IndexLockedError(
            f"another indexing run has held {index_dir} for over {timeout:g} s; "
            f"wait for it to finish, or remove {index_dir / RUN_LOCK_FILE} if no run is alive"
        ) from exc
    except asyncio.CancelledError:
        # The acquire goes on in its thread: release the lock as soon as it is taken.
        acquiring.add_done_callback(lambda done: _release_if_taken(lock, done))
        raise
    try:
        yield
    finally:
        await run_in_executor(None, lock.release)


@asynccontextmanager
async def run_lock_if_free(index_dir: Path) -> AsyncIterator[bool]:
    """Hold the run lock for the block if no run holds it; yields whether it was taken.

    For readers that may repair what a crashed run left (the sparse index): while a run is
    indexing, what they see is that run's work in progress, not damage, so they leave it.
    """
    lock = FileLock(str(index_dir / RUN_LOCK_FILE), timeout=0, thread_local=False)
    try:
        await run_in_executor(None, lock.acquire)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        await run_in_executor(None, lock.release)


def _release_if_taken(lock: FileLock, done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is None:
        lock.release()
