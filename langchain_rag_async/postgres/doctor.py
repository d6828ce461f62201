"""``rag-async doctor --store-url postgresql://...``: check an index in PostgreSQL, repair it.

The twin of :mod:`langchain_rag_async.indexing.doctor` where its checks apply: the tables,
the embedding model's identity, the vector dimension (meta row against the column type),
the counts (chunk rows == keyword rows == record keys, and the same ids), the indexes
(HNSW, GIN, source: present and valid) and the run lock's holders. ``repair=True``
rebuilds missing or invalid indexes, drops chunk rows whose records are gone, drops
records whose chunks are gone (with their files' rows, so the next run reads those files
again) and ends the connection of a run-lock holder whose process is proven dead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from langchain_rag_async.errors import IndexLockedError, RAGError
from langchain_rag_async.indexing.doctor import DoctorReport, Finding
from langchain_rag_async.indexing.resources import RECORDS_NAMESPACE
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames, chunks_sql
from langchain_rag_async.postgres.lock import HOLDER_PREFIX, run_lock

__all__ = ("INDEX_KINDS", "adiagnose_postgres")

INDEX_KINDS = {"embedding_hnsw": "hnsw", "tsv_gin": "gin", "source": "btree"}
"""The chunk table's indexes (name suffix -> access method)."""
_REPAIR_LOCK_TIMEOUT = 10.0  # seconds to wait for an indexing run before repairing
_SAMPLE = 10  # ids named in a message


async def adiagnose_postgres(
    store_url: str,
    *,
    repair: bool = False,
    model_id: str | None = None,
    names: TableNames | None = None,
) -> DoctorReport:
    """Check the index in ``store_url``'s database; with ``repair``, fix what can be fixed.

    Args:
        store_url: ``postgresql://...``.
        repair: Rebuild missing or invalid indexes, drop chunk rows without records and
            records without chunks, end the connections of dead run-lock holders. Count
            repairs run under the run lock (an indexing run in progress is waited for).
        model_id: The configured embedding model (``provider:model``): a different one
            than the index's is an error (queries would embed with the wrong model).
        names: The index's tables (default prefix ``rag``).

    Returns:
        The findings; ``report.index_dir`` names the database (password hidden).
    """
    names = names or TableNames()
    db = PostgresDatabase(store_url)
    report = DoctorReport(index_dir=f"{db.where} ({names.prefix})")
    try:
        try:
            tables = await _tables(db, names)
        except RAGError as exc:
            report.add("error", "connection", str(exc))
            return report
        if names.chunks not in tables or names.meta not in tables:
            report.add(
                "error",
                "missing",
                f"no index here (table {names.chunks} or {names.meta} missing); build one with "
                "`rag-async index PATH --store-url URL`",
            )
            return report
        report.add("ok", "tables", f"{len(tables)} tables of the index found")
        meta = {
            str(k): str(v) for k, v in await db.afetchall(f"SELECT key, value FROM {names.meta}")
        }  # noqa: S608
        _check_model(meta, model_id, report)
        dimension = await _check_dimension(db, names, meta, report)
        await _check_indexes(db, names, dimension, report, repair=repair)
        await _check_locks(db, names, report, repair=repair)
        if names.keys in tables:
            await _check_counts(db, names, report, repair=repair)
        else:
            report.add("error", "counts", f"the record table {names.keys} is missing")
    finally:
        await db.aclose()
    return report


async def _tables(db: PostgresDatabase, names: TableNames) -> set[str]:
    wanted = [names.chunks, names.meta, names.keys, names.files, names.cache]
    rows = await db.afetchall(
        "SELECT t FROM unnest(CAST(:t AS text[])) AS t WHERE to_regclass(t) IS NOT NULL",
        {"t": wanted},
    )
    return {str(row[0]) for row in rows}


def _check_model(meta: dict[str, str], model_id: str | None, report: DoctorReport) -> None:
    stored = meta.get("embedding_model_id")
    if not stored:
        report.add("warning", "model", "the index names no embedding model (built by an old run)")
    elif model_id and stored != model_id:
        report.add(
            "error",
            "model",
            f"built with embedding model {stored}, but {model_id} is configured: queries "
            "would embed with the wrong model; configure that model, or re-index",
        )
    else:
        report.add("ok", "model", f"built with embedding model {stored}")


async def _check_dimension(
    db: PostgresDatabase, names: TableNames, meta: dict[str, str], report: DoctorReport
) -> int | None:
    rows = await db.afetchall(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(:t) "
        "AND attname = 'embedding' AND NOT attisdropped",
        {"t": names.chunks},
    )
    column = int(rows[0][0]) if rows and rows[0][0] and int(rows[0][0]) > 0 else None
    recorded = int(meta["dimension"]) if meta.get("dimension", "").isdigit() else None
    if column is None:
        report.add("error", "dimension", f"{names.chunks}.embedding is not a vector(n) column")
    elif recorded != column:
        report.add(
            "error",
            "dimension",
            f"the meta table says {recorded} dimensions, the column holds {column}: "
            "the index was altered by hand; re-index into a fresh table prefix",
        )
    else:
        report.add("ok", "dimension", f"{column}-dimensional vectors")
    return column


async def _check_indexes(
    db: PostgresDatabase,
    names: TableNames,
    dimension: int | None,
    report: DoctorReport,
    *,
    repair: bool,
) -> None:
    rows = await db.afetchall(
        "SELECT c.relname, am.amname, i.indisvalid FROM pg_index AS i "
        "JOIN pg_class AS c ON c.oid = i.indexrelid JOIN pg_am AS am ON am.oid = c.relam "
        "WHERE i.indrelid = to_regclass(:t)",
        {"t": names.chunks},
    )
    found = {str(name): (str(method), bool(valid)) for name, method, valid in rows}
    broken: list[str] = []
    for suffix, method in INDEX_KINDS.items():
        name = f"{names.chunks}_{suffix}"
        present = found.get(name)
        if present is None:
            broken.append(f"{name} ({method}) is missing")
        elif present != (method, True):
            broken.append(f"{name} is {'invalid' if present[0] == method else present[0]}")
    if not broken:
        report.add("ok", "indexes", "HNSW (cosine), GIN (tsvector) and source indexes are valid")
        return
    message = "; ".join(broken)
    if not repair or dimension is None:
        hint = "`rag-async doctor --repair` rebuilds them" if dimension else "re-index"
        report.add("error", "indexes", f"{message}: searches scan the whole table; {hint}")
        return
    async with db.transaction() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": names.lock_key("ddl")}
        )
        for suffix, method in INDEX_KINDS.items():
            name = f"{names.chunks}_{suffix}"
            if found.get(name, (method, True)) != (method, True):
                await conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
        for statement in chunks_sql(names, dimension)[2:]:  # the three CREATE INDEX
            await conn.execute(text(statement))
    report.findings.append(Finding("error", "indexes", f"{message}; rebuilt", repaired=True))


@dataclass(frozen=True, slots=True)
class _Holder:
    pid: int
    application: str
    client: str
    idle_seconds: float | None

    def process(self) -> tuple[str, int] | None:
        """``(host, pid)`` of the indexer, as it named its lock connection."""
        if not self.application.startswith(HOLDER_PREFIX):
            return None
        host, _, pid = self.application[len(HOLDER_PREFIX) :].rpartition(":")
        return (host, int(pid)) if pid.isdigit() else None

    def dead(self) -> bool:
        """Whether the holder is proven gone: a process of this host that no longer runs."""
        named = self.process()
        if named is None or named[0] != socket.gethostname():
            return False
        try:
            os.kill(named[1], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


async def _lock_holders(db: PostgresDatabase, names: TableNames) -> list[_Holder]:
    key = names.lock_key("run")
    rows = await db.afetchall(
        "SELECT l.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), "
        "extract(epoch from clock_timestamp() - a.state_change) "
        "FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo "
        "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database())",
        {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
    )
    return [
        _Holder(int(pid), str(app), str(client), None if idle is None else float(idle))
        for pid, app, client, idle in rows
    ]


async def _check_locks(
    db: PostgresDatabase, names: TableNames, report: DoctorReport, *, repair: bool
) -> None:
    holders = await _lock_holders(db, names)
    if not holders:
        report.add("ok", "locks", "the run lock is free")
        return
    for holder in holders:
        who = f"backend {holder.pid} ({holder.application or 'unnamed'}, from {holder.client})"
        if not holder.dead():
            report.add(
                "warning",
                "locks",
                f"the run lock is held by {who}: an indexing run in progress; wait for it "
                "before repairing (the server frees it when that connection ends)",
            )
            continue
        message = f"the run lock is held by {who}, whose process no longer runs on this host"
        if not repair:
            report.add(
                "error", "locks", f"{message}; `rag-async doctor --repair` ends that connection"
            )
            continue
        await db.afetchall("SELECT pg_terminate_backend(:p)", {"p": holder.pid})
        report.findings.append(
            Finding("error", "locks", f"{message}; its connection was ended", repaired=True)
        )


async def _check_counts(
    db: PostgresDatabase, names: TableNames, report: DoctorReport, *, repair: bool
) -> None:
    orphans, unbacked, totals = await _count(db, names)
    chunks, keyword, keys = totals
    if not orphans and not unbacked and chunks == keyword:
        report.add("ok", "counts", f"{chunks} vectors, keyword rows and record keys agree")
        return
    problems = []
    if keyword != chunks:
        problems.append(f"{chunks - keyword} chunk rows without a keyword vector")
    if orphans:
        problems.append(f"{len(orphans)} chunk rows without a record (e.g. {orphans[:_SAMPLE]})")
    if unbacked:
        problems.append(f"{len(unbacked)} record keys without a chunk (e.g. {unbacked[:_SAMPLE]})")
    message = f"{chunks} chunk rows, {keyword} keyword rows, {keys} record keys: " + "; ".join(
        problems
    )
    if not repair:
        report.add("error", "counts", f"{message}; `rag-async doctor --repair` drops them")
        return
    try:
        async with run_lock(db, names, timeout=_REPAIR_LOCK_TIMEOUT):
            orphans, unbacked, _totals = await _count(db, names)  # again, under the lock
            files = await _drop(db, names, orphans, unbacked)
    except IndexLockedError as exc:
        report.add("error", "counts", f"{message}; not repaired: {exc}")
        return
    fixed = (
        f"{message}; dropped {len(orphans)} chunk rows and {len(unbacked)} record keys "
        f"({files} file records: the next `rag-async index` run reads those files again)"
    )
    report.findings.append(Finding("error", "counts", fixed, repaired=True))


async def _count(
    db: PostgresDatabase, names: TableNames
) -> tuple[list[str], list[str], tuple[int, int, int]]:
    params: dict[str, Any] = {"ns": RECORDS_NAMESPACE}
    orphans = await db.afetchall(
        f"SELECT c.id FROM {names.chunks} AS c WHERE NOT EXISTS (SELECT 1 FROM {names.keys} "  # noqa: S608
        "AS k WHERE k.namespace = :ns AND k.key = c.id) ORDER BY c.id",
        params,
    )
    unbacked = await db.afetchall(
        f"SELECT k.key FROM {names.keys} AS k WHERE k.namespace = :ns AND NOT EXISTS "  # noqa: S608
        f"(SELECT 1 FROM {names.chunks} AS c WHERE c.id = k.key) ORDER BY k.key",
        params,
    )
    totals = await db.afetchall(
        f"SELECT (SELECT count(*) FROM {names.chunks}), "  # noqa: S608
        f"(SELECT count(*) FROM {names.chunks} WHERE content_tsv IS NOT NULL), "
        f"(SELECT count(*) FROM {names.keys} WHERE namespace = :ns)",
        params,
    )
    chunks, keyword, keys = (int(x) for x in totals[0])
    return [str(r[0]) for r in orphans], [str(r[0]) for r in unbacked], (chunks, keyword, keys)


async def _drop(
    db: PostgresDatabase, names: TableNames, orphans: list[str], unbacked: list[str]
) -> int:
    """Drop orphan chunks, and records without chunks with their files' rows (one transaction)."""
    async with db.transaction() as conn:
        if orphans:
            await conn.execute(
                text(f"DELETE FROM {names.chunks} WHERE id = ANY(:ids)"), {"ids": orphans}
            )
        files = 0
        if unbacked:
            params = {"ns": RECORDS_NAMESPACE, "keys": unbacked}
            result = await conn.execute(
                text(
                    f"DELETE FROM {names.files} WHERE namespace = :ns AND path IN "  # noqa: S608
                    f"(SELECT group_id FROM {names.keys} WHERE namespace = :ns "
                    "AND key = ANY(:keys) AND group_id IS NOT NULL)"
                ),
                params,
            )
            files = int(result.rowcount)
            await conn.execute(
                text(f"DELETE FROM {names.keys} WHERE namespace = :ns AND key = ANY(:keys)"),
                params,
            )
    return files
