"""One PostgreSQL database: a connection pool per event loop (SQLAlchemy async over psycopg 3).

Every part of the Postgres backend (vector store, keyword search, records, embedding
cache, run lock) talks to the database through :class:`PostgresDatabase`, so one URL and
one set of pool settings serve them all. Pools are loop-bound (psycopg's async
connections belong to the loop that opened them): one per loop through
:class:`~langchain_rag_async.aio.LoopBound`, so the sync twins (run on the package's sync
bridge) and async callers each get their own, as the SQLite layer does.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from langchain_rag_async.aio import LoopBound
from langchain_rag_async.config import PoolSettings, check_store_url
from langchain_rag_async.errors import VectorStoreError

__all__ = ("PoolSettings", "PostgresDatabase", "redact_url", "sqlalchemy_url")


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` as SQLAlchemy's psycopg 3 URL.

    Raises:
        ConfigurationError: Not a PostgreSQL URL.
    """
    check_store_url(url)
    _scheme, _, rest = url.partition("://")
    return "postgresql+psycopg://" + rest


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresDatabase:
    """A PostgreSQL database with pgvector, shared by every Postgres component.

    Args:
        url: ``postgresql://user:password@host:port/dbname`` (``?host=/socket/dir`` works).
        pool: Pool settings per event loop.
    """

    __slots__ = ("_engines", "_lock", "pool", "url")

    def __init__(self, url: str, *, pool: PoolSettings | None = None) -> None:
        self.url = url
        self.pool = pool or PoolSettings()
        self._engines: LoopBound[AsyncEngine] = LoopBound(self._new_engine)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresDatabase({redact_url(self.url)!r})"

    @property
    def where(self) -> str:
        """The database, password hidden (for messages)."""
        return redact_url(self.url)

    def _new_engine(self) -> AsyncEngine:
        settings = self.pool
        return create_async_engine(
            sqlalchemy_url(self.url),
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle,
            pool_pre_ping=True,
        )

    def engine(self) -> AsyncEngine:
        """The running loop's SQLAlchemy engine (its pool), created on first use."""
        with self._lock:
            return self._engines.get()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection; what it did is rolled back unless committed.

        Raises:
            VectorStoreError: The database cannot be reached.
        """
        with self.connection_errors():
            connection = await self.engine().connect()
        try:
            yield connection
        finally:
            await connection.close()

    @contextmanager
    def connection_errors(self) -> Iterator[None]:
        """Turn a busy pool or an unreachable server into a :class:`VectorStoreError`.

        Also wraps calls into ``langchain_postgres``, which checks connections out itself.
        """
        try:
            yield
        except PoolTimeoutError as exc:
            raise VectorStoreError(
                f"no free connection to {self.where} within {self.pool.pool_timeout:g} s: all "
                f"{self.pool.pool_size + self.pool.max_overflow} of this process's are busy. "
                "Raise RAG_STORE_POOL_SIZE / RAG_STORE_POOL_MAX_OVERFLOW (within the server's "
                "max_connections) or RAG_STORE_POOL_TIMEOUT"
            ) from exc
        except (OperationalError, InterfaceError) as exc:
            raise VectorStoreError(
                f"cannot connect to PostgreSQL at {self.where}: {_reason(exc)}. Check that "
                "the server runs and the URL (RAG_STORE_URL / --store-url) is right"
            ) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in one transaction: committed at the end, rolled back on error."""
        async with self.connect() as connection:
            async with connection.begin():
                yield connection

    async def afetchall(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Rows of one read statement."""
        async with self.connect() as connection:
            result = await connection.execute(text(sql), params or {})
            return list(result.fetchall())

    async def aclose(self) -> None:
        """Close this loop's pool; drop those of loops already closed (idempotent)."""
        with self._lock:
            current = self._engines.peek()
            pairs = self._engines.pop_all()
        for _loop, engine in pairs:
            if engine is current:
                await engine.dispose()
            else:  # another loop's pool: its connections can only be dropped here
                await engine.dispose(close=False)


def _reason(exc: DBAPIError | InterfaceError) -> str:
    return str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc) else repr(exc)
