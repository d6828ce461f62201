"""Create the tables of an index in PostgreSQL and read what its manifest would say.

DDL runs under a transaction-level advisory lock, so processes on many hosts that open
the same index at once create each table once. The ``*_index_meta`` table holds what the
directory's ``manifest.json`` holds: the embedding model's identity and the dimension.
"""

from __future__ import annotations

from sqlalchemy import text

from langchain_rag_async.errors import EmbeddingModelMismatchError, VectorStoreError
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames, chunks_sql, schema_sql

__all__ = ("IndexMeta", "aensure_chunks", "aensure_schema", "aread_meta", "acheck_model")

IndexMeta = dict[str, str]


async def aensure_schema(db: PostgresDatabase, names: TableNames) -> None:
    """Create the record, cache and meta tables if they do not exist."""
    async with db.transaction() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": names.lock_key("ddl")}
        )
        for statement in schema_sql(names):
            await conn.execute(text(statement))


async def aensure_chunks(db: PostgresDatabase, names: TableNames, dimension: int) -> None:
    """Create the chunk table for ``dimension``-long vectors, and record the dimension.

    Raises:
        VectorStoreError: The table exists with vectors of another dimension.
    """
    async with db.transaction() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": names.lock_key("ddl")}
        )
        for statement in schema_sql(names) + chunks_sql(names, dimension):
            await conn.execute(text(statement))
        row = (
            await conn.execute(
                text(f"SELECT value FROM {names.meta} WHERE key = 'dimension'")  # noqa: S608
            )
        ).first()
        if row is None:
            await conn.execute(
                text(f"INSERT INTO {names.meta} (key, value) VALUES ('dimension', :d)"),
                {"d": str(dimension)},
            )
        elif int(row[0]) != dimension:
            raise VectorStoreError(
                f"the index {names.chunks} in {db.where} holds {row[0]}-dimensional vectors, "
                f"not {dimension}: use the model that built it, or another table prefix"
            )


async def aread_meta(db: PostgresDatabase, names: TableNames) -> IndexMeta:
    """The index's meta rows (empty when no index was created there)."""
    rows = await db.afetchall("SELECT to_regclass(:t) IS NOT NULL", {"t": names.meta})
    if not rows or not rows[0][0]:
        return {}
    found = await db.afetchall(f"SELECT key, value FROM {names.meta}")  # noqa: S608
    return {str(key): str(value) for key, value in found}


async def acheck_model(
    db: PostgresDatabase, names: TableNames, model_id: str, *, record: bool = True
) -> IndexMeta:
    """Refuse another model's index; with ``record``, name ``model_id`` in a new one.

    Returns:
        The meta rows after the check.

    Raises:
        EmbeddingModelMismatchError: The index was built with another model.
    """
    if record:
        await aensure_schema(db, names)
        async with db.transaction() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO {names.meta} (key, value) VALUES ('embedding_model_id', :m) "
                    "ON CONFLICT (key) DO NOTHING"
                ),
                {"m": model_id},
            )
    meta = await aread_meta(db, names)
    stored = meta.get("embedding_model_id")
    if stored and stored != model_id:
        raise EmbeddingModelMismatchError(stored, model_id, where=f"{db.where} ({names.prefix})")
    return meta
