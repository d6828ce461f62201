"""A LangChain ``RecordManager`` in PostgreSQL, with the same file table as the SQLite one.

:class:`PostgresRecordManager` has :class:`~langchain_rag_async.indexing.record_manager.
SQLiteRecordManager`'s interface (keys by group with timestamps, plus the file table the
planner compares files with). Times come from the database server's clock
(``clock_timestamp()``), the one clock every host that shares the index agrees on.

Bound to an :class:`~langchain_rag_async.postgres.writer.PostgresIndexWriter`, its
writes join the writer's open transaction and commit it: the chunks stored since the last
checkpoint and the records that name them become visible together, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.indexing import RecordManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from langchain_rag_async.aio import run_sync
from langchain_rag_async.errors import ClockSkewError, ConfigurationError
from langchain_rag_async.indexing.record_manager import FileRecord
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames
from langchain_rag_async.postgres.schema import aensure_schema

if TYPE_CHECKING:
    from langchain_rag_async.postgres.writer import PostgresIndexWriter

__all__ = ("PostgresRecordManager", "Statement")

Statement = tuple[str, Any]
"""One SQL statement and its parameters (a dict, or a list of dicts for many rows)."""
_NOW = "extract(epoch from clock_timestamp())"


def _groups(keys: Sequence[str], group_ids: Sequence[str | None] | None) -> list[str | None]:
    if group_ids is None:
        return [None] * len(keys)
    if len(keys) != len(group_ids):
        raise ConfigurationError(
            f"Number of keys ({len(keys)}) does not match number of group_ids ({len(group_ids)})"
        )
    return list(group_ids)


class PostgresRecordManager(RecordManager):
    """``RecordManager`` and file table of one namespace, in PostgreSQL.

    Args:
        namespace: Separates the records of one index from others in the same tables.
        db: The database.
        names: The index's table names.
        writer: When given, writes join (and commit) the writer's checkpoint transaction.
    """

    def __init__(
        self,
        namespace: str,
        *,
        db: PostgresDatabase,
        names: TableNames | None = None,
        writer: PostgresIndexWriter | None = None,
    ) -> None:
        super().__init__(namespace)
        self.db = db
        self.names = names or TableNames()
        self.writer = writer

    # -- lifecycle --

    async def acreate_schema(self) -> None:
        """Create the tables if they do not exist."""
        await aensure_schema(self.db, self.names)

    def create_schema(self) -> None:
        """Sync twin of :meth:`acreate_schema`."""
        run_sync(self.acreate_schema())

    async def aclose(self) -> None:
        """Nothing to release: the database's pools belong to its owner."""

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""

    async def __aenter__(self) -> PostgresRecordManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- time --

    async def aget_time(self) -> float:
        """The database server's time (seconds since the epoch)."""
        rows = await self.db.afetchall(f"SELECT {_NOW}")
        return float(rows[0][0])

    def get_time(self) -> float:
        """Sync twin of :meth:`aget_time`."""
        return run_sync(self.aget_time())

    # -- keys --

    async def aupdate(
        self,
        keys: Sequence[str],
        *,
        group_ids: Sequence[str | None] | None = None,
        time_at_least: float | None = None,
    ) -> None:
        """Upsert ``keys`` with their group ids, stamped with the server's time.

        Raises:
            ConfigurationError: ``group_ids`` does not match ``keys`` in length.
            ClockSkewError: The server's time is before ``time_at_least``.
        """
        groups = _groups(keys, group_ids)
        if time_at_least is not None:
            now = await self.aget_time()
            if now < time_at_least:
                raise ClockSkewError(
                    f"Time sync issue: {now} < {time_at_least}; pass a time from get_time()"
                )
        await self._awrite(self._upsert_keys(keys, groups))

    def update(
        self,
        keys: Sequence[str],
        *,
        group_ids: Sequence[str | None] | None = None,
        time_at_least: float | None = None,
    ) -> None:
        """Sync twin of :meth:`aupdate`."""
        run_sync(self.aupdate(keys, group_ids=group_ids, time_at_least=time_at_least))

    async def aexists(self, keys: Sequence[str]) -> list[bool]:
        """For each key, whether it is recorded in this namespace."""
        if not keys:
            return []
        rows = await self.db.afetchall(
            f"SELECT key FROM {self.names.keys} WHERE namespace = :ns AND key = ANY(:keys)",
            {"ns": self.namespace, "keys": list(keys)},
        )
        found = {row[0] for row in rows}
        return [key in found for key in keys]

    def exists(self, keys: Sequence[str]) -> list[bool]:
        """Sync twin of :meth:`aexists`."""
        return run_sync(self.aexists(keys))

    async def alist_keys(
        self,
        *,
        before: float | None = None,
        after: float | None = None,
        group_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """Keys updated strictly between ``after`` and ``before``, oldest first."""
        sql = f"SELECT key FROM {self.names.keys} WHERE namespace = :ns"
        params: dict[str, Any] = {"ns": self.namespace}
        if after:
            sql += " AND updated_at > :after"
            params["after"] = after
        if before:
            sql += " AND updated_at < :before"
            params["before"] = before
        if group_ids:
            sql += " AND group_id = ANY(:groups)"
            params["groups"] = list(group_ids)
        sql += ' ORDER BY updated_at, key COLLATE "C"'
        if limit:
            sql += " LIMIT :limit"
            params["limit"] = limit
        return [row[0] for row in await self.db.afetchall(sql, params)]

    def list_keys(
        self,
        *,
        before: float | None = None,
        after: float | None = None,
        group_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """Sync twin of :meth:`alist_keys`."""
        return run_sync(
            self.alist_keys(before=before, after=after, group_ids=group_ids, limit=limit)
        )

    async def adelete_keys(self, keys: Sequence[str]) -> None:
        """Delete ``keys`` from this namespace (unknown keys are ignored)."""
        await self._awrite(self._delete_keys(keys))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """Sync twin of :meth:`adelete_keys`."""
        run_sync(self.adelete_keys(keys))

    # -- files --

    async def aget_files(self) -> dict[str, FileRecord]:
        """Every file row of this namespace, by path."""
        rows = await self.db.afetchall(
            "SELECT path, size, mtime, content_hash, status, chunk_count, error, updated_at "
            f'FROM {self.names.files} WHERE namespace = :ns ORDER BY path COLLATE "C"',
            {"ns": self.namespace},
        )
        records = (
            FileRecord(
                path=p,
                size=int(s),
                mtime=float(m),
                content_hash=h,
                status=st,
                chunk_count=int(c),
                error=e,
                updated_at=float(u),
            )
            for p, s, m, h, st, c, e, u in rows
        )
        return {record.path: record for record in records}

    def get_files(self) -> dict[str, FileRecord]:
        """Sync twin of :meth:`aget_files`."""
        return run_sync(self.aget_files())

    async def aupsert_files(self, records: Sequence[FileRecord]) -> None:
        """Insert or replace file rows (``updated_at`` is set to now)."""
        await self._awrite(self._upsert_files(records))

    def upsert_files(self, records: Sequence[FileRecord]) -> None:
        """Sync twin of :meth:`aupsert_files`."""
        run_sync(self.aupsert_files(records))

    async def adelete_files(self, paths: Sequence[str]) -> None:
        """Delete the file rows of ``paths`` (their keys are left alone)."""
        statements: list[Statement] = []
        if paths:
            statements.append(
                (
                    f"DELETE FROM {self.names.files} WHERE namespace = :ns AND path = ANY(:p)",
                    {"ns": self.namespace, "p": list(paths)},
                )
            )
        await self._awrite(statements)

    def delete_files(self, paths: Sequence[str]) -> None:
        """Sync twin of :meth:`adelete_files`."""
        run_sync(self.adelete_files(paths))

    async def acommit_file_batch(
        self,
        *,
        files: Sequence[FileRecord],
        keys: Sequence[str],
        group_ids: Sequence[str | None],
        delete_keys: Sequence[str] = (),
    ) -> None:
        """Record a stored batch in ONE transaction (the writer's, when bound to one).

        ``delete_keys`` are removed first, then ``keys`` upserted with ``group_ids``, then
        the ``files`` rows upserted.

        Raises:
            ConfigurationError: ``group_ids`` does not match ``keys`` in length.
        """
        groups = _groups(keys, group_ids)
        statements = self._delete_keys(delete_keys) + self._upsert_keys(keys, groups)
        await self._awrite(statements + self._upsert_files(files))

    def commit_file_batch(
        self,
        *,
        files: Sequence[FileRecord],
        keys: Sequence[str],
        group_ids: Sequence[str | None],
        delete_keys: Sequence[str] = (),
    ) -> None:
        """Sync twin of :meth:`acommit_file_batch`."""
        run_sync(
            self.acommit_file_batch(
                files=files, keys=keys, group_ids=group_ids, delete_keys=delete_keys
            )
        )

    # -- statements (no I/O) and the one write path --

    def _delete_keys(self, keys: Sequence[str]) -> list[Statement]:
        if not keys:
            return []
        sql = f"DELETE FROM {self.names.keys} WHERE namespace = :ns AND key = ANY(:keys)"
        return [(sql, {"ns": self.namespace, "keys": list(keys)})]

    def _upsert_keys(self, keys: Sequence[str], groups: Sequence[str | None]) -> list[Statement]:
        if not keys:
            return []
        sql = (
            f"INSERT INTO {self.names.keys} (namespace, key, group_id, updated_at) "
            f"SELECT :ns, k, g, {_NOW} FROM unnest(CAST(:keys AS text[]), "
            "CAST(:groups AS text[])) AS t(k, g) "
            "ON CONFLICT (namespace, key) DO UPDATE SET group_id = EXCLUDED.group_id, "
            "updated_at = EXCLUDED.updated_at"
        )
        return [(sql, {"ns": self.namespace, "keys": list(keys), "groups": list(groups)})]

    def _upsert_files(self, files: Sequence[FileRecord]) -> list[Statement]:
        if not files:
            return []
        sql = (
            f"INSERT INTO {self.names.files} (namespace, path, size, mtime, content_hash, "
            "status, chunk_count, error, updated_at) VALUES (:ns, :path, :size, :mtime, "
            f":hash, :status, :count, :error, {_NOW}) ON CONFLICT (namespace, path) DO UPDATE "
            "SET size = EXCLUDED.size, mtime = EXCLUDED.mtime, "
            "content_hash = EXCLUDED.content_hash, status = EXCLUDED.status, "
            "chunk_count = EXCLUDED.chunk_count, error = EXCLUDED.error, "
            "updated_at = EXCLUDED.updated_at"
        )
        rows = [
            {
                "ns": self.namespace,
                "path": f.path,
                "size": f.size,
                "mtime": f.mtime,
                "hash": f.content_hash,
                "status": f.status,
                "count": f.chunk_count,
                "error": f.error,
            }
            for f in files
        ]
        return [(sql, rows)]

    async def _awrite(self, statements: list[Statement]) -> None:
        if not statements:
            return
        if self.writer is not None:
            await self.writer.acommit(statements)
            return
        async with self.db.transaction() as conn:
            await run_statements(conn, statements)


async def run_statements(conn: AsyncConnection, statements: Sequence[Statement]) -> None:
    """Execute ``statements`` in order on ``conn`` (inside its transaction)."""
    for sql, params in statements:
        await conn.execute(text(sql), params)
