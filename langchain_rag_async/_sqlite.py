"""Shared SQLite connection handling for the record manager and the embedding cache.

:class:`SQLiteDatabase` keeps one aiosqlite connection per event loop plus a sync
sqlite3 twin, serialises writes and turns SQLite errors into the package's error tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from langchain_rag_async.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexLockedError,
    RAGError,
    VectorStoreError,
)
from langchain_rag_async.observability import get_logger

__all__ = [
    "Row",
    "SQLiteDatabase",
    "aopen",
    "close_from_sync",
    "daemonize",
    "drain_on_cancel",
    "settle",
    "translate_sqlite_error",
]

_log = get_logger(__name__)

Row = tuple[Any, ...]

_STALE_CLOSE_TIMEOUT = 5.0


# ----------------------------------------------------


@dataclass(slots=True)
class _LoopState:
    """The aiosqlite connection and lock that belong to one event loop."""

    loop: weakref.ref[asyncio.AbstractEventLoop]
    lock: asyncio.Lock
    conn: aiosqlite.Connection | None = None


class SQLiteDatabase:
    """One SQLite database used from async code (aiosqlite) and from sync code (sqlite3).

    Async callers share one aiosqlite connection per event loop (a new loop, e.g. a second
    ``asyncio.run``, gets a new connection and the old one is closed; use one loop at a
    time); all its operations are serialised by an ``asyncio.Lock`` so transactions never
    interleave. Sync callers
    share one sqlite3 connection behind a ``threading.Lock``. File databases use WAL and a
    busy timeout, so both sides (and other processes) can use the file at once.

    ``":memory:"`` becomes a private shared-cache in-memory database: the sync connection
    is kept open as its anchor, so the data lives until :meth:`close` / :meth:`aclose`.
    Do not run sync and async writes on one in-memory database at the same moment
    (shared-cache table locks are not covered by the busy timeout).

    Connections open lazily and reopen after a close. Every ``sqlite3.Error`` surfaces as
    a :class:`~langchain_rag_async.errors.RAGError` that names the file.
    """

    __slots__ = (
        "_astate",
        "_busy_timeout",
        "_database",
        "_init_script",
        "_is_memory",
        "_stale",
        "_sync_conn",
        "_sync_lock",
        "_uri",
        "path",
    )

    def __init__(
        self,
        db_path: str | Path,
        *,
        schema: str,
        synchronous: str = "FULL",
        busy_timeout: float = 30.0,
    ) -> None:
        """Describe the database; nothing is opened yet.

        Args:
            db_path: A file path, ``":memory:"`` or a ``file:`` URI.
            schema: SQL script creating the tables (``IF NOT EXISTS``), run on every open.
            synchronous: SQLite ``synchronous`` pragma (``FULL`` or ``NORMAL``).
            busy_timeout: Seconds to wait for another writer before failing.

        Raises:
            ConfigurationError: ``synchronous`` is not a SQLite level.
        """
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError(f"unknown SQLite synchronous level {synchronous!r}")
        self.path = os.fspath(db_path)
        self._is_memory = self.path == ":memory:"
        self._uri = self._is_memory or self.path.startswith("file:")
        if self._is_memory:
            self._database = f"file:rag-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            self._database = self.path
        journal = "" if self._is_memory else "PRAGMA journal_mode=WAL;\n"
        self._init_script = (
            f"{journal}PRAGMA synchronous={synchronous};\nBEGIN IMMEDIATE;\n{schema}\nCOMMIT;\n"
        )
        self._busy_timeout = busy_timeout
        self._astate: _LoopState | None = None
        self._stale: list[aiosqlite.Connection] = []
        self._sync_conn: sqlite3.Connection | None = None
        self._sync_lock = threading.Lock()

    # -- async side --

    @asynccontextmanager
    async def alocked(self) -> AsyncIterator[aiosqlite.Connection]:
        """Hold this loop's connection exclusively; sqlite3 errors become RAG errors."""
        state = self._state_for_running_loop()
        async with state.lock:
            try:
                if state.conn is None:
                    await self._aclose_stale()
                    state.conn = await self._aopen()
                yield state.conn
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    @asynccontextmanager
    async def atransaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction: all of it or nothing."""
        async with self.alocked() as conn:
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
            except BaseException:  # also a cancellation: never leave a transaction open
                await self._arollback(conn)
                raise

    async def afetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one query and return all its rows."""
        async with self.alocked() as conn:
            rows = await drain_on_cancel(conn, conn.execute_fetchall(sql, params))
        return [tuple(row) for row in rows]

    async def aclose(self) -> None:
        """Close every connection (async and sync); the database reopens on next use."""
        state = self._astate
        if state is not None and state.conn is not None:
            if state.loop() is asyncio.get_running_loop():
                async with state.lock:
                    if state.conn is not None:
                        conn, state.conn = state.conn, None
                        await conn.close()
            else:
                self._stale.append(state.conn)
                state.conn = None
        await self._aclose_stale()
        if self._sync_conn is not None:
            await asyncio.to_thread(self._close_sync)

    def _state_for_running_loop(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._astate
        if state is not None and state.loop() is loop:
            return state
        if state is not None and state.conn is not None:
            self._stale.append(state.conn)  # its loop is gone or elsewhere: close it later
        state = _LoopState(loop=weakref.ref(loop), lock=asyncio.Lock())
        self._astate = state
        return state

    async def _aopen(self) -> aiosqlite.Connection:
        if self._is_memory:
            await asyncio.to_thread(self._ensure_sync)  # the anchor keeps the data alive
        elif not self._uri:
            await asyncio.to_thread(_make_parent_dir, self.path)
        conn = await aopen(
            aiosqlite.connect(
                self._database, uri=self._uri, timeout=self._busy_timeout, isolation_level=None
            )
        )
        try:
            await settle(conn.executescript(self._init_script))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _aclose_stale(self) -> None:
        stale, self._stale = self._stale, []
        for conn in stale:
            try:
                async with asyncio.timeout(_STALE_CLOSE_TIMEOUT):
                    await conn.close()
            except (TimeoutError, sqlite3.Error, ValueError) as exc:
                _log.warning("sqlite_stale_close_failed", path=self.path, error=repr(exc))

    async def _arollback(self, conn: aiosqlite.Connection) -> None:
        try:
            await conn.rollback()
        except sqlite3.Error as exc:  # keep the original error
            _log.warning("sqlite_rollback_failed", path=self.path, error=repr(exc))

    # -- sync side --

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """Hold the sync connection exclusively; sqlite3 errors become RAG errors."""
        with self._sync_lock:
            try:
                yield self._sync_connection()
            except sqlite3.Error as exc:
                raise self._translate(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Sync twin of :meth:`atransaction`."""
        with self.locked() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                self._rollback(conn)
                raise

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Sync twin of :meth:`afetchall`."""
        with self.locked() as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        """Sync twin of :meth:`aclose`; also stops connections opened by async callers."""
        state = self._astate
        if state is not None and state.conn is not None:
            self._stale.append(state.conn)
            state.conn = None
        stale, self._stale = self._stale, []
        close_from_sync(*stale)
        self._close_sync()

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.rollback()
        except sqlite3.Error as exc:  # keep the original error
            _log.warning("sqlite_rollback_failed", path=self.path, error=repr(exc))

    def _ensure_sync(self) -> None:
        with self._sync_lock:
            self._sync_connection()

    def _sync_connection(self) -> sqlite3.Connection:
        if self._sync_conn is None:
            if not self._uri:
                _make_parent_dir(self.path)
            conn = sqlite3.connect(
                self._database,
                uri=self._uri,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.executescript(self._init_script)
            except BaseException:
                conn.close()
                raise
            self._sync_conn = conn
        return self._sync_conn

    def _close_sync(self) -> None:
        with self._sync_lock:
            conn, self._sync_conn = self._sync_conn, None
            if conn is not None:
                conn.close()

    def _translate(self, exc: sqlite3.Error) -> RAGError:
        return translate_sqlite_error(exc, self.path, self._busy_timeout)


def translate_sqlite_error(exc: sqlite3.Error, path: str, busy_timeout: float) -> RAGError:
    """Map a ``sqlite3`` error to the library's error tree, with what to do next.

    Args:
        exc: The error raised by sqlite3 or aiosqlite.
        path: The database file, for the message.
        busy_timeout: The busy timeout in seconds, for the message.

    Returns:
        The error to raise (chain it with ``from exc``).
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return IndexCorruptedError(path, f"SQLite reports {name}: {exc}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return IndexLockedError(
            f"SQLite database {path} stayed locked for more than {busy_timeout:g}s ({exc}). "
            "Another process is writing to it: wait for it to finish, then retry."
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return VectorStoreError(
            f"cannot open SQLite database {path} ({exc}). "
            "Check that its directory exists and is writable."
        )
    if "no such table" in str(exc) or "no such column" in str(exc):
        hint = "The file was written by another version: rebuild into a new directory."
    elif name.startswith("SQLITE_CONSTRAINT"):
        hint = "A record breaks the table's constraints: check the values passed in."
    elif name.startswith("SQLITE_FULL"):
        hint = "Free some disk space, then retry."
    else:
        hint = "Retry; if it persists, report it with this message."
    return VectorStoreError(f"SQLite database {path} failed: {exc} ({name or 'no code'}). {hint}")


def _make_parent_dir(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)


_T = TypeVar("_T")


async def settle(awaitable: Awaitable[_T]) -> _T:
    """Await an aiosqlite call to its end, even when the caller is cancelled meanwhile.

    aiosqlite runs each call on the connection's worker thread, which answers on the event
    loop when the call ends. A call abandoned by a cancelled caller still answers later, and
    the worker thread dies with "Event loop is closed" if the loop closed in between (a
    Ctrl-C under ``asyncio.run``, a test's loop); a connection abandoned while opening is
    also never closed. The calls are short (at most the busy timeout), so a cancellation,
    even repeated, waits for the answer and is then re-raised.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_consume_outcome)  # its error, if any, is nobody's now
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                continue  # cancelled again (asyncio.run's shutdown does): still wait
        raise


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def drain_on_cancel(conn: aiosqlite.Connection, call: Awaitable[_T]) -> _T:
    """Await one call on ``conn``; if cancelled, first let its worker thread finish it.

    The same protection as :func:`settle` without its cost on the normal path (no extra
    task): on cancellation a trivial query is queued behind the abandoned call on the
    connection's worker thread, which runs calls in order, and awaited (shielded) before
    the cancellation is re-raised.
    """
    try:
        return await call
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await settle(conn.execute_fetchall("SELECT 1"))
        raise


async def aopen(conn: aiosqlite.Connection) -> aiosqlite.Connection:
    """Open ``conn`` (its worker thread a daemon); cancelled meanwhile, close it, then raise."""
    opening: asyncio.Future[aiosqlite.Connection] = asyncio.ensure_future(daemonize(conn))
    try:
        return await settle(opening)
    except asyncio.CancelledError:  # settle waited until the open ended
        if not opening.cancelled() and opening.exception() is None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await settle(opening.result().close())
        raise


def daemonize(conn: aiosqlite.Connection) -> aiosqlite.Connection:
    """Make a not yet started connection's worker thread a daemon.

    aiosqlite's worker threads are not daemons, so one connection left open (a module-level
    engine, a deployment's cached index) would keep the interpreter from exiting.
    """
    thread = getattr(conn, "_thread", None)
    if thread is not None and not thread.is_alive():
        thread.daemon = True
    return conn


def close_from_sync(*conns: aiosqlite.Connection | None) -> None:
    """Close aiosqlite connections from sync code.

    Closing needs an event loop. With none running in this thread, a private one is used
    and the connections are closed on return. Inside a running loop (a sync ``close()``
    called from async code) a helper thread closes them on its own loop, without blocking
    the caller's loop and without leaving a future on it (aiosqlite's ``stop()`` would, and
    its worker thread then fails with "Event loop is closed" if that loop closes first).
    """
    live = [conn for conn in conns if conn is not None]
    if not live:
        return

    async def close_all() -> None:
        for conn in live:
            try:
                await conn.close()
            except Exception as exc:  # closing is best effort
                _log.warning("sqlite_close_failed", error=repr(exc))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(close_all())
        return
    thread = threading.Thread(target=asyncio.run, args=(close_all(),), name="rag-sqlite-close")
    thread.start()
