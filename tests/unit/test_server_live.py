"""The server on a real socket: the openai SDK and ChatOpenAI, disconnects, back-pressure."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_openai import ChatOpenAI
from pydantic import ConfigDict, Field

from langchain_rag_async import AsyncRAGEngine, RAGEngine
from langchain_rag_async.config import ServerConfig
from langchain_rag_async.server import create_app

from .server_support import (
    GatedChatModel,
    LiveServer,
    build_index,
    config_for,
    embedding,
    live_server,
    write_topics,
)

KEY = "live-key"
pytestmark = pytest.mark.allow_blocking  # the clients below are the test's, not the server's


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("live")
    build_index(write_topics(root / "docs"), root / "idx")
    return root / "idx"


def serve(index_dir: Path, llm: Any = None, **settings: Any) -> Any:
    engine = AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding(), llm=llm)
    return live_server(create_app(engine, ServerConfig(api_key=KEY, **settings)))


@pytest.fixture(scope="module")
def server(index_dir: Path) -> Iterator[LiveServer]:
    with serve(index_dir) as live:
        yield live


def question(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_openai_sync_client_plain_and_streamed(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == ["rag-async"]
    completion = client.chat.completions.create(
        model="rag-async", messages=question("What is Cargo?")
    )
    text = completion.choices[0].message.content or ""
    assert "Cargo" in text and "[" in text
    sources = completion.model_extra["sources"]  # the documented extra field
    assert any(Path(s["source"]).name == "cargo.md" for s in sources)
    stream = client.chat.completions.create(
        model="rag-async", messages=question("What is Cargo?"), stream=True
    )
    streamed = [chunk for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text
    assert streamed[-1].model_extra["sources"] == sources


async def test_openai_async_client_plain_and_streamed(server: LiveServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    async with client:
        completion = await client.chat.completions.create(
            model="rag-async", messages=question("Who owns a value?")
        )
        assert "owner" in (completion.choices[0].message.content or "")
        stream = await client.chat.completions.create(
            model="rag-async", messages=question("Who owns a value?"), stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == completion.choices[0].message.content


def test_openai_errors_surface_as_sdk_exceptions(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=question("hi"))
    assert missing.value.code == "model_not_found"
    bad_key = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.models.list()


async def test_langchain_chat_openai_streams_through_the_server(server: LiveServer) -> None:
    llm = ChatOpenAI(base_url=f"{server.url}/v1", api_key=KEY, model="rag-async", max_retries=0)
    chunks = [chunk async for chunk in llm.astream("What are closures?")]
    text = "".join(str(chunk.content) for chunk in chunks)
    assert "Closures" in text and "[" in text
    whole = await llm.ainvoke("What are closures?")
    assert whole.content == text


def tasks(server: LiveServer) -> int:
    headers = {"Authorization": f"Bearer {KEY}"}
    return int(httpx.get(f"{server.url}/_test/tasks", headers=headers).json()["tasks"])


def wait_until(condition: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/answer"])
def test_a_client_that_disconnects_cancels_its_generation(index_dir: Path, path: str) -> None:
    llm = GatedChatModel()
    with serve(index_dir, llm=llm) as live:
        state = live.server.config.app.state.rag
        idle = tasks(live)
        body: dict[str, Any] = (
            {"model": "rag-async", "messages": question("What is Cargo?"), "stream": True}
            if path.startswith("/v1")
            else {"question": "What is Cargo?"}
        )
        headers = {"Authorization": f"Bearer {KEY}"}
        with (
            httpx.Client(timeout=10) as client,
            client.stream("POST", f"{live.url}{path}", json=body, headers=headers) as response,
        ):
            assert response.status_code == 200
            assert llm.started.wait(10)  # the model is generating (held at the gate)
            assert state.gate.in_flight == 1
        # the client went away mid-answer: the server stops generating and frees the slot
        assert wait_until(llm.cancelled.is_set), "the generation was not cancelled"
        assert wait_until(lambda: state.gate.in_flight == 0)
        assert wait_until(lambda: tasks(live) <= idle), f"{tasks(live)} tasks left, {idle} idle"


def test_full_server_answers_429_with_retry_after(index_dir: Path) -> None:
    llm = GatedChatModel()
    with serve(index_dir, llm=llm, max_concurrent_generations=1, queue_timeout=0.2) as live:
        client = openai.OpenAI(base_url=f"{live.url}/v1", api_key=KEY, max_retries=0)

        async def hold_one() -> str:
            async with openai.AsyncOpenAI(
                base_url=f"{live.url}/v1", api_key=KEY, max_retries=0
            ) as busy:
                done = await busy.chat.completions.create(
                    model="rag-async", messages=question("What is Cargo?")
                )
                return done.choices[0].message.content or ""

        async def scenario() -> str:
            first = asyncio.create_task(hold_one())
            while not llm.started.is_set():  # noqa: ASYNC110 - set by the server's thread
                await asyncio.sleep(0.01)
            with pytest.raises(openai.RateLimitError) as refused:
                await asyncio.to_thread(
                    client.chat.completions.create, model="rag-async", messages=question("x y")
                )
            assert refused.value.response.headers["retry-after"] == "1"
            llm.gate.set()
            return await first

        assert "Cargo" in asyncio.run(scenario())


class HeldQueryEmbedding(DeterministicFakeEmbedding):
    """Fake embeddings whose query embedding runs until cancelled (a search that hangs)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    started: threading.Event = Field(default_factory=threading.Event)
    cancelled: threading.Event = Field(default_factory=threading.Event)

    async def aembed_query(self, text: str) -> list[float]:
        self.started.set()
        try:
            await asyncio.Event().wait()  # nobody sets it: only cancellation ends the wait
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


def post_then_leave(url: str, path: str, body: dict[str, Any], started: threading.Event) -> None:
    """POST ``body`` on a raw socket and close the connection once the server ``started``."""
    payload = json.dumps(body).encode()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        sock.sendall(head.encode() + payload)
        assert started.wait(10), "the server never started working on the request"


def test_a_client_that_leaves_a_whole_answer_cancels_its_generation(index_dir: Path) -> None:
    """stream=false writes nothing until the end; a disconnect still cancels the model."""
    llm = GatedChatModel()
    with serve(index_dir, llm=llm) as live:
        state = live.server.config.app.state.rag
        idle = tasks(live)
        body = {"model": "rag-async", "messages": question("What is Cargo?"), "stream": False}
        post_then_leave(live.url, "/v1/chat/completions", body, llm.started)
        assert wait_until(llm.cancelled.is_set), "the generation was not cancelled"
        assert wait_until(lambda: state.gate.in_flight == 0)
        assert wait_until(lambda: tasks(live) <= idle), f"{tasks(live)} tasks left, {idle} idle"


def test_a_client_that_leaves_a_query_cancels_the_search(tmp_path: Path) -> None:
    held = HeldQueryEmbedding(size=32)
    index_dir = tmp_path / "idx"
    with RAGEngine(config=config_for(index_dir), embeddings=held) as indexer:
        indexer.index_directory(write_topics(tmp_path / "docs"))
    engine = AsyncRAGEngine(config=config_for(index_dir), embeddings=held)
    with live_server(create_app(engine, ServerConfig(api_key=KEY))) as live:
        idle = tasks(live)
        post_then_leave(live.url, "/query", {"question": "What is Cargo?"}, held.started)
        assert wait_until(held.cancelled.is_set), "the search was not cancelled"
        assert wait_until(lambda: tasks(live) <= idle), f"{tasks(live)} tasks left, {idle} idle"
