"""Fixtures around the local OpenAI-compatible fake server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from langchain_rag_async.testing.openai_server import FakeOpenAIServer


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAIServer]:
    """A fake OpenAI server in the test's own event loop (tune its attributes per test)."""
    async with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def threaded_openai_server() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI server on its own loop in a daemon thread, for sync tests."""
    with FakeOpenAIServer.run_in_thread() as server:
        yield server
