"""The sparse index on SQLite FTS5: BM25 over the chunks, the lexical half of hybrid search.

:class:`FTS5Index` keeps chunks keyed by the same ids as the vector store, updates them
incrementally, and ranks them with FTS5's ``bm25()``. Connections, errors and closing
come from the package's one SQLite layer (:class:`~langchain_rag_async._sqlite.SQLiteDatabase`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.documents import Document
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._closing import Closing
from langchain_rag_async._sqlite import (
    DEFAULT_BUSY_TIMEOUT,
    Row,
    SQLiteDatabase,
    drain_on_cancel,
)
from langchain_rag_async.aio import LoopBound, both
from langchain_rag_async.aio.coalesce import Coalescer
from langchain_rag_async.errors import IndexCorruptedError, RAGError
from langchain_rag_async.observability import span
from langchain_rag_async.sparse_index import _fts5_sql as sql
from langchain_rag_async.sparse_index import _seal
from langchain_rag_async.sparse_index._fts5_sql import (
    ENGLISH_STOPWORDS,
    MAX_QUERY_TERMS,
    to_fts5_query,
)
from langchain_rag_async.sparse_index.base import SparseIndex

__all__ = (
    "DEFAULT_BUSY_TIMEOUT",
    "ENGLISH_STOPWORDS",
    "MAX_QUERY_TERMS",
    "SPARSE_INDEX_FILENAME",
    "FTS5Index",
    "SealState",
    "StagedWrites",
    "seal_sparse",
    "to_fts5_query",
)

SPARSE_INDEX_FILENAME = "sparse.sqlite"  # inside an index directory
SealState = _seal.SealState
_Searches = Coalescer[tuple[str, str, list[Any]], list[tuple[str, float]]]


def _write_action(plan: sql.WritePlan) -> str:
    return f"writing {len(plan.rows)} upsert(s) and {len(plan.deletes)} delete(s)"


def _search_action(query: str) -> str:
    return f"searching for {query!r}"


def _lookup_action(ids: int) -> str:
    return f"reading {ids} chunk(s) by id"


class FTS5Index(Closing):
    """A BM25 sparse index of chunks in SQLite FTS5 (Porter stemming, diacritics folded).

    Chunks are stored with their id, text and metadata (as JSON; values JSON cannot hold
    are stored as strings), so results are complete Documents. Updates are incremental:
    only the given ids are touched, and each call is one transaction. A file database
    runs in WAL mode, so other processes may read while one writes; ``db_path=None``
    keeps the index in memory until it is closed.

    Each event loop gets its own aiosqlite connection, used under an ``asyncio.Lock`` so a
    search never sees half of a batch; the sync methods share one ``sqlite3`` connection.
    Close it with :meth:`aclose` / :meth:`close` (or ``async with`` / ``with``): closing is
    final, as for every SQLite file of the package (see
    :class:`~langchain_rag_async._sqlite.SQLiteDatabase`).

    Args:
        db_path: The SQLite file (``<index_dir>/sparse.sqlite`` by convention; parent
            directories are created); ``None`` or ``":memory:"`` for an in-memory index.
        busy_timeout: Seconds to wait for another writer before giving up.
    """

    __slots__ = ("_db", "_searches")

    def __init__(
        self,
        db_path: str | Path | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        read_only: bool = False,
    ) -> None:
        self._db = SQLiteDatabase(
            db_path,
            schema=sql.SCHEMA,
            schema_version=sql.SCHEMA_VERSION,
            synchronous="NORMAL",
            busy_timeout=busy_timeout,
            label="sparse index",
            read_only=read_only,
            on_connect=_seal.register,
        )
        self._searches: LoopBound[_Searches] = LoopBound(
            lambda: Coalescer(self._afetch_searches, sql.SEARCH_BATCH, name="rag-sparse-search")
        )

    @classmethod
    def in_index_dir(
        cls,
        index_dir: str | Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        read_only: bool = False,
    ) -> FTS5Index:
        """Open the sparse index stored in an index directory (``sparse.sqlite``).

        ``read_only``: for searching an index in a directory this process may not write
        (any write then fails).
        """
        path = Path(index_dir) / SPARSE_INDEX_FILENAME
        return cls(path, busy_timeout=busy_timeout, read_only=read_only)

    @property
    def db_path(self) -> Path | None:
        """The SQLite file, or ``None`` for an in-memory index."""
        return self._db.file

    def __repr__(self) -> str:
        return f"FTS5Index({str(self._db.file or ':memory:')!r})"

    # ------------------------------------------------------------------ async API

    async def aupsert(self, documents: Sequence[Document]) -> None:
        """Insert chunks or replace those with the same id, in one transaction (see aapply)."""
        await self.aapply(upserts=documents)

    async def adelete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id in one transaction; unknown ids are ignored (see aapply)."""
        await self.aapply(deletes=ids)

    async def aapply(
        self, *, upserts: Sequence[Document] = (), deletes: Sequence[str] = ()
    ) -> None:
        """Delete ``deletes`` then upsert ``upserts``, all in ONE transaction.

        An id in both lists ends up present, with the new content. Cancelling the call
        (e.g. with ``asyncio.timeout``) applies the batch entirely or not at all.

        Raises:
            ConfigurationError: A document has no id (also a ``ValueError``).
            IndexLockedError: Another writer kept the database locked too long.
            VectorStoreError: The write failed; the batch was rolled back.
        """
        plan = sql.plan_write(upserts, deletes)
        if not plan.size:
            return
        with span("sparse.apply", upserts=len(plan.rows), deletes=len(plan.deletes)):
            async with self._db.atransaction(_write_action(plan)) as conn:
                await conn.execute(_seal.UNSEAL_SQL)
                if plan.deletes:
                    await conn.executemany(sql.DELETE_SQL, plan.deletes)
                if plan.rows:
                    await conn.executemany(sql.UPSERT_SQL, plan.rows)

    @asynccontextmanager
    async def astaged(self) -> AsyncIterator[StagedWrites]:
        """One write transaction a run feeds batch by batch; readers see it when it ends.

        The indexing pipeline writes each batch here as the vector store takes it, so that
        FTS5's work overlaps the embedding of later batches, and ends the block (commit:
        the rows and their seal at once) only after the store holding them is saved. An
        exception or cancellation inside the block rolls all of it back. Meanwhile this
        object's connection is in the transaction: other calls on it wait for the end.

        Raises:
            IndexLockedError: Another writer kept the database locked too long.
            VectorStoreError: A write failed; everything staged was rolled back.
        """
        async with self._db.atransaction("writing a run's chunks") as conn:
            await conn.execute(_seal.UNSEAL_SQL)
            yield StagedWrites(conn)

    async def asearch(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        """Return the ``k`` chunks that best match ``query`` by BM25, best first.

        Args:
            query: The user's question, as typed (any characters are safe).
            k: Number of results wanted.
            filter: Exact-match conditions on metadata keys: a scalar matches equal values,
                ``None`` a missing or null value, a list any of its values. The ranking
                runs over matching chunks only, so up to ``k`` results still come back.

        Returns:
            ``(document, score)`` pairs; the score is the positive BM25 relevance
            (higher is better). Empty when the question holds no word.

        Raises:
            ConfigurationError: ``k`` is below 1 or the filter is malformed (also a
                ``ValueError``).
            VectorStoreError: The search failed.
        """
        built = sql.build_search(query, k, filter)
        if built is None:
            return []
        with span("sparse.search", k=k) as current:
            rows = await self._db.afetchall(*built, action=_search_action(query))
            results = [sql.to_result(row) for row in rows]
            current.set_attribute("rag.results", len(results))
        return results

    async def asearch_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Like :meth:`asearch`, but ``(id, score)`` pairs: no text read, no Document built.

        For callers that rank first and fetch only the winners (the hybrid retriever).
        Concurrent calls of one event loop are run together, as one statement (at most
        ``SEARCH_BATCH`` searches; each gets exactly the rows it gets alone): one turn of
        the connection's lock and one hop to its thread, not one per search.
        """
        built = sql.build_search(query, k, filter, columns="c.id")
        if built is None:
            return []
        with span("sparse.search", k=k, ids_only=True) as current:
            results = await self._searches.get().submit((query, *built))
            current.set_attribute("rag.results", len(results))
        return results

    async def _afetch_searches(
        self, searches: list[tuple[str, str, list[Any]]]
    ) -> list[list[tuple[str, float]]]:
        """Run searches of :meth:`asearch_ids` (query, SQL, parameters) batched.

        One search: its own statement on this loop's connection. Several: two statements
        run at once, half the searches each, one on this loop's connection and one on the
        sync connection in an executor thread (SQLite runs them on two cores; each search
        is one statement's consistent read, as alone).
        """
        if len(searches) == 1:
            query, statement, params = searches[0]
            rows = await self._db.afetchall(statement, params, action=_search_action(query))
            return [[sql.to_id_result(row) for row in rows]]
        half = (len(searches) + 1) // 2
        here = sql.batch_searches([(s, p) for _, s, p in searches[:half]])
        there = sql.batch_searches([(s, p) for _, s, p in searches[half:]])
        action = f"searching for {len(searches)} queries at once"
        fetch = partial(self._db.fetchall, *there, action=action)

        async def on_sync_connection() -> list[Row]:
            return await run_in_executor(None, fetch)

        first, second = await both(self._db.afetchall(*here, action=action), on_sync_connection())
        return sql.split_searches(first, half) + sql.split_searches(second, len(searches) - half)

    async def aget_by_ids(self, ids: Iterable[str]) -> list[Document]:
        """The chunks stored under ``ids``, in the order asked; unknown ids are skipped.

        Args:
            ids: Chunk ids (repeats are read once).

        Returns:
            Fresh documents, their ids set.

        Raises:
            VectorStoreError: The lookup failed.
        """
        batches = sql.get_batches(ids)
        count = sum(len(b) for _, b in batches)
        rows: list[Any] = []
        with span("sparse.get_by_ids", ids=count):
            async with self._db.alocked(_lookup_action(count)) as conn:
                for statement, params in batches:
                    rows.extend(
                        await drain_on_cancel(conn, conn.execute_fetchall(statement, params))
                    )
        return sql.in_order(batches, rows)

    async def acount(self) -> int:
        """Return how many chunks the index holds."""
        rows = await self._db.afetchall(sql.COUNT_SQL, action="counting chunks")
        return int(rows[0][0])

    async def aintegrity_problem(self) -> str | None:
        """FTS5's own check of the full-text index against its rows; ``None`` when sound.

        Finds damage SQLite's ``PRAGMA integrity_check`` misses before SQLite 3.44 (a bit
        flipped inside the index: ranking changes, no error). It reads the whole index.
        """
        try:
            await self._db.afetchall(sql.INTEGRITY_SQL, action="checking the full-text index")
        except RAGError as exc:
            return str(exc)
        return None

    async def aseal(self) -> None:
        """Seal the current contents: :meth:`acheck_seal` then finds any later damage.

        Reads the whole index (about 25 ms for the rust-book's 1,542 chunks here), so
        writers call it once their run's writes are done, not after every batch. Every
        write removes the seal in its own transaction; see
        :mod:`~langchain_rag_async.sparse_index._seal`.
        """
        with span("sparse.seal"):
            async with self._db.atransaction("sealing the index") as conn:
                rows = await drain_on_cancel(conn, conn.execute_fetchall(_seal.DIGEST_SQL))
                await conn.execute(_seal.SEAL_SQL, (_seal.combine(tuple(next(iter(rows)))),))

    async def acheck_seal(self) -> SealState:
        """Whether the contents still match their seal (see :data:`SealState`)."""
        with span("sparse.check_seal"):
            if not (await self._db.afetchall(_seal.HAS_SEAL_TABLE_SQL))[0][0]:
                return "unsealed"  # a file of schema version 1, opened read-only
            rows = await self._db.afetchall(_seal.CHECK_SQL, action="checking the seal")
        return _seal.judge(tuple(rows[0]))

    async def averify(self) -> None:
        """Raise :class:`IndexCorruptedError` when the contents do not match their seal.

        Raises:
            IndexCorruptedError: The file changed since it was last written (naming it
                and ``rag-async doctor``). An unsealed file passes.
        """
        if await self.acheck_seal() == "mismatch":
            raise _damaged(self._db.file)

    async def aids(self) -> set[str]:
        """Return the ids of all chunks (to reconcile with the vector store)."""
        rows = await self._db.afetchall(sql.IDS_SQL, action="listing chunk ids")
        return {row[0] for row in rows}

    async def aclose(self) -> None:
        """Close every connection; the index cannot be used afterwards (idempotent)."""
        await self._db.aclose()

    # ------------------------------------------------------------------ sync API

    def upsert(self, documents: Sequence[Document]) -> None:
        """Sync twin of :meth:`aupsert`."""
        self.apply(upserts=documents)

    def delete(self, ids: Sequence[str]) -> None:
        """Sync twin of :meth:`adelete`."""
        self.apply(deletes=ids)

    def apply(self, *, upserts: Sequence[Document] = (), deletes: Sequence[str] = ()) -> None:
        """Sync twin of :meth:`aapply`."""
        plan = sql.plan_write(upserts, deletes)
        if not plan.size:
            return
        with (
            span("sparse.apply", upserts=len(plan.rows), deletes=len(plan.deletes)),
            self._db.transaction(_write_action(plan)) as conn,
        ):
            conn.execute(_seal.UNSEAL_SQL)
            conn.executemany(sql.DELETE_SQL, plan.deletes)
            conn.executemany(sql.UPSERT_SQL, plan.rows)

    def search(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        """Sync twin of :meth:`asearch`."""
        built = sql.build_search(query, k, filter)
        if built is None:
            return []
        with span("sparse.search", k=k):
            rows = self._db.fetchall(*built, action=_search_action(query))
            return [sql.to_result(row) for row in rows]

    def search_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Sync twin of :meth:`asearch_ids`."""
        built = sql.build_search(query, k, filter, columns="c.id")
        if built is None:
            return []
        with span("sparse.search", k=k, ids_only=True):
            rows = self._db.fetchall(*built, action=_search_action(query))
            return [sql.to_id_result(row) for row in rows]

    def get_by_ids(self, ids: Iterable[str]) -> list[Document]:
        """Sync twin of :meth:`aget_by_ids`."""
        batches = sql.get_batches(ids)
        count = sum(len(b) for _, b in batches)
        rows: list[Any] = []
        with span("sparse.get_by_ids", ids=count), self._db.locked(_lookup_action(count)) as conn:
            for statement, params in batches:
                rows.extend(conn.execute(statement, params).fetchall())
        return sql.in_order(batches, rows)

    def count(self) -> int:
        """Sync twin of :meth:`acount`."""
        return int(self._db.fetchall(sql.COUNT_SQL, action="counting chunks")[0][0])

    def seal(self) -> None:
        """Sync twin of :meth:`aseal`."""
        with span("sparse.seal"), self._db.transaction("sealing the index") as conn:
            parts = conn.execute(_seal.DIGEST_SQL).fetchone()
            conn.execute(_seal.SEAL_SQL, (_seal.combine(tuple(parts)),))

    def check_seal(self) -> SealState:
        """Sync twin of :meth:`acheck_seal`."""
        with span("sparse.check_seal"):
            if not self._db.fetchall(_seal.HAS_SEAL_TABLE_SQL)[0][0]:
                return "unsealed"
            return _seal.judge(tuple(self._db.fetchall(_seal.CHECK_SQL)[0]))

    def verify(self) -> None:
        """Sync twin of :meth:`averify`."""
        if self.check_seal() == "mismatch":
            raise _damaged(self._db.file)

    def ids(self) -> set[str]:
        """Sync twin of :meth:`aids`."""
        return {row[0] for row in self._db.fetchall(sql.IDS_SQL, action="listing chunk ids")}

    def close(self) -> None:
        """Sync twin of :meth:`aclose` (also ends the connections of async callers)."""
        self._db.close()


class StagedWrites:
    """Writes inside :meth:`FTS5Index.astaged`'s transaction (not visible until it ends)."""

    __slots__ = ("_conn", "_sealed")

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._sealed = False  # the transaction removed the seal when it began

    async def aapply(
        self, *, upserts: Sequence[Document] = (), deletes: Sequence[str] = ()
    ) -> None:
        """Delete ``deletes`` then upsert ``upserts`` (as :meth:`FTS5Index.aapply`)."""
        plan = sql.plan_write(upserts, deletes)
        if not plan.size:
            return
        with span("sparse.apply", upserts=len(plan.rows), deletes=len(plan.deletes), staged=True):
            if self._sealed:  # a seal taken earlier in the transaction no longer holds
                await self._conn.execute(_seal.UNSEAL_SQL)
                self._sealed = False
            if plan.deletes:
                await self._conn.executemany(sql.DELETE_SQL, plan.deletes)
            if plan.rows:
                await self._conn.executemany(sql.UPSERT_SQL, plan.rows)

    async def aseal(self) -> None:
        """Seal the staged contents (committed with them; see :meth:`FTS5Index.aseal`)."""
        with span("sparse.seal", staged=True):
            rows = await drain_on_cancel(self._conn, self._conn.execute_fetchall(_seal.DIGEST_SQL))
            self._sealed = True  # from here on, in doubt: a later write removes it again
            await self._conn.execute(_seal.SEAL_SQL, (_seal.combine(tuple(next(iter(rows)))),))


async def seal_sparse(sparse: SparseIndex) -> None:
    """Seal a sparse index after a run's writes, so that readers find later damage.

    Only :class:`FTS5Index` keeps a seal; other implementations answer for their own
    integrity.
    """
    if isinstance(sparse, FTS5Index):
        await sparse.aseal()


def _damaged(file: Path | None) -> IndexCorruptedError:
    return IndexCorruptedError(
        file or ":memory:",
        "its contents changed since they were last written (they do not match their seal: "
        "a bit flip or an edit from outside), and keyword search would rank wrongly",
    )
