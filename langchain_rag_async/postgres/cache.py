"""The embedding cache in PostgreSQL: vectors by ``(model id, content hash)``.

Same interface as :class:`~langchain_rag_async.embeddings.cache.SQLiteEmbeddingCache`
(float32 little-endian bytes, a row that does not match its dimension reads as a miss),
shared by every indexer of the index: a chunk one host embedded is never embedded again.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_rag_async.aio import run_sync
from langchain_rag_async.embeddings.cache import decode_vector, encode_vector
from langchain_rag_async.observability import get_logger
from langchain_rag_async.postgres._connect import PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames
from langchain_rag_async.postgres.schema import aensure_schema

__all__ = ("PostgresEmbeddingCache",)

_log = get_logger(__name__)


class PostgresEmbeddingCache:
    """Vectors in PostgreSQL keyed by ``(model id, sha256 of the text)``.

    Each :meth:`aput_many` is one committed transaction. The tables are created on first
    use.

    Args:
        db: The database.
        names: The index's table names.
    """

    __slots__ = ("_ready", "db", "names")

    def __init__(self, db: PostgresDatabase, names: TableNames | None = None) -> None:
        self.db = db
        self.names = names or TableNames()
        self._ready = False

    async def _ensure(self) -> None:
        if not self._ready:
            await aensure_schema(self.db, self.names)
            self._ready = True

    async def aget_many(self, model_id: str, hashes: Sequence[str]) -> list[list[float] | None]:
        """The cached vector of each hash, ``None`` for a miss, in input order."""
        if not hashes:
            return []
        await self._ensure()
        rows = await self.db.afetchall(
            f"SELECT content_hash, dimension, vector FROM {self.names.cache} "
            "WHERE model_id = :m AND content_hash = ANY(:h)",
            {"m": model_id, "h": list(hashes)},
        )
        found: dict[str, list[float]] = {}
        for digest, dimension, blob in rows:
            vector = decode_vector(int(dimension), bytes(blob))
            if vector is None:
                _log.warning("embedding_cache_corrupt_row", content_hash=digest)
            else:
                found[str(digest)] = vector
        return [found.get(h) for h in hashes]

    def get_many(self, model_id: str, hashes: Sequence[str]) -> list[list[float] | None]:
        """Sync twin of :meth:`aget_many`."""
        return run_sync(self.aget_many(model_id, hashes))

    async def aput_many(self, model_id: str, items: Sequence[tuple[str, list[float]]]) -> None:
        """Store ``(content hash, vector)`` pairs in one transaction (replacing old rows)."""
        rows = []
        for digest, vector in items:
            blob = encode_vector(vector)
            rows.append({"m": model_id, "h": digest, "d": len(blob) // 4, "v": blob})
        await self.aput_rows(rows)

    async def aput_rows(self, rows: Sequence[dict[str, object]]) -> None:
        """Store ready rows: ``{"m": model, "h": hash, "d": dimension, "v": float32 bytes}``."""
        if not rows:
            return
        await self._ensure()
        from sqlalchemy import text

        async with self.db.transaction() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO {self.names.cache} (model_id, content_hash, dimension, vector) "
                    "VALUES (:m, :h, :d, :v) ON CONFLICT (model_id, content_hash) "
                    "DO UPDATE SET dimension = EXCLUDED.dimension, vector = EXCLUDED.vector"
                ),
                list(rows),
            )

    def put_many(self, model_id: str, items: Sequence[tuple[str, list[float]]]) -> None:
        """Sync twin of :meth:`aput_many`."""
        run_sync(self.aput_many(model_id, items))

    async def acount(self, model_id: str) -> int:
        """How many vectors are cached for ``model_id``."""
        await self._ensure()
        rows = await self.db.afetchall(
            f"SELECT count(*) FROM {self.names.cache} WHERE model_id = :m", {"m": model_id}
        )
        return int(rows[0][0])

    def count(self, model_id: str) -> int:
        """Sync twin of :meth:`acount`."""
        return run_sync(self.acount(model_id))

    async def aclose(self) -> None:
        """Nothing to release: the database's pools belong to its owner."""

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
