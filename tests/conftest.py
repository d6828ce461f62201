"""Shared test fixtures: the blocking-call guard and the shared data paths."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

# No test may reach a network service or a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("RAG_EMBEDDINGS", None)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
RUST_BOOK = SHARED_DATA / "rust-book"
SCIFACT = SHARED_DATA / "scifact"


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail an async test when our package blocks the running event loop.

    Only calls made (directly or through a dependency) from ``langchain_rag_async``
    frames are checked, so the test's own setup code may do plain file I/O.
    Opt out with ``@pytest.mark.allow_blocking``.
    """
    func = getattr(request.node, "obj", None)
    if request.node.get_closest_marker("allow_blocking") or not asyncio.iscoroutinefunction(func):
        yield None
        return
    with blockbuster_ctx("langchain_rag_async") as bb:
        yield bb


@pytest.fixture
def rust_book() -> Path:
    """The shared 112-file Markdown corpus (read in place, never copied)."""
    if not RUST_BOOK.is_dir():
        pytest.skip(f"shared corpus missing: {RUST_BOOK}")
    return RUST_BOOK
