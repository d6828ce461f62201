"""Sparse (keyword) retrieval: a BM25 index on SQLite FTS5, the lexical half of hybrid search.

:class:`FTS5Index` keeps chunks keyed by the same ids as the FAISS store, updates them
incrementally, and ranks them with FTS5's ``bm25()``. :func:`to_fts5_query` turns any user
question into a safe FTS5 query.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import aiosqlite
from langchain_core.documents import Document
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._closing import AsyncClosing
from langchain_rag_async._sqlite import aopen, close_from_sync, drain_on_cancel
from langchain_rag_async.errors import (
    IndexCorruptedError,
    IndexLockedError,
    RetrievalError,
    VectorStoreError,
)
from langchain_rag_async.observability import span
from langchain_rag_async.retrievers import _fts5_sql as sql
from langchain_rag_async.retrievers._fts5_sql import (
    ENGLISH_STOPWORDS,
    MAX_QUERY_TERMS,
    to_fts5_query,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "ENGLISH_STOPWORDS",
    "MAX_QUERY_TERMS",
    "SPARSE_INDEX_FILENAME",
    "FTS5Index",
    "to_fts5_query",
]

SPARSE_INDEX_FILENAME = "sparse.sqlite"  # inside an index directory
DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a connection waits for another writer
_CORRUPT_CODES = (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
_LOCKED_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# --------------------------------------------------------------------------- connections


@dataclass(frozen=True, slots=True)
class _Target:
    """Where the database lives: a file, or a named in-memory database shared in-process."""

    database: str  # a file path, or the URI of a named in-memory database
    path: Path | None

    @classmethod
    def of(cls, db_path: str | Path | None) -> _Target:
        if db_path is None or str(db_path) == ":memory:":
            return cls(f"file:/rag-fts5-{uuid.uuid4().hex}?vfs=memdb", None)
        return cls(str(db_path), Path(db_path))

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else "in-memory sparse index"


def _connect(target: _Target, busy_timeout: float) -> sqlite3.Connection:
    """Open (and on first use create) the database; blocking, so async callers run it off-loop.

    Raises:
        IndexCorruptedError: The file is not a usable SQLite database.
        VectorStoreError: The file cannot be opened or was written by a newer version.
    """
    try:
        if target.path is not None:
            target.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            target.database, uri=target.path is None, timeout=busy_timeout,
            isolation_level=None, check_same_thread=False,
        )  # fmt: skip
    except (OSError, sqlite3.Error) as exc:
        raise VectorStoreError(
            f"cannot open the sparse index at {target}: {exc}. Check that the directory "
            "exists and is writable, or choose another --index-dir."
        ) from exc
    try:
        _prepare(conn, target)
        return conn
    except BaseException:
        conn.close()
        raise


def _prepare(conn: sqlite3.Connection, target: _Target) -> None:
    try:
        if target.path is not None:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.executescript(sql.SCHEMA)
    except sqlite3.Error as exc:
        if target.path is not None and _error_code(exc) in _CORRUPT_CODES:
            raise IndexCorruptedError(target.path, f"not a SQLite FTS5 index ({exc})") from exc
        raise VectorStoreError(
            f"cannot prepare the sparse index at {target}: {exc}. Make sure SQLite has FTS5 "
            "and that no other program holds the file, then retry."
        ) from exc
    if version > sql.SCHEMA_VERSION:
        raise VectorStoreError(
            f"the sparse index at {target} has schema version {version}, newer than this "
            f"version of langchain-rag-async understands ({sql.SCHEMA_VERSION}); upgrade the "
            "package or rebuild the index into a new --index-dir."
        )


def _error_code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _write_error(exc: sqlite3.Error, target: _Target, plan: sql.WritePlan) -> VectorStoreError:
    if _error_code(exc) in _LOCKED_CODES:
        return IndexLockedError(
            f"the sparse index at {target} stayed locked by another writer: {exc}. "
            "Nothing was written; retry when the other indexing run has finished."
        )
    return VectorStoreError(
        f"writing {len(plan.rows)} upsert(s) and {len(plan.deletes)} delete(s) to the sparse "
        f"index at {target} failed: {exc}. The whole batch was rolled back; fix the offending "
        "chunk (e.g. non-text content) and retry."
    )


def _search_error(exc: Exception, target: _Target, query: str) -> RetrievalError:
    return RetrievalError(
        f"sparse search for {query!r} in {target} failed: {exc}. Retry, or rebuild the index "
        "with `rag-async index` if the error persists."
    )


def _lookup_error(exc: Exception, target: _Target, count: int) -> RetrievalError:
    return RetrievalError(
        f"reading {count} chunk(s) by id from {target} failed: {exc}. Retry, or rebuild the "
        "index with `rag-async index` if the error persists."
    )


@dataclass(slots=True)
class _LoopConnection:
    """The aiosqlite connection of one event loop and the lock that serialises its use."""

    lock: asyncio.Lock
    conn: aiosqlite.Connection | None = None


# --------------------------------------------------------------------------- the index


class FTS5Index(AsyncClosing):
    """A BM25 keyword index of chunks in SQLite FTS5 (Porter stemming, diacritics folded).

    Chunks are stored with their id, text and metadata (as JSON; values JSON cannot hold
    are stored as strings), so results are complete Documents. Updates are incremental:
    only the given ids are touched, and each call is one transaction. A file database
    runs in WAL mode, so other processes may read while one writes; ``db_path=None``
    keeps the index in memory until it is closed.

    Each event loop gets its own aiosqlite connection, used under an ``asyncio.Lock`` so a
    search never sees half of a batch; the sync methods share one ``sqlite3`` connection.
    Call :meth:`aclose` (or :meth:`close`), or use ``async with``: an open aiosqlite
    connection keeps a worker thread alive.

    Args:
        db_path: The SQLite file (``<index_dir>/sparse.sqlite`` by convention; parent
            directories are created); ``None`` or ``":memory:"`` for an in-memory index.
        busy_timeout: Seconds to wait for another writer before giving up.
    """

    __slots__ = ("_busy_timeout", "_closed", "_loops", "_sync_conn", "_sync_lock", "_target")

    def __init__(
        self, db_path: str | Path | None = None, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        self._target = _Target.of(db_path)
        self._busy_timeout = busy_timeout
        self._loops: dict[asyncio.AbstractEventLoop, _LoopConnection] = {}
        self._sync_conn: sqlite3.Connection | None = None
        self._sync_lock = Lock()
        self._closed = False

    @classmethod
    def in_index_dir(
        cls, index_dir: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> FTS5Index:
        """Open the sparse index stored in an index directory (``sparse.sqlite``)."""
        return cls(Path(index_dir) / SPARSE_INDEX_FILENAME, busy_timeout=busy_timeout)

    @property
    def db_path(self) -> Path | None:
        """The SQLite file, or ``None`` for an in-memory index."""
        return self._target.path

    def __repr__(self) -> str:
        return f"FTS5Index({str(self._target)!r})"

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
            ValueError: A document has no id.
            IndexLockedError: Another writer kept the database locked too long.
            VectorStoreError: The write failed; the batch was rolled back.
        """
        plan = sql.plan_write(upserts, deletes)
        if not plan.size:
            return
        with span("sparse.apply", upserts=len(plan.rows), deletes=len(plan.deletes)):
            async with self._aconnection() as conn:
                await self._atransaction(conn, plan)

    async def asearch(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        """Return the ``k`` chunks that best match ``query`` by BM25, best first.

        Args:
            query: The user's question, as typed (any characters are safe).
            k: Number of results wanted.
            filter: Exact-match conditions on metadata keys: a scalar matches equal values,
                ``None`` a missing or null value, a list any of its scalars. The ranking
                runs over matching chunks only, so up to ``k`` results still come back.

        Returns:
            ``(document, score)`` pairs; the score is the positive BM25 relevance
            (higher is better). Empty when the question holds no word.

        Raises:
            ValueError: ``k`` is below 1 or the filter is malformed.
            RetrievalError: The search failed.
        """
        built = sql.build_search(query, k, filter)
        if built is None:
            return []
        with span("sparse.search", k=k) as current:
            results = [sql.to_result(row) for row in await self._asearch_rows(built, query)]
            current.set_attribute("rag.results", len(results))
        return results

    async def asearch_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Like :meth:`asearch`, but ``(id, score)`` pairs: no text read, no Document built.

        For callers that rank first and fetch only the winners (the hybrid retriever).
        """
        built = sql.build_search(query, k, filter, columns="c.id")
        if built is None:
            return []
        with span("sparse.search", k=k, ids_only=True) as current:
            results = [sql.to_id_result(row) for row in await self._asearch_rows(built, query)]
            current.set_attribute("rag.results", len(results))
        return results

    async def _asearch_rows(self, built: tuple[str, list[Any]], query: str) -> list[Any]:
        """Run one search statement on this loop's connection; its rows."""
        async with self._aconnection() as conn:
            try:
                return list(await drain_on_cancel(conn, conn.execute_fetchall(*built)))
            except sqlite3.Error as exc:
                raise _search_error(exc, self._target, query) from exc

    async def aget_by_ids(self, ids: Iterable[str]) -> list[Document]:
        """The chunks stored under ``ids``, in the order asked; unknown ids are skipped.

        Args:
            ids: Chunk ids (repeats are read once).

        Returns:
            Fresh documents, their ids set.

        Raises:
            RetrievalError: The lookup failed.
        """
        batches = sql.get_batches(ids)
        rows: list[Any] = []
        with span("sparse.get_by_ids", ids=sum(len(b) for _, b in batches)):
            async with self._aconnection() as conn:
                for statement, params in batches:
                    try:
                        read = conn.execute_fetchall(statement, params)
                        rows.extend(await drain_on_cancel(conn, read))
                    except sqlite3.Error as exc:
                        raise _lookup_error(exc, self._target, len(params)) from exc
        return sql.in_order(batches, rows)

    async def acount(self) -> int:
        """Return how many chunks the index holds."""
        async with self._aconnection() as conn:
            rows = list(await drain_on_cancel(conn, conn.execute_fetchall(sql.COUNT_SQL)))
        return int(rows[0][0])

    async def aids(self) -> set[str]:
        """Return the ids of all chunks (to reconcile with the vector store)."""
        async with self._aconnection() as conn:
            rows = await drain_on_cancel(conn, conn.execute_fetchall(sql.IDS_SQL))
        return {row[0] for row in rows}

    async def aclose(self) -> None:
        """Close every connection; the index cannot be used afterwards (idempotent)."""
        self._closed = True
        loop = asyncio.get_running_loop()
        for owner, state in list(self._loops.items()):
            async with state.lock if owner is loop else nullcontext():
                await _aclose_quietly(state.conn)
                state.conn = None
        self._loops.clear()
        await run_in_executor(None, self._close_sync)

    async def _atransaction(self, conn: aiosqlite.Connection, plan: sql.WritePlan) -> None:
        if conn.in_transaction:  # left open by a cancelled rollback
            await conn.rollback()
        try:
            await conn.execute("BEGIN IMMEDIATE")
            if plan.deletes:
                await conn.executemany(sql.DELETE_SQL, plan.deletes)
            if plan.rows:
                await conn.executemany(sql.UPSERT_SQL, plan.rows)
            await conn.execute("COMMIT")
        except BaseException as exc:
            await _arollback_quietly(conn)
            if isinstance(exc, sqlite3.Error):
                raise _write_error(exc, self._target, plan) from exc
            raise

    @asynccontextmanager
    async def _aconnection(self) -> AsyncIterator[aiosqlite.Connection]:
        """Yield this loop's connection (opened on first use) while holding its lock."""
        self._check_open()
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops.setdefault(loop, _LoopConnection(lock=asyncio.Lock()))
        async with state.lock:
            if state.conn is None:
                self._check_open()
                conn = aiosqlite.Connection(
                    lambda: _connect(self._target, self._busy_timeout), iter_chunk_size=256
                )
                state.conn = await aopen(conn)
                await self._aclose_stale_loops()
            yield state.conn

    async def _aclose_stale_loops(self) -> None:
        """Close connections of event loops that have been closed (after opening a new one)."""
        for loop, state in list(self._loops.items()):
            if loop.is_closed() and self._loops.pop(loop, None) is not None:
                await _aclose_quietly(state.conn)

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
        with span("sparse.apply", upserts=len(plan.rows), deletes=len(plan.deletes)):
            with self._connection() as conn:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(sql.DELETE_SQL, plan.deletes)
                    conn.executemany(sql.UPSERT_SQL, plan.rows)
                    conn.execute("COMMIT")
                except BaseException as exc:
                    _rollback_quietly(conn)
                    if isinstance(exc, sqlite3.Error):
                        raise _write_error(exc, self._target, plan) from exc
                    raise

    def search(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        """Sync twin of :meth:`asearch`."""
        built = sql.build_search(query, k, filter)
        if built is None:
            return []
        with span("sparse.search", k=k):
            return [sql.to_result(row) for row in self._search_rows(built, query)]

    def search_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Sync twin of :meth:`asearch_ids`."""
        built = sql.build_search(query, k, filter, columns="c.id")
        if built is None:
            return []
        with span("sparse.search", k=k, ids_only=True):
            return [sql.to_id_result(row) for row in self._search_rows(built, query)]

    def _search_rows(self, built: tuple[str, list[Any]], query: str) -> list[Any]:
        """Sync twin of :meth:`_asearch_rows`."""
        with self._connection() as conn:
            try:
                return conn.execute(*built).fetchall()
            except sqlite3.Error as exc:
                raise _search_error(exc, self._target, query) from exc

    def get_by_ids(self, ids: Iterable[str]) -> list[Document]:
        """Sync twin of :meth:`aget_by_ids`."""
        batches = sql.get_batches(ids)
        rows: list[Any] = []
        with (
            span("sparse.get_by_ids", ids=sum(len(b) for _, b in batches)),
            self._connection() as conn,
        ):
            for statement, params in batches:
                try:
                    rows.extend(conn.execute(statement, params).fetchall())
                except sqlite3.Error as exc:
                    raise _lookup_error(exc, self._target, len(params)) from exc
        return sql.in_order(batches, rows)

    def count(self) -> int:
        """Sync twin of :meth:`acount`."""
        with self._connection() as conn:
            return int(conn.execute(sql.COUNT_SQL).fetchone()[0])

    def ids(self) -> set[str]:
        """Sync twin of :meth:`aids`."""
        with self._connection() as conn:
            return {row[0] for row in conn.execute(sql.IDS_SQL)}

    def close(self) -> None:
        """Close every connection (async ones too); prefer :meth:`aclose` in async code."""
        self._closed = True
        states, self._loops = list(self._loops.values()), {}
        conns = [s.conn for s in states if s.conn is not None]
        close_from_sync(*conns)
        self._close_sync()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._sync_lock:
            self._check_open()
            if self._sync_conn is None:
                self._sync_conn = _connect(self._target, self._busy_timeout)
            yield self._sync_conn

    def _close_sync(self) -> None:
        with self._sync_lock:
            conn, self._sync_conn = self._sync_conn, None
        if conn is not None:
            conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise VectorStoreError(
                f"the sparse index at {self._target} is closed; open a new FTS5Index"
            )


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.rollback()
    except sqlite3.Error:  # keep the original error; the next BEGIN cleans up
        pass


async def _arollback_quietly(conn: aiosqlite.Connection) -> None:
    try:
        await asyncio.shield(conn.rollback())
    except (sqlite3.Error, ValueError):  # keep the original error; the next BEGIN cleans up
        pass


async def _aclose_quietly(*conns: aiosqlite.Connection | None) -> None:
    for conn in conns:
        try:
            if conn is not None:
                await conn.close()
        except (sqlite3.Error, ValueError):  # already closed or a dead connection
            pass
