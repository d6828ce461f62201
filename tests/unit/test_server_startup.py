"""What the server does to its process at start-up: the event loop, the host's logging, warm-up."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding
from pydantic import PrivateAttr

from langchain_rag_async import AsyncRAGEngine, RAGEngine
from langchain_rag_async.config import ServerConfig
from langchain_rag_async.server import create_app
from langchain_rag_async.server.run import serve_loop_factory

from .server_support import config_for, write_topics

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


class RecordingEmbedding(DeterministicFakeEmbedding):
    """Fake vectors; signals when a warm-up question is embedded (one by one or in a batch)."""

    _warmed: threading.Event = PrivateAttr(default_factory=threading.Event)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if any("warm" in text for text in texts):
            self._warmed.set()
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        if "warm" in text:
            self._warmed.set()
        return super().embed_query(text)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup")
    with RAGEngine(
        config=config_for(root / "idx"), embeddings=RecordingEmbedding(size=32)
    ) as engine:
        engine.index_directory(write_topics(root / "docs"))  # the model the tests query with
    return root / "idx"


@contextmanager
def bare_root_logger() -> Iterator[logging.Logger]:
    """The root logger as in a process that set up no logging (pytest's handlers removed)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_serve_runs_on_uvloop_when_installed() -> None:
    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.access")]
    before = [(list(log.handlers), log.level) for log in uvicorn_loggers]
    factory = serve_loop_factory()
    # choosing the loop leaves uvicorn's loggers to aserve (JSON logs configure them)
    assert [(list(log.handlers), log.level) for log in uvicorn_loggers] == before
    loop = factory() if factory is not None else asyncio.new_event_loop()
    try:
        expected = "uvloop" if HAS_UVLOOP else "asyncio"
        assert type(loop).__module__.split(".")[0] == expected
    finally:
        loop.close()


def test_building_the_app_leaves_the_hosts_logging_alone(index_dir: Path) -> None:
    # The MCP SDK calls logging.basicConfig(INFO) with a rich handler while it builds its
    # server: every INFO record of every library would then be rendered on the loop.
    engine = AsyncRAGEngine(config=config_for(index_dir), embeddings=RecordingEmbedding(size=32))
    with bare_root_logger() as root:
        create_app(engine, ServerConfig())
        assert root.handlers == []
        assert root.level == logging.WARNING


def test_warm_up_searches_in_the_background_at_start_up(index_dir: Path) -> None:
    embeddings = RecordingEmbedding(size=32)
    engine = AsyncRAGEngine(config=config_for(index_dir), embeddings=embeddings)
    app = create_app(engine, ServerConfig(), warm_up=True)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/healthz").status_code == 200  # start-up does not wait for it
        assert embeddings._warmed.wait(120)  # generous: a loaded CI box
        assert client.get("/readyz").status_code == 200


def test_warm_up_over_an_empty_index_directory_is_skipped(tmp_path: Path) -> None:
    engine = AsyncRAGEngine(
        config=config_for(tmp_path / "nothing-yet"), embeddings=DeterministicFakeEmbedding(size=32)
    )
    app = create_app(engine, ServerConfig(), warm_up=True)
    with TestClient(app, base_url="http://localhost") as client:  # starts and stops cleanly
        assert client.get("/healthz").status_code == 200
