"""The connection pool's settings: from the environment, checked, and applied to the pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_rag_async.config import PoolSettings, RAGConfig
from langchain_rag_async.errors import ConfigurationError, VectorStoreError
from langchain_rag_async.postgres import PostgresDatabase


def test_pool_settings_come_from_the_environment() -> None:
    config = RAGConfig.from_env(
        {
            "RAG_STORE_POOL_SIZE": "3",
            "RAG_STORE_POOL_MAX_OVERFLOW": "0",
            "RAG_STORE_POOL_TIMEOUT": "2.5",
            "RAG_STORE_POOL_RECYCLE": "60",
        }
    )
    assert config.store_pool == PoolSettings(
        pool_size=3, max_overflow=0, pool_timeout=2.5, pool_recycle=60.0
    )
    assert RAGConfig.from_env({}).store_pool == PoolSettings()


@pytest.mark.parametrize(
    "env",
    [
        {"RAG_STORE_POOL_SIZE": "0"},
        {"RAG_STORE_POOL_MAX_OVERFLOW": "-1"},
        {"RAG_STORE_POOL_TIMEOUT": "0"},
        {"RAG_STORE_POOL_SIZE": "many"},
    ],
)
def test_bad_pool_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="RAG_STORE_POOL"):
        RAGConfig.from_env(env)


async def test_a_full_pool_says_which_setting_to_raise(pg_url: str) -> None:
    db = PostgresDatabase(pg_url, pool=PoolSettings(pool_size=1, max_overflow=0, pool_timeout=0.1))
    try:
        async with db.connect():
            with pytest.raises(VectorStoreError, match="RAG_STORE_POOL_SIZE"):
                async with db.connect():
                    pass
        assert await db.afetchall("SELECT 1") == [(1,)]  # the connection went back
    finally:
        await db.aclose()


def test_the_docker_compose_file_parses_and_names_pgvector() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    service = compose["services"]["postgres"]
    assert service["image"].startswith("pgvector/pgvector:")
    assert "rag-pgdata" in compose["volumes"]
    assert "docker-compose.yml" in (root / "docs" / "postgres.md").read_text()
