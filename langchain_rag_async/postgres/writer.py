"""The indexing pipeline's store over PostgreSQL: one transaction per checkpoint.

:class:`PostgresIndexWriter` offers what the pipeline calls on its store
(``aadd_embeddings``, ``adelete``, ``aget_by_ids``, ``asave_local``) on one connection
whose transaction stays open from one checkpoint to the next. The record manager bound to
it (:class:`~langchain_rag_async.postgres.record_manager.PostgresRecordManager` with
``writer=``) writes the checkpoint's records into that same transaction and commits it:
readers, on any host, see a checkpoint's chunks (vectors and keyword rows, one row each)
and the records that name them at once, never a half. A crash rolls the whole checkpoint
back, so the records and the chunks always agree: nothing to reconcile at the next run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.documents import Document
from sqlalchemy.ext.asyncio import AsyncConnection

from langchain_rag_async.errors import UsageError
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames, chunk_rows
from langchain_rag_async.postgres.record_manager import Statement, run_statements
from langchain_rag_async.postgres.schema import aensure_chunks
from langchain_rag_async.postgres.store import adelete_chunks, aread_chunks, awrite_chunks

__all__ = ("PostgresIndexWriter",)


class PostgresIndexWriter:
    """Chunk writes of one indexing run, committed with their records at checkpoints.

    Use it as an async context manager; leaving the block rolls back whatever was not
    committed (a crash or a cancellation loses only the open checkpoint).

    Args:
        db: The database.
        names: The index's table names.
    """

    __slots__ = ("_conn", "_context", "_lock", "_table_ready", "db", "names")

    def __init__(self, db: PostgresDatabase, names: TableNames) -> None:
        self.db = db
        self.names = names
        self._conn: AsyncConnection | None = None
        self._context: Any = None
        self._lock = asyncio.Lock()
        self._table_ready = False

    async def __aenter__(self) -> PostgresIndexWriter:
        self._context = self.db.connect()
        self._conn = await self._context.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, context = self._conn, self._context
        self._conn = self._context = None
        if conn is not None and context is not None:
            try:
                await conn.rollback()  # what no checkpoint committed
            finally:
                await context.__aexit__(None, None, None)

    def _connection(self) -> AsyncConnection:
        if self._conn is None:
            raise UsageError("PostgresIndexWriter is used outside its `async with` block")
        return self._conn

    async def aadd_embeddings(
        self,
        text_embeddings: Iterable[tuple[str, list[float]]],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Stage chunks with their vectors (visible to others at the next checkpoint)."""
        pairs = list(text_embeddings)
        if not pairs:
            return []
        if ids is None:
            raise UsageError("the index writer stores chunks under their own ids; pass ids")
        metas = list(metadatas) if metadatas is not None else [{} for _ in pairs]
        rows = chunk_rows([t for t, _ in pairs], [v for _, v in pairs], metas, list(ids))
        if not self._table_ready:  # DDL commits on its own connection, before our rows
            await aensure_chunks(self.db, self.names, len(pairs[0][1]))
            self._table_ready = True
        await self.awrite_rows(rows)
        return list(ids)

    async def awrite_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Stage chunk rows built by ``_sql.chunk_rows`` (the chunk table must exist)."""
        async with self._lock:
            await awrite_chunks(self._connection(), self.names, rows)

    async def adelete(self, ids: Sequence[str] | None = None) -> bool:
        """Stage the deletion of chunks by id."""
        if ids and (self._table_ready or await self._has_table()):
            async with self._lock:
                await adelete_chunks(self._connection(), self.names, list(ids))
        return True

    async def aget_by_ids(self, ids: Sequence[str]) -> list[Document]:
        """Chunks as this run sees them (its staged writes included)."""
        if not ids or not (self._table_ready or await self._has_table()):
            return []
        async with self._lock:
            return await aread_chunks(self._connection(), self.names, ids)

    async def asave_local(self, folder_path: str) -> None:
        """Nothing to do: the checkpoint commits with the records (:meth:`acommit`)."""

    async def acommit(self, statements: Sequence[Statement]) -> None:
        """Run ``statements`` (the records) in the open transaction, then commit it all."""
        async with self._lock:
            conn = self._connection()
            await run_statements(conn, statements)
            await conn.commit()

    async def _has_table(self) -> bool:
        rows = await self.db.afetchall(
            "SELECT to_regclass(:t) IS NOT NULL", {"t": self.names.chunks}
        )
        self._table_ready = bool(rows and rows[0][0])
        return self._table_ready
