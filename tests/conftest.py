"""Shared test fixtures: the blocking-call guard and the shared data paths."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
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


@pytest.fixture(autouse=True)
def unfreeze_gc() -> Iterator[None]:
    """Undo the ``gc.freeze()`` an engine does after loading, so tests stay collectable."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


@pytest.fixture
def thread_errors() -> Iterator[list[BaseException]]:
    """Exceptions raised in any thread during the test (e.g. a worker hitting a closed loop)."""
    errors: list[BaseException] = []
    previous = threading.excepthook

    def record(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            errors.append(args.exc_value)

    threading.excepthook = record
    yield errors
    threading.excepthook = previous


@pytest.fixture
def rust_book() -> Path:
    """The shared 112-file Markdown corpus (read in place, never copied)."""
    if not RUST_BOOK.is_dir():
        pytest.skip(f"shared corpus missing: {RUST_BOOK}")
    return RUST_BOOK


_SPAN_EXPORTER: object | None = None


@pytest.fixture
def spans() -> Iterator[object]:
    """An in-memory OpenTelemetry exporter attached to the global SDK tracer provider."""
    global _SPAN_EXPORTER
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if _SPAN_EXPORTER is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _SPAN_EXPORTER = exporter
    assert isinstance(_SPAN_EXPORTER, InMemorySpanExporter)
    _SPAN_EXPORTER.clear()
    yield _SPAN_EXPORTER
    _SPAN_EXPORTER.clear()
