"""The one SQLite layer: every SQLite file of the package opens, fails and closes through it.

:class:`SQLiteDatabase` serves the record manager, the embedding cache and the sparse
index: one aiosqlite connection per event loop plus a sync sqlite3 twin, serialised
writes, a schema version, and SQLite errors turned into the package's error tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from langchain_rag_async.aio import LoopBound, default_portal, run_sync
from langchain_rag_async.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexLockedError,
    RAGError,
    VectorStoreError,
)
from langchain_rag_async.observability import get_logger

__all__ = (
    "DEFAULT_BUSY_TIMEOUT",
    "WORKER_THREAD_PREFIX",
    "Row",
    "SQLiteDatabase",
    "aopen",
    "daemonize",
    "drain_on_cancel",
    "settle",
    "translate_sqlite_error",
)

_log = get_logger(__name__)

Row = tuple[Any, ...]

DEFAULT_BUSY_TIMEOUT = 30.0
"""Seconds a connection waits for another writer, for every SQLite file of the package."""
WORKER_THREAD_PREFIX = "rag-sqlite:"
"""aiosqlite worker threads are named ``rag-sqlite:<file name>`` (``rag-sqlite::memory:``)."""
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

_CLOSE_TIMEOUT = 5.0  # seconds to close one aiosqlite connection and join its worker thread
_ITER_CHUNK_SIZE = 64  # aiosqlite's default


@dataclass(slots=True)
class _LoopState:
    """The aiosqlite connection of one event loop, the lock serialising it, its worker."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: aiosqlite.Connection | None = None
    worker: threading.Thread | None = None


class SQLiteDatabase:
    """One SQLite database used from async code (aiosqlite) and from sync code (sqlite3).

    The same rules hold for every SQLite user of the package (record manager, embedding
    cache, sparse index):

    - **Connections.** Async callers share one aiosqlite connection per event loop (kept
      in an :class:`~langchain_rag_async.aio.LoopBound`; the connection of a loop that has
      closed is closed when the database is next used). All its operations are serialised
      by an ``asyncio.Lock``, so transactions never interleave. Sync callers share one
      sqlite3 connection behind a ``threading.Lock``. Both open lazily, with one opener
      (:meth:`_connect`): WAL journal for files, the ``synchronous`` level, the schema.
    - **Busy timeout.** :data:`DEFAULT_BUSY_TIMEOUT` (30 s) unless given: a writer waits
      that long for another one (another process, or the other twin) before failing
      with :class:`~langchain_rag_async.errors.IndexLockedError`.
    - **Close.** :meth:`close` / :meth:`aclose` close every connection, wait for the
      aiosqlite worker threads (named :data:`WORKER_THREAD_PREFIX` + file name) to end, and
      are final: any later use raises :class:`~langchain_rag_async.errors.VectorStoreError`
      ("... is closed"). Closing twice is a no-op. A sync ``close()`` called inside a
      running event loop hands the aiosqlite connections to the sync bridge's loop and
      returns without waiting for them (``await aclose()`` there instead).
    - **Schema.** ``schema`` runs in one transaction on every open when
      ``schema_version`` is 0 (``CREATE ... IF NOT EXISTS``), or only while the file's
      ``PRAGMA user_version`` is below ``schema_version``, which it then records. A file of
      a newer version is refused with a clear error.
    - **Errors.** Every ``sqlite3.Error`` surfaces as a
      :class:`~langchain_rag_async.errors.RAGError` naming the file and, when given, the
      action (:func:`translate_sqlite_error`); a corrupt file is an
      :class:`~langchain_rag_async.errors.IndexCorruptedError`.
    - **In memory.** ``":memory:"`` (or ``None``) is a private in-memory database shared
      by both twins (SQLite's ``memdb`` VFS, with real locking); the sync connection is
      kept open as its anchor, so the data lives until :meth:`close` / :meth:`aclose`.

    Args:
        db_path: A file path, ``":memory:"``/``None``, or a ``file:`` URI.
        schema: SQL statements creating the tables (without ``BEGIN``/``COMMIT``).
        schema_version: The version ``schema`` creates (0: unversioned, run every time;
            ``None``: another owner's file, inspected as it is: no version set or checked).
        synchronous: SQLite ``synchronous`` pragma (``FULL`` or ``NORMAL``).
        busy_timeout: Seconds to wait for another writer before failing.
        label: What the database is, for messages (``"sparse index"``).
        read_only: Open the file for reading only (``mode=ro``; ``immutable=1`` when even
            the WAL's shared-memory file cannot be created, as in a read-only directory):
            no journal change, no schema script, and every write fails.
        on_connect: Called with every new ``sqlite3`` connection, on the thread that uses
            it, before any statement of the caller (e.g. to register SQL functions).

    Raises:
        ConfigurationError: ``synchronous`` is not a SQLite level, or a number is negative.
    """

    __slots__ = (
        "_busy_timeout",
        "_closed",
        "_database",
        "_file",
        "_init_script",
        "_label",
        "_read_only",
        "_loops",
        "_on_connect",
        "_schema_version",
        "_sync_conn",
        "_sync_lock",
        "_synchronous",
        "_thread_name",
        "_uri",
        "path",
    )

    def __init__(
        self,
        db_path: str | Path | None,
        *,
        schema: str,
        schema_version: int | None = 0,
        synchronous: str = "FULL",
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        label: str = "SQLite database",
        read_only: bool = False,
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ConfigurationError(
                f"unknown SQLite synchronous level {synchronous!r}; use one of {SYNCHRONOUS_LEVELS}"
            )
        if busy_timeout < 0 or (schema_version is not None and schema_version < 0):
            raise ConfigurationError(
                f"busy_timeout ({busy_timeout}) and schema_version ({schema_version}) "
                "must not be negative"
            )
        self.path = ":memory:" if db_path is None else os.fspath(db_path)
        memory = self.path == ":memory:"
        self._uri = memory or self.path.startswith("file:")
        self._file = None if self._uri else Path(self.path)
        self._database = f"file:/rag-{uuid.uuid4().hex}?vfs=memdb" if memory else self.path
        version = f"PRAGMA user_version = {schema_version};\n" if schema_version else ""
        self._init_script = f"BEGIN IMMEDIATE;\n{schema}\n{version}COMMIT;\n"
        self._schema_version = schema_version
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._label = label
        self._read_only = read_only and self._file is not None
        self._on_connect = on_connect
        self._thread_name = WORKER_THREAD_PREFIX + (
            self._file.name if self._file is not None else self.path
        )
        self._loops: LoopBound[_LoopState] = LoopBound(_LoopState)
        self._sync_conn: sqlite3.Connection | None = None
        self._sync_lock = threading.Lock()
        self._closed = False

    @property
    def file(self) -> Path | None:
        """The database file, or ``None`` for an in-memory database or a URI."""
        return self._file

    @property
    def busy_timeout(self) -> float:
        """Seconds a connection waits for another writer."""
        return self._busy_timeout

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` / :meth:`aclose` was called."""
        return self._closed

    def __str__(self) -> str:
        if self._file is None and self.path == ":memory:":
            return f"the in-memory {self._label}"
        return f"the {self._label} at {self.path}"

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self.path!r}, label={self._label!r})"

    # -- async side --

    @asynccontextmanager
    async def alocked(self, action: str = "") -> AsyncIterator[aiosqlite.Connection]:
        """Hold this loop's connection exclusively; sqlite3 errors become RAG errors.

        Args:
            action: What the block does, for error messages (``"reading 3 ids"``).
        """
        self._check_open()
        state = self._loops.get()
        async with state.lock:
            self._check_open()
            if state.conn is None:
                state.conn = await self._aopen(state)
                await self._aclose_stale()  # after the open: an in-memory db stays alive
            try:
                yield state.conn
            except sqlite3.Error as exc:
                raise self.translate(exc, action) from exc

    @asynccontextmanager
    async def atransaction(self, action: str = "") -> AsyncIterator[aiosqlite.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction: all of it or nothing.

        A cancellation rolls back too. A failure is raised with ``action`` and the note
        that the whole transaction was rolled back.
        """
        async with self.alocked(action) as conn:
            if conn.in_transaction:  # left open by a rollback that could not finish
                await self._arollback(conn)
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
            except BaseException as exc:
                await self._arollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise self.translate(exc, action, rolled_back=True) from exc
                raise

    async def afetchall(
        self, sql: str, params: Sequence[Any] = (), *, action: str = ""
    ) -> list[Row]:
        """Run one query and return all its rows."""
        async with self.alocked(action) as conn:
            rows = await drain_on_cancel(conn, conn.execute_fetchall(sql, params))
        return [tuple(row) for row in rows]

    async def aclose(self) -> None:
        """Close every connection (async and sync) and end the worker threads, for good."""
        self._closed = True
        current = asyncio.get_running_loop()
        for loop, state in self._loops.pop_all():
            if loop is current:
                async with state.lock:  # let this loop's running operation finish
                    await _aclose_state(state)
            else:
                await _aclose_state(state)
        if self._sync_conn is not None:
            await asyncio.to_thread(self._close_sync)

    async def _aopen(self, state: _LoopState) -> aiosqlite.Connection:
        if self._file is None and self.path == ":memory:":
            await asyncio.to_thread(self._ensure_sync)  # the anchor keeps the data alive

        def connect() -> sqlite3.Connection:  # runs on the connection's worker thread
            worker = threading.current_thread()
            worker.name = self._thread_name
            state.worker = worker
            return self._connect()

        return await aopen(aiosqlite.Connection(connect, _ITER_CHUNK_SIZE))

    async def _aclose_stale(self) -> None:
        for state in self._loops.pop_stale():
            await _aclose_state(state)

    async def _arollback(self, conn: aiosqlite.Connection) -> None:
        try:
            await settle(conn.rollback())
        except (sqlite3.Error, ValueError) as exc:  # keep the original error
            _log.warning("sqlite_rollback_failed", path=self.path, error=repr(exc))

    # -- sync side --

    @contextmanager
    def locked(self, action: str = "") -> Iterator[sqlite3.Connection]:
        """Sync twin of :meth:`alocked`."""
        with self._sync_lock:
            self._check_open()
            conn = self._sync_connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise self.translate(exc, action) from exc

    @contextmanager
    def transaction(self, action: str = "") -> Iterator[sqlite3.Connection]:
        """Sync twin of :meth:`atransaction`."""
        with self.locked(action) as conn:
            if conn.in_transaction:
                self._rollback(conn)
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise self.translate(exc, action, rolled_back=True) from exc
                raise

    def fetchall(self, sql: str, params: Sequence[Any] = (), *, action: str = "") -> list[Row]:
        """Sync twin of :meth:`afetchall`."""
        with self.locked(action) as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        """Sync twin of :meth:`aclose`; also ends the connections opened by async callers."""
        self._closed = True
        _close_states_from_sync([state for _, state in self._loops.pop_all()])
        self._close_sync()

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.rollback()
        except sqlite3.Error as exc:  # keep the original error
            _log.warning("sqlite_rollback_failed", path=self.path, error=repr(exc))

    def _ensure_sync(self) -> None:
        with self._sync_lock:
            self._check_open()
            self._sync_connection()

    def _sync_connection(self) -> sqlite3.Connection:
        if self._sync_conn is None:
            self._sync_conn = self._connect()
        return self._sync_conn

    def _close_sync(self) -> None:
        with self._sync_lock:
            conn, self._sync_conn = self._sync_conn, None
        if conn is not None:
            conn.close()

    # -- shared --

    def _connect(self) -> sqlite3.Connection:
        """Open and prepare one connection (blocking: async callers run it on the worker).

        Raises:
            IndexCorruptedError: The file is not a usable SQLite database.
            VectorStoreError: It cannot be opened, or was written by a newer version.
        """
        if self._read_only:
            return self._connect_read_only()
        try:
            if self._file is not None:
                self._file.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._database,
                uri=self._uri,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise VectorStoreError(
                f"cannot open {self} ({exc}). Check that its directory exists and is "
                "writable, or choose another --index-dir."
            ) from exc
        try:
            self._prepare(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self.translate(exc, "opening") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """Open the file read-only: ``mode=ro``, else ``immutable=1`` (read-only directory).

        A WAL database opened with ``mode=ro`` still needs its ``-shm`` file; where that
        cannot be created (a read-only directory or file system), nobody can be writing
        the file either, so it is opened as immutable.
        """
        base = "file:" + urllib.parse.quote(str(self._file))
        error: sqlite3.Error | None = None
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(
                    f"{base}?{flags}",
                    uri=True,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                self._check_version(int(conn.execute("PRAGMA user_version").fetchone()[0]))
                if self._on_connect is not None:
                    self._on_connect(conn)
                return conn
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                error = exc
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
        raise VectorStoreError(
            f"cannot open {self} read-only ({error}). Check that it exists and is readable."
        ) from error

    def _check_version(self, version: int) -> None:
        if self._schema_version is not None and version > self._schema_version:
            raise VectorStoreError(
                f"{self} has schema version {version}, newer than this version of "
                f"langchain-rag-async understands ({self._schema_version}); upgrade the "
                "package or rebuild the index into a new --index-dir."
            )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        if self._file is not None:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        self._check_version(version)
        if not self._schema_version or version < self._schema_version:
            conn.executescript(self._init_script)
        if self._on_connect is not None:
            self._on_connect(conn)

    def translate(
        self, exc: sqlite3.Error, action: str = "", *, rolled_back: bool = False
    ) -> RAGError:
        """The library error for ``exc`` raised while doing ``action`` on this database."""
        return translate_sqlite_error(exc, self, action=action, rolled_back=rolled_back)

    def _check_open(self) -> None:
        if self._closed:
            raise VectorStoreError(f"{self} is closed; open a new one to use it again")


def translate_sqlite_error(
    exc: sqlite3.Error,
    where: SQLiteDatabase,
    *,
    action: str = "",
    rolled_back: bool = False,
) -> RAGError:
    """Map a ``sqlite3`` error to the library's error tree, with what to do next.

    Args:
        exc: The error raised by sqlite3 or aiosqlite.
        where: The database (its ``str`` names it: "the sparse index at /x/sparse.sqlite").
        action: What was being done ("writing 3 upsert(s) and 1 delete(s)").
        rolled_back: Whether a transaction was rolled back (the message says so).

    Returns:
        The error to raise (chain it with ``from exc``).
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    doing = f" while {action}" if action else ""
    undone = " The whole transaction was rolled back: nothing was written." if rolled_back else ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return IndexCorruptedError(where.path, f"SQLite reports {name}{doing}: {exc}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return IndexLockedError(
            f"{where} stayed locked for more than {where.busy_timeout:g}s{doing} ({exc}).{undone} "
            "Another process is writing to it: wait for it to finish, then retry."
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return VectorStoreError(
            f"cannot open {where}{doing} ({exc}). Check that its directory exists and is writable."
        )
    if "no such table" in str(exc) or "no such column" in str(exc):
        hint = "The file was written by another version: rebuild into a new directory."
    elif name.startswith("SQLITE_CONSTRAINT"):
        hint = "A record breaks the table's constraints: check the values passed in."
    elif isinstance(exc, sqlite3.InterfaceError | sqlite3.ProgrammingError):
        hint = "A value cannot be stored (e.g. non-text content): fix it and retry."
    elif name.startswith("SQLITE_FULL"):
        hint = "Free some disk space, then retry."
    else:
        hint = "Retry; if it persists, report it with this message."
    return VectorStoreError(f"{where} failed{doing}: {exc} ({name or 'no code'}).{undone} {hint}")


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
    engine, a deployment's cached index) would keep the interpreter from exiting, and
    aiosqlite offers no public way to choose (its ``Connection`` is no longer a ``Thread``
    since 0.22, and builds its worker in ``__init__``). This is the package's ONE reach
    into aiosqlite's private ``_thread``; supported: aiosqlite >=0.22,<0.23, pinned by
    ``tests/unit/test_sqlite_cancellation.py::test_aiosqlite_worker_is_reachable_and_daemonized``.
    Naming and joining the worker go through the public connector (see ``_aopen``).
    """
    thread = conn._thread
    if not thread.is_alive():
        thread.daemon = True
    return conn


async def _aclose_state(state: _LoopState) -> None:
    """Close one loop's connection and wait for its worker thread to end (best effort)."""
    conn, state.conn = state.conn, None
    worker, state.worker = state.worker, None
    if conn is not None:
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await conn.close()
        except (TimeoutError, sqlite3.Error, ValueError) as exc:
            _log.warning("sqlite_close_failed", error=repr(exc))
    if worker is not None and worker.is_alive():
        await asyncio.to_thread(worker.join, _CLOSE_TIMEOUT)


async def _aclose_states(states: Iterable[_LoopState]) -> None:
    for state in states:
        await _aclose_state(state)


def _close_states_from_sync(states: list[_LoopState]) -> None:
    """Close aiosqlite connections from sync code, through the one sync bridge.

    Closing needs an event loop: the sync bridge's (:func:`~langchain_rag_async.aio.run_sync`).
    From plain sync code this waits until the connections are closed and their worker
    threads have ended. Inside a running loop (a sync ``close()`` called from async code)
    it must not block that loop: the bridge's loop closes them in the background.
    """
    if not any(state.conn is not None or state.worker is not None for state in states):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        run_sync(_aclose_states(states))
        return
    asyncio.run_coroutine_threadsafe(_aclose_states(states), default_portal().start())
