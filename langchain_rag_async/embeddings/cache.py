"""A persistent embedding cache: an unchanged chunk is never embedded twice.

:class:`SQLiteEmbeddingCache` keeps vectors in SQLite keyed by ``(model id, content
hash)``, committed per batch so a crash loses at most the batch in flight.
:class:`CachedEmbeddings` wraps any LangChain ``Embeddings`` and sends only the misses to it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from langchain_core.embeddings import Embeddings

from langchain_rag_async._closing import Closing
from langchain_rag_async._introspect import accepted_keywords
from langchain_rag_async._sqlite import Row, SQLiteDatabase
from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingError,
    EmbeddingTimeoutError,
    RAGTimeoutError,
)
from langchain_rag_async.ids import content_hash
from langchain_rag_async.metrics import count_chunks
from langchain_rag_async.observability import get_logger, span

__all__ = ("CachedEmbeddings", "EmbeddingVectorCache", "SQLiteEmbeddingCache")

_log = get_logger(__name__)


# -- the cache ------------------------------------------------------------------------------

_CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding_cache (
    model_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, content_hash)
);
"""
_GET_SQL = (
    "SELECT content_hash, dimension, vector FROM embedding_cache "
    "WHERE model_id = ? AND content_hash IN (SELECT value FROM json_each(?))"
)
_PUT_SQL = (
    "INSERT INTO embedding_cache (model_id, content_hash, dimension, vector) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (model_id, content_hash) "
    "DO UPDATE SET dimension = excluded.dimension, vector = excluded.vector"
)
_COUNT_SQL = "SELECT COUNT(*) FROM embedding_cache WHERE model_id = ?"


def encode_vector(vector: Sequence[float]) -> bytes:
    """Return ``vector`` as float32 little-endian bytes.

    Raises:
        ConfigurationError: The vector is empty or not one-dimensional (also a ``ValueError``).
    """
    array = np.asarray(vector, dtype="<f4")
    if array.ndim != 1 or array.size == 0:
        raise ConfigurationError(
            f"an embedding must be a non-empty flat list; got shape {array.shape}"
        )
    return array.tobytes()


def decode_vector(dimension: int, blob: object) -> list[float] | None:
    """Return the vector stored in ``blob``, or ``None`` when it does not hold ``dimension``."""
    if not isinstance(blob, bytes) or dimension <= 0 or len(blob) != dimension * 4:
        return None
    return np.frombuffer(blob, dtype="<f4").astype(np.float64).tolist()  # type: ignore[no-any-return]


def _hashes_json(hashes: Sequence[str]) -> str:
    return json.dumps(list(hashes))


def _lookup_result(hashes: Sequence[str], rows: Sequence[Row]) -> list[list[float] | None]:
    found: dict[str, list[float]] = {}
    for digest, dimension, blob in rows:
        vector = decode_vector(int(dimension), blob)
        if vector is None:
            _log.warning("embedding_cache_corrupt_row", content_hash=digest, dimension=dimension)
        else:
            found[str(digest)] = vector
    return [found.get(h) for h in hashes]


def _put_rows(model_id: str, items: Sequence[tuple[str, Sequence[float]]]) -> list[Row]:
    rows: list[Row] = []
    for digest, vector in items:
        blob = encode_vector(vector)
        rows.append((model_id, digest, len(blob) // 4, blob))
    return rows


class SQLiteEmbeddingCache(Closing):
    """Vectors in SQLite keyed by ``(model id, sha256 of the text)``.

    Vectors are stored as float32 little-endian blobs with their dimension; a row whose
    blob does not match its dimension reads as a miss (and is overwritten on the next put).
    Each :meth:`aput_many` is one committed transaction. Closing is final, as for every
    SQLite file of the package (see :class:`~langchain_rag_async._sqlite.SQLiteDatabase`).
    """

    __slots__ = ("_db",)

    def __init__(self, db_path: str | Path) -> None:
        """Describe the cache; the file is opened (and created) on first use.

        Args:
            db_path: SQLite file, or ``":memory:"`` for a private in-memory cache.
        """
        self._db = SQLiteDatabase(
            db_path, schema=_CACHE_SCHEMA, synchronous="NORMAL", label="embedding cache"
        )

    @property
    def path(self) -> str:
        """The database path as given."""
        return self._db.path

    async def aget_many(self, model_id: str, hashes: Sequence[str]) -> list[list[float] | None]:
        """Return the cached vector of each hash, ``None`` for a miss, in input order."""
        if not hashes:
            return []
        rows = await self._db.afetchall(_GET_SQL, (model_id, _hashes_json(hashes)))
        return _lookup_result(hashes, rows)

    def get_many(self, model_id: str, hashes: Sequence[str]) -> list[list[float] | None]:
        """Sync twin of :meth:`aget_many`."""
        if not hashes:
            return []
        return _lookup_result(hashes, self._db.fetchall(_GET_SQL, (model_id, _hashes_json(hashes))))

    async def aput_many(self, model_id: str, items: Sequence[tuple[str, list[float]]]) -> None:
        """Store ``(content hash, vector)`` pairs in one transaction (replacing old rows)."""
        rows = _put_rows(model_id, items)
        if not rows:
            return
        async with self._db.atransaction(f"storing {len(rows)} vector(s)") as conn:
            await conn.executemany(_PUT_SQL, rows)

    def put_many(self, model_id: str, items: Sequence[tuple[str, list[float]]]) -> None:
        """Sync twin of :meth:`aput_many`."""
        rows = _put_rows(model_id, items)
        if not rows:
            return
        with self._db.transaction(f"storing {len(rows)} vector(s)") as conn:
            conn.executemany(_PUT_SQL, rows)

    async def acount(self, model_id: str) -> int:
        """Return how many vectors are cached for ``model_id``."""
        rows = await self._db.afetchall(_COUNT_SQL, (model_id,))
        return int(rows[0][0])

    def count(self, model_id: str) -> int:
        """Sync twin of :meth:`acount`."""
        return int(self._db.fetchall(_COUNT_SQL, (model_id,))[0][0])

    async def aclose(self) -> None:
        """Close the database connections for good (idempotent)."""
        await self._db.aclose()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        self._db.close()


class EmbeddingVectorCache(Protocol):
    """What :class:`CachedEmbeddings` needs of a cache: SQLite's, or PostgreSQL's.

    See :class:`~langchain_rag_async.postgres.cache.PostgresEmbeddingCache`.
    """

    async def aget_many(self, model_id: str, hashes: Sequence[str]) -> list[list[float] | None]:
        """The cached vector of each hash, ``None`` for a miss, in input order."""
        ...

    def get_many(self, model_id: str, hashes: Sequence[str]) -> list[list[float] | None]:
        """Sync twin of :meth:`aget_many`."""
        ...

    async def aput_many(self, model_id: str, items: Sequence[tuple[str, list[float]]]) -> None:
        """Store ``(content hash, vector)`` pairs in one transaction."""
        ...

    def put_many(self, model_id: str, items: Sequence[tuple[str, list[float]]]) -> None:
        """Sync twin of :meth:`aput_many`."""
        ...

    async def aclose(self) -> None:
        """Release the cache's connections."""
        ...

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        ...


# -- the Embeddings wrapper -----------------------------------------------------------------


def _unique_misses(hashes: Sequence[str], cached: Sequence[list[float] | None]) -> list[int]:
    """Return the index of the first occurrence of every hash without a cached vector."""
    seen: set[str] = set()
    misses: list[int] = []
    for i, (digest, vector) in enumerate(zip(hashes, cached, strict=True)):
        if vector is None and digest not in seen:
            seen.add(digest)
            misses.append(i)
    return misses


def _as_stored(vectors: Sequence[Sequence[float]], expected: int) -> list[list[float]]:
    """Round ``vectors`` to float32 (as the cache keeps them) after checking their count."""
    if len(vectors) != expected:
        raise EmbeddingError(
            f"the embedding model returned {len(vectors)} vectors for {expected} texts; "
            "check the model wrapper",
            failed_count=expected,
        )
    return [np.asarray(v, dtype="<f4").astype(np.float64).tolist() for v in vectors]


def _assemble(
    hashes: Sequence[str],
    cached: Sequence[list[float] | None],
    fresh: dict[str, list[float]],
    model_id: str,
) -> list[list[float]]:
    """Put cached and fresh vectors in input order; all must share one dimension."""
    result = [
        vector if vector is not None else fresh[h] for h, vector in zip(hashes, cached, strict=True)
    ]
    dimensions = {len(v) for v in result}
    if len(dimensions) > 1:
        raise EmbeddingError(
            f"vectors for model {model_id!r} have mixed dimensions {sorted(dimensions)}: the "
            "cache holds vectors of another model under this id. Delete the embedding cache "
            "file or give the model a distinct model_id"
        )
    return result


class CachedEmbeddings(Embeddings):
    """LangChain ``Embeddings`` that answers from a :class:`SQLiteEmbeddingCache` first.

    Document texts are looked up by sha256; only the misses (each distinct text once) go
    to the inner model, and their vectors are stored before returning. Vectors come back
    at float32 precision whether they were cached or fresh, so runs are reproducible.
    Queries are never cached.

    Attributes:
        inner: The wrapped model (e.g. a ``RateLimitedEmbeddings``).
        cache: Where vectors are kept.
        model_id: Identity of the inner model; part of every cache key.
        hits: Texts answered without the model (cached, or repeated within one call).
        misses: Texts sent to the inner model.
    """

    def __init__(self, inner: Embeddings, cache: EmbeddingVectorCache, *, model_id: str) -> None:
        """Wrap ``inner``.

        Args:
            inner: Any LangChain ``Embeddings``; ``sources=`` and ``timeout=`` are passed
                to its ``aembed_documents`` only when it declares them.
            cache: The vector cache.
            model_id: Identity of the model, e.g. ``"openai:text-embedding-3-small"``.

        Raises:
            ConfigurationError: ``model_id`` is empty.
        """
        if not model_id:
            raise ConfigurationError("CachedEmbeddings needs a non-empty model_id")
        self.inner = inner
        self.cache = cache
        self.model_id = model_id
        self.hits = 0
        self.misses = 0
        self._aembed: Callable[..., Awaitable[list[list[float]]]] = inner.aembed_documents
        self._accepts = accepted_keywords(
            inner.aembed_documents, ("sources", "timeout", "on_batch")
        )

    def reset_counters(self) -> None:
        """Set :attr:`hits` and :attr:`misses` back to zero."""
        self.hits = 0
        self.misses = 0

    async def aembed_documents(
        self,
        texts: list[str],
        *,
        sources: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - passed on to the inner model
    ) -> list[list[float]]:
        """Embed ``texts``, calling the inner model only for texts not cached yet.

        Args:
            texts: The texts to embed.
            sources: The ``source`` of each text (same length), for error reports.
            timeout: Seconds allowed for the inner model call.

        Returns:
            One vector per text, in input order.

        Raises:
            ConfigurationError: ``sources`` does not match ``texts`` in length (also a
                ``ValueError``).
            EmbeddingError: The inner model timed out or returned unusable vectors.
        """
        _check_sources(texts, sources)
        if not texts:
            return []
        hashes = [content_hash(t) for t in texts]
        with span("embed.cache", texts=len(texts), model=self.model_id) as current:
            cached = await self.cache.aget_many(self.model_id, hashes)
            misses = _unique_misses(hashes, cached)
            fresh: dict[str, list[float]] = {}
            if misses:
                miss_sources = [sources[i] for i in misses] if sources is not None else None
                miss_hashes = [hashes[i] for i in misses]
                kept: set[str] = set()

                async def keep(start: int, part: list[list[float]]) -> None:
                    # Each request's vectors are durable as they arrive, not after the call.
                    chunk = miss_hashes[start : start + len(part)]
                    items = list(zip(chunk, _as_stored(part, len(part)), strict=True))
                    await self.cache.aput_many(self.model_id, items)
                    kept.update(digest for digest, _ in items)

                raw = await self._aembed_inner(
                    [texts[i] for i in misses], miss_sources, timeout, keep
                )
                vectors = _as_stored(raw, len(misses))
                fresh = dict(zip(miss_hashes, vectors, strict=True))
                rest = [(h, v) for h, v in fresh.items() if h not in kept]
                if rest:  # an inner model without on_batch, or a write that failed
                    await self.cache.aput_many(self.model_id, rest)
            current.set_attribute("rag.cache_misses", len(misses))
        return self._finish(hashes, cached, fresh)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Sync twin of :meth:`aembed_documents`."""
        if not texts:
            return []
        hashes = [content_hash(t) for t in texts]
        cached = self.cache.get_many(self.model_id, hashes)
        misses = _unique_misses(hashes, cached)
        fresh: dict[str, list[float]] = {}
        if misses:
            raw = self.inner.embed_documents([texts[i] for i in misses])
            vectors = _as_stored(raw, len(misses))
            fresh = {hashes[i]: v for i, v in zip(misses, vectors, strict=True)}
            self.cache.put_many(self.model_id, list(fresh.items()))
        return self._finish(hashes, cached, fresh)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a query with the inner model (queries are not cached)."""
        return await self.inner.aembed_query(text)

    def embed_query(self, text: str) -> list[float]:
        """Sync twin of :meth:`aembed_query`."""
        return self.inner.embed_query(text)

    async def aclose(self) -> None:
        """Close the cache (the inner model is left to its owner)."""
        await self.cache.aclose()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        self.cache.close()

    def _finish(
        self,
        hashes: list[str],
        cached: list[list[float] | None],
        fresh: dict[str, list[float]],
    ) -> list[list[float]]:
        result = _assemble(hashes, cached, fresh, self.model_id)
        self.misses += len(fresh)
        self.hits += len(hashes) - len(fresh)
        count_chunks(embedded=len(fresh), cached=len(hashes) - len(fresh))
        return result

    async def _aembed_inner(
        self,
        texts: list[str],
        sources: list[str] | None,
        seconds: float | None,
        on_batch: Callable[[int, list[list[float]]], Awaitable[None]],
    ) -> list[list[float]]:
        kwargs: dict[str, Any] = {}
        if sources is not None and "sources" in self._accepts:
            kwargs["sources"] = sources
        if "on_batch" in self._accepts:
            kwargs["on_batch"] = on_batch
        if "timeout" in self._accepts:
            return await self._aembed(texts, timeout=seconds, **kwargs)
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await self._aembed(texts, **kwargs)
        except TimeoutError as exc:
            if not deadline.expired() or isinstance(exc, RAGTimeoutError):
                raise
            raise EmbeddingTimeoutError(
                f"embedding timed out after {seconds}s; raise the timeout or lower the batch size",
                timeout=seconds,
                failed_count=len(texts),
                sources=sorted(set(sources or ())),
            ) from exc


def _check_sources(texts: Sequence[str], sources: Sequence[str] | None) -> None:
    if sources is not None and len(sources) != len(texts):
        raise ConfigurationError(
            f"sources must give one source per text: got {len(sources)} for {len(texts)} texts"
        )
