"""Shared by the server tests: a small indexed corpus, a held-open chat model, a live server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from pydantic import ConfigDict, Field

from langchain_rag_async import RAGConfig, RAGEngine
from langchain_rag_async.chat_models import ExtractiveChatModel
from langchain_rag_async.config import SplitterConfig

TOPICS = {
    "ownership.md": "# Ownership\n\nEach value in Rust has an owner. There can only be one owner "
    "at a time. When the owner goes out of scope, the value will be dropped.\n",
    "closures.md": "# Closures\n\nClosures are anonymous functions you can save in a variable "
    "or pass as arguments to other functions. Closures capture values from their scope.\n",
    "cargo.md": "# Cargo\n\nCargo is the Rust build system and package manager. Cargo builds "
    "your code, downloads the libraries your code depends on, and builds those libraries.\n",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedding() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=32)


def write_topics(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, text in TOPICS.items():
        (root / name).write_text(text, "utf-8")
    return root


def config_for(index_dir: Path) -> RAGConfig:
    return RAGConfig(
        index_dir=index_dir,
        splitter=SplitterConfig(chunk_size=400, chunk_overlap=0),
        freeze_gc=False,
    )


def build_index(corpus: Path, index_dir: Path) -> None:
    with RAGEngine(config=config_for(index_dir), embeddings=embedding()) as engine:
        engine.index_directory(corpus)


class GatedChatModel(ExtractiveChatModel):
    """The extractive model, but it streams only once the test opens ``gate``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    gate: threading.Event = Field(default_factory=threading.Event)
    started: threading.Event = Field(default_factory=threading.Event)
    cancelled: threading.Event = Field(default_factory=threading.Event)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.started.set()
        try:
            while not self.gate.is_set():  # noqa: ASYNC110 - a thread's Event; polling stays cancellable
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            yield chunk


class LiveServer:
    """A real uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@contextmanager
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    @app.get("/_test/tasks")
    async def tasks() -> dict[str, int]:
        """Tasks alive on the server's loop: this one and sse-starlette's watcher excluded.

        sse-starlette starts one shutdown watcher per event loop and keeps it for the
        loop's life; it belongs to no request.
        """
        alive = [
            t
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task()
            and getattr(t.get_coro(), "__qualname__", "") != "_shutdown_watcher"
        ]
        return {"tasks": len(alive)}

    server = LiveServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class GatedEmbedding(DeterministicFakeEmbedding):
    """Fake embeddings that answer only once the test opens ``gate`` (an index job held open)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    gate: threading.Event = Field(default_factory=threading.Event)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        while not self.gate.is_set():  # noqa: ASYNC110 - a thread's Event; polling stays cancellable
            await asyncio.sleep(0.01)
        return self.embed_documents(texts)
