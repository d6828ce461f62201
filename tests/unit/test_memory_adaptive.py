"""Memory-adaptive batches: halve under the threshold, grow back additively, resize the queues."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.aio.queues import ResizableQueue
from langchain_rag_async.config import EmbeddingConfig, PipelineConfig, RAGConfig, SplitterConfig
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.indexing import memory
from langchain_rag_async.indexing.api import aindex_directory
from langchain_rag_async.indexing.memory import AdaptiveBatching, MemoryDecision
from langchain_rag_async.metrics import REGISTRY
from langchain_rag_async.observability import configure_logging

MB = 1024 * 1024
PARAGRAPH = "Ownership is a set of rules that govern how a Rust program manages memory. " * 3


# -- the heuristic ------------------------------------------------------------------------


def test_halves_under_the_threshold_and_grows_back_additively() -> None:
    sizes = AdaptiveBatching(batch_size=16, queue_size=64, low_memory=100 * MB)
    low, between, high = 50 * MB, 110 * MB, 200 * MB
    assert sizes.observe(high) is None  # already at the configured sizes
    assert sizes.observe(low) == MemoryDecision("shrink", 8, 32, low)
    assert sizes.observe(low) == MemoryDecision("shrink", 4, 16, low)
    for _ in range(10):
        sizes.observe(low)
    assert (sizes.batch_size, sizes.queue_size) == (1, 1)  # the floor
    assert sizes.observe(low) is None
    assert sizes.observe(between) is None  # under the recovery margin: hold
    assert sizes.observe(high) == MemoryDecision("grow", 5, 17, high)  # + a quarter
    assert sizes.observe(high) == MemoryDecision("grow", 9, 33, high)
    assert sizes.observe(high) == MemoryDecision("grow", 13, 49, high)
    assert sizes.observe(high) == MemoryDecision("grow", 16, 64, high)  # capped
    assert sizes.observe(high) is None
    assert [d.direction for d in sizes.decisions].count("shrink") == 6  # 16 → 1: four halvings
    # of the batch, six of the queue (64 → 1)


def test_a_zero_threshold_turns_adaptation_off() -> None:
    sizes = AdaptiveBatching(batch_size=16, queue_size=64, low_memory=0)
    assert not sizes.enabled and sizes.observe(0) is None and sizes.batch_size == 16
    with pytest.raises(ConfigurationError):
        AdaptiveBatching(batch_size=0, queue_size=1, low_memory=1)
    with pytest.raises(ConfigurationError, match="low_memory_bytes"):
        PipelineConfig(low_memory_bytes=-1)


def test_the_threshold_comes_from_the_environment() -> None:
    assert RAGConfig.from_env({"RAG_LOW_MEMORY_MB": "64"}).pipeline.low_memory_bytes == 64 * MB
    assert RAGConfig.from_env({}).pipeline.low_memory_bytes == 512 * MB
    assert RAGConfig.from_env({"RAG_LOW_MEMORY_MB": "0"}).pipeline.low_memory_bytes == 0


# -- the resizable queue ------------------------------------------------------------------


async def test_queue_bound_shrinks_and_grows_while_producers_wait() -> None:
    queue: ResizableQueue[int] = ResizableQueue(2)
    await queue.put(1)
    await queue.put(2)
    third = asyncio.create_task(queue.put(3))
    await asyncio.sleep(0.01)
    assert not third.done() and queue.qsize() == 2  # full
    queue.resize(3)  # growing lets the waiting producer in at once
    await asyncio.wait_for(third, 1)
    queue.resize(1)  # shrinking drops nothing: producers wait until it drains under 1
    fourth = asyncio.create_task(queue.put(4))
    assert [await queue.get(), await queue.get()] == [1, 2]
    await asyncio.sleep(0.01)
    assert not fourth.done()
    assert await queue.get() == 3
    await asyncio.wait_for(fourth, 1)
    assert await queue.get() == 4 and queue.empty()
    with pytest.raises(ConfigurationError):
        queue.resize(0)


async def test_a_cancelled_producer_hands_its_wake_up_on() -> None:
    queue: ResizableQueue[str] = ResizableQueue(1)
    await queue.put("a")
    first = asyncio.create_task(queue.put("b"))
    second = asyncio.create_task(queue.put("c"))
    await asyncio.sleep(0.01)
    assert await queue.get() == "a"  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.sleep(0.01)
    await asyncio.wait_for(second, 1)  # the wake-up went to `second`
    assert first.cancelled() and await queue.get() == "c"


# -- in the pipeline ----------------------------------------------------------------------


class RecordingEmbedding(DeterministicFakeEmbedding):
    """Records the size of each embedding request, a little slow (a real service is)."""

    sizes: list[int] = []

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.sizes.append(len(texts))
        await asyncio.sleep(0.005)
        return self.embed_documents(texts)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class MemoryScenario(RecordingEmbedding):
    """Memory runs low when the first batch is sent, and comes back with the first batch of 1.

    The first request waits until the pipeline has shrunk to the floor (the gauge says 1),
    so the scenario does not depend on how fast the machine is.
    """

    available: list[int] = [10_000 * MB]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if not self.sizes:
            self.available[0] = 10 * MB
            async with asyncio.timeout(10):
                while sample("rag_embed_batch_size") != 1:  # noqa: ASYNC110 - polls a metric
                    await asyncio.sleep(0.005)
        elif len(texts) == 1:
            self.available[0] = 10_000 * MB
        return await super().aembed_documents(texts)


async def test_indexing_shrinks_batches_while_memory_is_low_then_grows_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(12):
        body = "\n\n".join(f"{PARAGRAPH} File {i}, paragraph {p}." for p in range(8))
        (corpus / f"chapter-{i:02d}.md").write_text(f"# Chapter {i}\n\n{body}\n", "utf-8")
    embedding = MemoryScenario(size=16, sizes=[], available=[10_000 * MB])
    monkeypatch.setattr(memory, "available_memory", lambda: embedding.available[0])
    config = RAGConfig(
        index_dir=tmp_path / "index",
        splitter=SplitterConfig(chunk_size=300, chunk_overlap=0),
        embeddings=EmbeddingConfig(concurrency=1),  # one request at a time
        pipeline=PipelineConfig(
            low_memory_bytes=100 * MB, memory_check_interval=0.01, queue_size=8
        ),
    )
    shrinks = sample("rag_memory_adaptations_total", direction="shrink")
    grows = sample("rag_memory_adaptations_total", direction="grow")
    # The decisions as an operator sees them: JSON lines at info level (growing back is
    # logged at info). Configuring starts or stops the writer thread: not on the loop.
    stream = io.StringIO()
    await asyncio.to_thread(configure_logging, logging.INFO, json=True, stream=stream)
    try:
        summary = await aindex_directory(corpus, config=config, embeddings=embedding)
    finally:  # stopping the writer thread writes what it still holds
        await asyncio.to_thread(configure_logging, logging.WARNING)
    logs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert summary.files_indexed == 12 and summary.files_failed == []
    assert sum(embedding.sizes) == summary.chunks_added  # every chunk embedded, once
    sizes = embedding.sizes
    assert max(sizes) <= 16 and 1 in sizes
    after_floor = sizes[sizes.index(1) :]
    assert max(after_floor) > 1  # grew back within the run
    low_events = [e for e in logs if e["event"] == "memory_low_shrinking"]
    assert [e["batch_size"] for e in low_events] == [8, 4, 2, 1]  # then the floor holds
    assert [e["queue_size"] for e in low_events] == [4, 2, 1, 1]
    assert low_events[0]["threshold_mb"] == 100 and low_events[0]["available_mb"] == 10
    assert sample("rag_memory_adaptations_total", direction="shrink") - shrinks == 4
    grew = sample("rag_memory_adaptations_total", direction="grow") - grows
    recovered = [e for e in logs if e["event"] == "memory_recovered"]
    assert grew == len(recovered) >= 1
    assert recovered[0]["batch_size"] == 5  # 1 + a quarter of 16: additive


async def test_no_threshold_no_readings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never() -> int:
        raise AssertionError("memory was read although adaptation is off")

    monkeypatch.setattr(memory, "available_memory", never)
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.md").write_text(f"# A\n\n{PARAGRAPH}\n", "utf-8")
    config = RAGConfig(index_dir=tmp_path / "index", pipeline=PipelineConfig(low_memory_bytes=0))
    summary = await aindex_directory(corpus, config=config, embeddings=RecordingEmbedding(size=8))
    assert summary.files_indexed == 1


# -- the command line ---------------------------------------------------------------------


def _index_config(*argv: str) -> RAGConfig:
    from langchain_rag_async.cli import _config_from_args, build_parser

    return _config_from_args(build_parser().parse_args(["index", "docs", *argv]))


def test_the_threshold_comes_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LOW_MEMORY_MB", "300")
    assert _index_config().pipeline.low_memory_bytes == 300 * MB  # the environment's
    assert _index_config("--low-memory-mb", "64").pipeline.low_memory_bytes == 64 * MB
    assert _index_config("--low-memory-mb", "0").pipeline.low_memory_bytes == 0  # off
    monkeypatch.delenv("RAG_LOW_MEMORY_MB")
    config = _index_config("--low-memory-mb", "2048", "--batch-size", "8")
    assert config.pipeline.low_memory_bytes == 2048 * MB
    assert config.embeddings.batch_size == 8 and config.pipeline.queue_size == 64  # untouched
    with pytest.raises(ConfigurationError, match="low_memory_mb must not be negative"):
        _index_config("--low-memory-mb", "-1")
