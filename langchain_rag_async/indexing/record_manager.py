"""A LangChain ``RecordManager`` on SQLite, plus a per-namespace table of indexed files.

:class:`SQLiteRecordManager` records which chunk keys were written and when (what
``langchain_core.indexing.aindex`` needs for incremental and full cleanup) and which files
were indexed with which size, mtime and hash, so unchanged files are skipped unread.
Async methods run on aiosqlite; their sync twins on sqlite3.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.indexing import RecordManager

from langchain_rag_async._closing import Closing
from langchain_rag_async._sqlite import SQLiteDatabase
from langchain_rag_async.errors import ClockSkewError, ConfigurationError

__all__ = ("FileRecord", "SQLiteRecordManager", "file_is_unchanged")

FILE_STATUSES = ("indexed", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS record_manager_keys (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    group_id TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_record_manager_keys_updated
    ON record_manager_keys (namespace, updated_at);
CREATE INDEX IF NOT EXISTS ix_record_manager_keys_group
    ON record_manager_keys (namespace, group_id, updated_at);
CREATE TABLE IF NOT EXISTS record_manager_files (
    namespace TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    content_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('indexed', 'failed')),
    chunk_count INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, path)
) WITHOUT ROWID;
"""

_UPSERT_KEYS_SQL = (
    "INSERT INTO record_manager_keys (namespace, key, group_id, updated_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (namespace, key) "
    "DO UPDATE SET group_id = excluded.group_id, updated_at = excluded.updated_at"
)
_DELETE_KEYS_SQL = (
    "DELETE FROM record_manager_keys "
    "WHERE namespace = ? AND key IN (SELECT value FROM json_each(?))"
)
_EXISTS_SQL = (
    "SELECT key FROM record_manager_keys "
    "WHERE namespace = ? AND key IN (SELECT value FROM json_each(?))"
)
_MAX_TIME_SQL = "SELECT MAX(updated_at) FROM record_manager_keys"
_UPSERT_FILES_SQL = (
    "INSERT INTO record_manager_files (namespace, path, size, mtime, content_hash, status, "
    "chunk_count, error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (namespace, path) DO UPDATE SET size = excluded.size, "
    "mtime = excluded.mtime, content_hash = excluded.content_hash, status = excluded.status, "
    "chunk_count = excluded.chunk_count, error = excluded.error, "
    "updated_at = excluded.updated_at"
)
_DELETE_FILES_SQL = (
    "DELETE FROM record_manager_files "
    "WHERE namespace = ? AND path IN (SELECT value FROM json_each(?))"
)
_GET_FILES_SQL = (
    "SELECT path, size, mtime, content_hash, status, chunk_count, error, updated_at "
    "FROM record_manager_files WHERE namespace = ? ORDER BY path"
)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What the index knows about one source file.

    Attributes:
        path: The Document ``source`` (an absolute path string).
        size: File size in bytes when it was read.
        mtime: Modification time (seconds since the epoch) when it was read.
        content_hash: sha256 hex digest of the raw bytes.
        status: ``"indexed"`` or ``"failed"``.
        chunk_count: How many chunks the file produced.
        error: Why the file failed, for ``"failed"``.
        updated_at: When the row was written (set by the record manager).
    """

    path: str
    size: int
    mtime: float
    content_hash: str
    status: str
    chunk_count: int = 0
    error: str | None = None
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in FILE_STATUSES:
            raise ConfigurationError(
                f"FileRecord.status must be one of {FILE_STATUSES}; got {self.status!r}"
            )


def file_is_unchanged(record: FileRecord | None, size: int, mtime: float) -> bool:
    """Return whether a file can be skipped: indexed before with the same size and mtime.

    Args:
        record: What the file table holds for the file (``None``: never seen).
        size: The file's size now.
        mtime: The file's modification time now.
    """
    return (
        record is not None
        and record.status == "indexed"
        and record.size == size
        and record.mtime == mtime
    )


class _MonotonicClock:
    """Wall-clock seconds that never go back within the process, without locks.

    The system's monotonic clock (nanoseconds) anchored to the wall clock once, so a
    wall-clock step back (NTP, manual change) cannot reorder timestamps. :meth:`advance_to`
    moves the anchor forward when a database holds newer times (clock behind since then).
    """

    __slots__ = ("_offset_ns",)

    _MARGIN_NS = 1_000  # above the float spacing of epoch seconds (~240 ns)

    def __init__(self) -> None:
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    def now(self) -> float:
        return (time.monotonic_ns() + self._offset_ns) / 1e9

    def advance_to(self, newest_stored: float) -> None:
        """Return only times strictly after ``newest_stored`` from now on."""
        lag_ns = (
            int(newest_stored * 1e9) + self._MARGIN_NS - (time.monotonic_ns() + self._offset_ns)
        )
        if lag_ns > 0:
            self._offset_ns += lag_ns


_CLOCK = _MonotonicClock()

_Statement = tuple[str, list[tuple[Any, ...]]]


def _check_group_ids(
    keys: Sequence[str], group_ids: Sequence[str | None] | None
) -> list[str | None]:
    if group_ids is None:
        return [None] * len(keys)
    if len(keys) != len(group_ids):
        raise ConfigurationError(
            f"Number of keys ({len(keys)}) does not match number of group_ids ({len(group_ids)})"
        )
    return list(group_ids)


def _update_time(time_at_least: float | None) -> float:
    """Return the timestamp of a write, refusing one older than ``time_at_least``.

    Raises:
        ClockSkewError: The clock is behind ``time_at_least``.
    """
    update_time = _CLOCK.now()
    if time_at_least and update_time < time_at_least:
        raise ClockSkewError(
            f"Time sync issue: {update_time} < {time_at_least}. The system clock went back "
            "or time_at_least came from another clock; pass a time from get_time()."
        )
    return update_time


def _list_keys_query(
    namespace: str,
    before: float | None,
    after: float | None,
    group_ids: Sequence[str] | None,
    limit: int | None,
) -> tuple[str, list[Any]]:
    sql = "SELECT key FROM record_manager_keys WHERE namespace = ?"
    params: list[Any] = [namespace]
    if after:
        sql += " AND updated_at > ?"
        params.append(after)
    if before:
        sql += " AND updated_at < ?"
        params.append(before)
    if group_ids:
        sql += " AND group_id IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(list(group_ids)))
    sql += " ORDER BY updated_at, key"
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _exists_result(keys: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> list[bool]:
    found = {row[0] for row in rows}
    return [key in found for key in keys]


def _file_from_row(row: tuple[Any, ...]) -> FileRecord:
    path, size, mtime, digest, status, chunk_count, error, updated_at = row
    return FileRecord(
        path=path,
        size=int(size),
        mtime=float(mtime),
        content_hash=digest,
        status=status,
        chunk_count=int(chunk_count),
        error=error,
        updated_at=float(updated_at),
    )


class _Batch:
    """The statements of one write transaction, built without I/O."""

    __slots__ = ("namespace", "statements")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.statements: list[_Statement] = []

    def delete_keys(self, keys: Sequence[str]) -> _Batch:
        if keys:
            self.statements.append((_DELETE_KEYS_SQL, [(self.namespace, json.dumps(list(keys)))]))
        return self

    def upsert_keys(
        self, keys: Sequence[str], group_ids: Sequence[str | None], now: float
    ) -> _Batch:
        rows = [(self.namespace, k, g, now) for k, g in zip(keys, group_ids, strict=True)]
        if rows:
            self.statements.append((_UPSERT_KEYS_SQL, rows))
        return self

    def upsert_files(self, files: Sequence[FileRecord], now: float) -> _Batch:
        rows = [
            (self.namespace, f.path, f.size, f.mtime, f.content_hash, f.status, f.chunk_count)
            + (f.error, now)
            for f in files
        ]
        if rows:
            self.statements.append((_UPSERT_FILES_SQL, rows))
        return self

    def delete_files(self, paths: Sequence[str]) -> _Batch:
        if paths:
            self.statements.append((_DELETE_FILES_SQL, [(self.namespace, json.dumps(list(paths)))]))
        return self


_BatchBuilder = Callable[[float], _Batch]


class SQLiteRecordManager(Closing, RecordManager):
    """``RecordManager`` on one SQLite file, async on aiosqlite, sync on sqlite3.

    Keys and files of different namespaces share the file without mixing. Timestamps
    come from a process-wide clock that only moves forward (and starts above the newest
    stored time), so ``aindex`` cleanup can trust ``updated_at`` ordering. Each write is
    one transaction; async writes are serialised on one connection per event loop.
    Closing is final, as for every SQLite file of the package (see
    :class:`~langchain_rag_async._sqlite.SQLiteDatabase`).

    Example:
        >>> async with SQLiteRecordManager("docs", db_path=index_dir / "records.sqlite") as rm:
        ...     await rm.acreate_schema()
        ...     await aindex(docs, rm, store, cleanup="incremental", source_id_key="source")
    """

    def __init__(self, namespace: str, *, db_path: str | Path) -> None:
        """Describe the record manager; the database opens (and is created) on first use.

        Args:
            namespace: Separates the records of one index from others in the same file.
            db_path: SQLite file, or ``":memory:"`` for a private in-memory database
                (kept until :meth:`close` / :meth:`aclose`).
        """
        super().__init__(namespace)
        self._db = SQLiteDatabase(db_path, schema=_SCHEMA, label="record database")
        self._clock_seeded = False

    @property
    def db_path(self) -> str:
        """The database path as given."""
        return self._db.path

    # -- lifecycle --

    async def acreate_schema(self) -> None:
        """Create the tables if they do not exist (also done on first use)."""
        await self._db.afetchall("SELECT 1")

    def create_schema(self) -> None:
        """Sync twin of :meth:`acreate_schema`."""
        self._db.fetchall("SELECT 1")

    async def aclose(self) -> None:
        """Close the database connections for good (idempotent)."""
        await self._db.aclose()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        self._db.close()

    # -- time --

    async def aget_time(self) -> float:
        """Return a high-resolution timestamp (seconds since the epoch).

        It never goes back within the process, and the first call lifts it above the
        newest time stored in the database, so ``aindex`` can compare stored times with it.
        """
        if not self._clock_seeded:
            _seed_clock(await self._db.afetchall(_MAX_TIME_SQL))
            self._clock_seeded = True
        return _CLOCK.now()

    def get_time(self) -> float:
        """Sync twin of :meth:`aget_time`."""
        if not self._clock_seeded:
            _seed_clock(self._db.fetchall(_MAX_TIME_SQL))
            self._clock_seeded = True
        return _CLOCK.now()

    # -- keys --

    async def aupdate(
        self,
        keys: Sequence[str],
        *,
        group_ids: Sequence[str | None] | None = None,
        time_at_least: float | None = None,
    ) -> None:
        """Upsert ``keys`` (with their group ids) stamped with the current time.

        Raises:
            ConfigurationError: ``group_ids`` does not match ``keys`` in length (also a
                ``ValueError``).
            ClockSkewError: The current time is before ``time_at_least``.
        """
        groups = _check_group_ids(keys, group_ids)
        await self._awrite(
            lambda now: _Batch(self.namespace).upsert_keys(keys, groups, now), time_at_least
        )

    def update(
        self,
        keys: Sequence[str],
        *,
        group_ids: Sequence[str | None] | None = None,
        time_at_least: float | None = None,
    ) -> None:
        """Sync twin of :meth:`aupdate`."""
        groups = _check_group_ids(keys, group_ids)
        self._write(
            lambda now: _Batch(self.namespace).upsert_keys(keys, groups, now), time_at_least
        )

    async def aexists(self, keys: Sequence[str]) -> list[bool]:
        """Return, for each key, whether it is recorded in this namespace."""
        if not keys:
            return []
        rows = await self._db.afetchall(_EXISTS_SQL, (self.namespace, json.dumps(list(keys))))
        return _exists_result(keys, rows)

    def exists(self, keys: Sequence[str]) -> list[bool]:
        """Sync twin of :meth:`aexists`."""
        if not keys:
            return []
        rows = self._db.fetchall(_EXISTS_SQL, (self.namespace, json.dumps(list(keys))))
        return _exists_result(keys, rows)

    async def alist_keys(
        self,
        *,
        before: float | None = None,
        after: float | None = None,
        group_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """List keys updated strictly between ``after`` and ``before``, oldest first.

        Args:
            before: Only keys updated before this time.
            after: Only keys updated after this time.
            group_ids: Only keys of these groups (source ids).
            limit: At most this many keys.
        """
        sql, params = _list_keys_query(self.namespace, before, after, group_ids, limit)
        return [row[0] for row in await self._db.afetchall(sql, params)]

    def list_keys(
        self,
        *,
        before: float | None = None,
        after: float | None = None,
        group_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """Sync twin of :meth:`alist_keys`."""
        sql, params = _list_keys_query(self.namespace, before, after, group_ids, limit)
        return [row[0] for row in self._db.fetchall(sql, params)]

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` from this namespace (unknown keys are ignored)."""
        await self._awrite(lambda _: _Batch(self.namespace).delete_keys(keys))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Sync twin of :meth:`adelete_keys`."""
        self._write(lambda _: _Batch(self.namespace).delete_keys(keys))

    # -- files --

    async def aget_files(self) -> dict[str, FileRecord]:
        """Return every file row of this namespace, by path."""
        rows = await self._db.afetchall(_GET_FILES_SQL, (self.namespace,))
        return {record.path: record for record in map(_file_from_row, rows)}

    def get_files(self) -> dict[str, FileRecord]:
        """Sync twin of :meth:`aget_files`."""
        rows = self._db.fetchall(_GET_FILES_SQL, (self.namespace,))
        return {record.path: record for record in map(_file_from_row, rows)}

    async def aupsert_files(self, records: Sequence[FileRecord]) -> None:
        """Insert or replace file rows (``updated_at`` is set to now)."""
        await self._awrite(lambda now: _Batch(self.namespace).upsert_files(records, now))

    def upsert_files(self, records: Sequence[FileRecord]) -> None:
        """Sync twin of :meth:`aupsert_files`."""
        self._write(lambda now: _Batch(self.namespace).upsert_files(records, now))

    async def adelete_files(self, paths: Sequence[str]) -> None:
        """Delete the file rows of ``paths`` (their keys are left alone)."""
        await self._awrite(lambda _: _Batch(self.namespace).delete_files(paths))

    def delete_files(self, paths: Sequence[str]) -> None:
        """Sync twin of :meth:`adelete_files`."""
        self._write(lambda _: _Batch(self.namespace).delete_files(paths))

    async def acommit_file_batch(
        self,
        *,
        files: Sequence[FileRecord],
        keys: Sequence[str],
        group_ids: Sequence[str | None],
        delete_keys: Sequence[str] = (),
    ) -> None:
        """Record a stored batch in ONE transaction, so keys and files never disagree.

        ``delete_keys`` are removed first, then ``keys`` are upserted with ``group_ids``
        (the source paths) and the current time, then the ``files`` rows are upserted.

        Args:
            files: File rows to insert or replace.
            keys: Chunk keys now in the vector store.
            group_ids: The source of each key.
            delete_keys: Keys no longer in the vector store.

        Raises:
            ConfigurationError: ``group_ids`` does not match ``keys`` in length (also a
                ``ValueError``).
        """
        groups = _check_group_ids(keys, group_ids)
        await self._awrite(lambda now: self._file_batch(files, keys, groups, delete_keys, now))

    def commit_file_batch(
        self,
        *,
        files: Sequence[FileRecord],
        keys: Sequence[str],
        group_ids: Sequence[str | None],
        delete_keys: Sequence[str] = (),
    ) -> None:
        """Sync twin of :meth:`acommit_file_batch`."""
        groups = _check_group_ids(keys, group_ids)
        self._write(lambda now: self._file_batch(files, keys, groups, delete_keys, now))

    # -- internals --

    @property
    def _write_action(self) -> str:
        return f"writing records of namespace {self.namespace!r}"

    def _file_batch(
        self,
        files: Sequence[FileRecord],
        keys: Sequence[str],
        groups: Sequence[str | None],
        delete_keys: Sequence[str],
        now: float,
    ) -> _Batch:
        batch = _Batch(self.namespace).delete_keys(delete_keys)
        return batch.upsert_keys(keys, groups, now).upsert_files(files, now)

    async def _awrite(self, build: _BatchBuilder, time_at_least: float | None = None) -> None:
        if not self._clock_seeded:
            await self.aget_time()
        async with self._db.atransaction(self._write_action) as conn:
            batch = build(_update_time(time_at_least))
            for sql, rows in batch.statements:
                await conn.executemany(sql, rows)

    def _write(self, build: _BatchBuilder, time_at_least: float | None = None) -> None:
        if not self._clock_seeded:
            self.get_time()
        with self._db.transaction(self._write_action) as conn:
            batch = build(_update_time(time_at_least))
            for sql, rows in batch.statements:
                conn.executemany(sql, rows)


def _seed_clock(rows: Sequence[tuple[Any, ...]]) -> None:
    newest = rows[0][0] if rows else None
    if newest is not None:
        _CLOCK.advance_to(float(newest))
