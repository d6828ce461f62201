"""aiosqlite calls under cancellation: the worker thread never answers a closed loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable

import aiosqlite
import pytest

from langchain_rag_async._sqlite import aopen, drain_on_cancel, settle


def slow_connector(opened: list[sqlite3.Connection]) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        time.sleep(0.2)  # an open that takes a while (a busy lock, a slow disk)
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        opened.append(conn)
        return conn

    return connect


@pytest.mark.parametrize("cancels", [1, 2, 3])
def test_cancelled_open_is_finished_and_closed_before_the_loop_closes(
    thread_errors: list[BaseException], cancels: int
) -> None:
    """``asyncio.run`` cancels again while shutting down; the open must still be closed."""
    opened: list[sqlite3.Connection] = []
    conn = aiosqlite.Connection(slow_connector(opened), 64)

    async def main() -> None:
        task = asyncio.create_task(aopen(conn))
        for _ in range(cancels):
            await asyncio.sleep(0.02)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    time.sleep(0.3)  # a worker left behind would answer within this
    assert thread_errors == []
    assert conn._connection is None and not conn._thread.is_alive()  # closed, thread ended


def test_a_failure_after_cancellation_is_not_reported_as_never_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_later() -> None:
        await asyncio.sleep(0.05)
        raise sqlite3.OperationalError("database is locked")

    async def main() -> None:
        task = asyncio.create_task(settle(fails_later()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with caplog.at_level("ERROR", logger="asyncio"):
        asyncio.run(main())
        import gc

        gc.collect()
    assert "never retrieved" not in caplog.text


def test_cancelled_query_is_drained_before_the_loop_closes(
    tmp_path: object, thread_errors: list[BaseException]
) -> None:
    release = threading.Event()

    async def main() -> aiosqlite.Connection:
        conn = await aopen(aiosqlite.connect(":memory:"))
        await conn.create_function("wait", 0, lambda: release.wait(1.0))
        task = asyncio.create_task(drain_on_cancel(conn, conn.execute_fetchall("SELECT wait()")))
        await asyncio.sleep(0.05)
        task.cancel()
        asyncio.get_running_loop().call_later(0.1, release.set)
        with pytest.raises(asyncio.CancelledError):
            await task
        await conn.close()
        return conn

    conn = asyncio.run(main())
    time.sleep(0.2)
    assert thread_errors == []
    assert not conn._thread.is_alive()


def test_aiosqlite_worker_is_reachable_and_daemonized() -> None:
    """Pins the one reach into aiosqlite's privates (``_sqlite.daemonize``).

    aiosqlite >=0.22,<0.23 builds the worker ``threading.Thread`` in ``Connection.__init__``
    as ``_thread`` (the Connection itself is no longer a Thread) and starts it on await,
    running the connector on it first. If a new aiosqlite changes that, this test fails:
    check the new release for a public way to make the worker a daemon.
    """
    from importlib.metadata import version

    from langchain_rag_async._sqlite import daemonize

    major, minor = (int(part) for part in version("aiosqlite").split(".")[:2])
    assert (major, minor) == (0, 22), "re-check _sqlite.daemonize for this aiosqlite version"
    assert not issubclass(aiosqlite.Connection, threading.Thread)
    ran_on: list[threading.Thread] = []

    def connect() -> sqlite3.Connection:
        ran_on.append(threading.current_thread())
        return sqlite3.connect(":memory:", check_same_thread=False)

    conn = aiosqlite.Connection(connect, 64)
    worker = conn._thread
    assert isinstance(worker, threading.Thread) and not worker.is_alive()
    assert daemonize(conn) is conn and worker.daemon

    async def main() -> None:
        await aopen(conn)
        await conn.close()

    asyncio.run(main())
    assert ran_on == [worker]  # the connector runs on that worker: naming it there is public
    worker.join(5)
    assert not worker.is_alive()
