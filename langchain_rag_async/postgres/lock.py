"""One indexing run at a time per index, across hosts: a PostgreSQL advisory lock.

The twin of :mod:`langchain_rag_async.indexing.lock` (same names, same behaviour): the
lock is a session-level advisory lock held on a dedicated connection for the block, so it
is released when the block ends, and by the server when the holder's process or host dies
(its connection drops). Two indexers on two hosts never interleave one index.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from langchain_rag_async.errors import IndexLockedError
from langchain_rag_async.indexing.lock import DEFAULT_RUN_LOCK_TIMEOUT
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames

__all__ = ("HOLDER_PREFIX", "holder_name", "run_lock", "run_lock_if_free")

_POLL = 0.05
HOLDER_PREFIX = "rag-async run lock "
"""How a lock connection names itself (``application_name``): ``<prefix><host>:<pid>``.

``rag-async doctor`` reads it to tell a holder whose process died (on this host) from a
run in progress.
"""


def holder_name() -> str:
    """This process's ``application_name`` while it holds the run lock."""
    return f"{HOLDER_PREFIX}{socket.gethostname()}:{os.getpid()}"[:63]


@asynccontextmanager
async def run_lock(
    db: PostgresDatabase, names: TableNames, *, timeout: float = DEFAULT_RUN_LOCK_TIMEOUT
) -> AsyncIterator[None]:
    """Hold the index's run lock for the block (waiting up to ``timeout`` s).

    Raises:
        IndexLockedError: Another run kept the lock longer than ``timeout``.
    """
    key = names.lock_key("run")
    async with db.connect() as conn:
        try:
            async with asyncio.timeout(timeout):
                while not (
                    await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                ).scalar():
                    await conn.rollback()
                    await asyncio.sleep(_POLL)
        except TimeoutError as exc:
            raise IndexLockedError(
                f"another indexing run has held the index {names.prefix!r} in {db.where} for "
                f"over {timeout:g} s; wait for it to finish (the lock is freed when its "
                "process or its connection ends)"
            ) from exc
        await _name_holder(conn)
        try:
            yield
        finally:
            await asyncio.shield(_unlock(conn, key))


@asynccontextmanager
async def run_lock_if_free(db: PostgresDatabase, names: TableNames) -> AsyncIterator[bool]:
    """Hold the run lock for the block if no run holds it; yields whether it was taken."""
    key = names.lock_key("run")
    async with db.connect() as conn:
        taken = bool(
            (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
        )
        if taken:
            await _name_holder(conn)
        else:
            await conn.commit()
        try:
            yield taken
        finally:
            if taken:
                await asyncio.shield(_unlock(conn, key))


async def _name_holder(conn: AsyncConnection) -> None:
    """Name the lock's connection after this host and process (see :data:`HOLDER_PREFIX`)."""
    await conn.execute(
        text("SELECT set_config('application_name', :n, false)"), {"n": holder_name()}
    )
    await conn.commit()


async def _unlock(conn: AsyncConnection, key: int) -> None:
    await conn.execute(
        text("SELECT pg_advisory_unlock(:k), set_config('application_name', '', false)"),
        {"k": key},
    )
    await conn.commit()
