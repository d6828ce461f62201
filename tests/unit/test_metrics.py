"""Prometheus metrics: what the library counts, and the server's ``/metrics``."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from langchain_rag_async import AsyncRAGEngine, RAGConfig, aindex_directory
from langchain_rag_async.config import EmbeddingConfig, LoaderConfig, ServerConfig
from langchain_rag_async.embeddings.factory import embedding_limiter
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.metrics import (
    REGISTRY,
    provider_of,
    serve_metrics,
    watch_event_loop_lag,
)
from langchain_rag_async.server import create_app
from langchain_rag_async.testing.openai_server import FakeOpenAIServer

from .server_support import config_for, embedding, write_topics
from .test_rate_limited_embeddings import make_embeddings, texts_of


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_provider_label_is_the_service_provider() -> None:
    assert provider_of("embeddings:openai") == "openai" and provider_of("local") == "local"


async def test_embedding_requests_are_counted_by_outcome(openai_server: FakeOpenAIServer) -> None:
    labels = {"provider": "fake-openai"}
    before = {o: value("rag_embedding_requests_total", **labels, outcome=o) for o in
              ("ok", "429", "error", "retry")}  # fmt: skip
    openai_server.fail_next(1, status=429)
    openai_server.fail_next(1, status=500, after=1)
    embeddings = make_embeddings(openai_server, batch_size=4, concurrency=1)
    await embeddings.aembed_documents(texts_of(8))
    after = {o: value("rag_embedding_requests_total", **labels, outcome=o) for o in before}
    delta = {o: after[o] - before[o] for o in before}
    assert delta == {"ok": 2, "429": 1, "error": 1, "retry": 2}, delta


def test_metrics_endpoint_exposes_the_design_metrics(tmp_path: Path) -> None:
    root = write_topics(tmp_path / "root" / "docs").parent
    engine = AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding())
    indexed_before = value("rag_documents_processed_total", outcome="indexed")
    dense_before = value("rag_query_latency_seconds_count", stage="dense")
    ttft_before = value("rag_time_to_first_token_seconds_count")
    app = create_app(engine, ServerConfig(roots=(root,)))
    with TestClient(app, base_url="http://localhost") as client:  # loopback Host name
        job = client.post("/index", json={"path": str(root)}).json()["job_id"]
        while client.get(f"/index/{job}").json()["state"] == "running":
            pass
        chat = {"model": "rag-async", "messages": [{"role": "user", "content": "What is Cargo?"}]}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        'rag_documents_processed_total{outcome="indexed"}',
        'rag_embedding_requests_total{outcome="ok",provider="local"}',
        'rag_query_latency_seconds_bucket{le="0.001",stage="dense"}',
        'rag_query_latency_seconds_count{stage="sparse"}',
        'rag_query_latency_seconds_count{stage="fuse"}',
        'rag_query_latency_seconds_count{stage="generate"}',
        "rag_time_to_first_token_seconds_count",
        'rag_requests_in_flight{endpoint="/metrics"} 1.0',
        "rag_chunks_embedded_total",
        "rag_chunks_cached_total",
        'rag_adaptive_concurrency{service="embeddings:local"}',
        'rag_rate_limiter_wait_seconds_count{service="embeddings:local"}',
        "rag_event_loop_lag_seconds_count",
    ):
        assert name in text, name
    assert value("rag_documents_processed_total", outcome="indexed") == indexed_before + 3
    assert value("rag_query_latency_seconds_count", stage="dense") == dense_before + 1
    assert value("rag_time_to_first_token_seconds_count") == ttft_before + 1
    assert value("rag_requests_in_flight", endpoint="/v1/chat/completions") == 0


INDEX_METRICS = {
    **{("rag_documents_processed_total", ("outcome", o)): 0 for o in
       ("indexed", "skipped", "failed", "deleted")},
    **{("rag_embedding_requests_total", ("provider", "openai"), ("outcome", o)): 0 for o in
       ("ok", "429", "error", "retry", "timeout", "bad_response")},
    ("rag_chunks_embedded_total",): 0,
    ("rag_chunks_cached_total",): 0,
    ("rag_rate_limiter_wait_seconds_count", ("service", "embeddings:openai")): 0,
}  # fmt: skip


def snapshot() -> dict[tuple[Any, ...], float]:
    return {key: value(key[0], **dict(key[1:])) for key in INDEX_METRICS}


def short(delta: dict[tuple[Any, ...], float]) -> dict[str, float]:
    """``{"rag_chunks_cached_total": 6, "outcome=429": 1, ...}``, zeros left out."""
    return {
        "/".join([k[0].removeprefix("rag_"), *(v for _, v in k[1:])]): d
        for k, d in delta.items()
        if d
    }


async def test_an_index_run_is_counted_exactly(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"topic-{i}.md").write_text(f"# Topic {i}\n\nNotes number {i} on ownership.\n")
    embeddings = EmbeddingConfig(
        provider="openai", openai_api_key="x", openai_base_url=openai_server.base_url,
        batch_size=2, concurrency=4,
    )  # fmt: skip
    (corpus / "huge.md").write_text("x" * 5_000)  # over the size limit: fails at the scan
    loader = LoaderConfig(max_file_size=4_000)
    config = RAGConfig(index_dir=tmp_path / "idx", embeddings=embeddings, loader=loader)
    limiter = embedding_limiter(embeddings)
    openai_server.fail_next(1, status=429)
    openai_server.fail_next(1, status=500, after=1)
    before = snapshot()
    first = await aindex_directory(corpus, config=config, limiter=limiter)
    delta = {k: v - before[k] for k, v in snapshot().items()}
    answered = openai_server.stats.status_counts
    requests = sum(answered.values())
    assert answered[429] == 1 and answered[500] == 1 and answered[200] == requests - 2
    assert short(delta) == {
        "documents_processed_total/indexed": 6,
        "documents_processed_total/failed": 1,
        "embedding_requests_total/openai/ok": answered[200],
        "embedding_requests_total/openai/429": 1,
        "embedding_requests_total/openai/error": 1,
        "embedding_requests_total/openai/retry": 2,
        "chunks_embedded_total": 6,
        "rate_limiter_wait_seconds_count/embeddings:openai": requests,  # each attempt waits
    }
    assert first.chunks_embedded == 6 and len(first.files_failed) == 1
    # the 429 halved the limit, successes raise it again: the gauge follows the limiter
    assert value("rag_adaptive_concurrency", service="embeddings:openai") == (
        limiter.concurrency_limit
    )

    # Renamed files: the old ones are deleted, the new ones' chunks come from the cache.
    for path in sorted(corpus.iterdir()):
        path.rename(path.with_name("renamed-" + path.name))
    before = snapshot()
    second = await aindex_directory(corpus, config=config, limiter=limiter)
    delta = {k: v - before[k] for k, v in snapshot().items()}
    assert short(delta) == {
        "documents_processed_total/indexed": 6,
        "documents_processed_total/failed": 1,
        "documents_processed_total/deleted": 6,
        "chunks_cached_total": 6,
    }
    assert second.chunks_cached == 6 and sum(openai_server.stats.status_counts.values()) == requests


def test_event_loop_lag_is_sampled_while_the_loop_is_held() -> None:
    async def hold_the_loop() -> None:
        async with watch_event_loop_lag(interval=0.05):
            await asyncio.sleep(0.01)
            time.sleep(0.3)  # noqa: ASYNC251 - holds the loop, as a slow callback would
            await asyncio.sleep(0.1)

    before = value("rag_event_loop_lag_seconds_count")
    slow_before = value("rag_event_loop_lag_seconds_bucket", le="0.1")
    asyncio.run(hold_the_loop())
    assert value("rag_event_loop_lag_seconds_count") > before
    # at least one sample came 0.2 s late or more: counted above the 0.1 s bucket
    samples = value("rag_event_loop_lag_seconds_count") - before
    assert value("rag_event_loop_lag_seconds_bucket", le="0.1") - slow_before < samples


def test_the_metrics_port_refuses_a_taken_port_clearly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match="--metrics-port"):
            serve_metrics(port)


async def test_each_query_stage_is_timed_once_per_query(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "docs")
    stages = ("embed", "dense", "sparse", "fuse", "generate")

    def counts() -> dict[str, float]:
        return {s: value("rag_query_latency_seconds_count", stage=s) for s in stages}

    async with AsyncRAGEngine(
        config=config_for(tmp_path / "idx"), embeddings=embedding()
    ) as engine:
        await engine.aindex_directory(corpus)
        before = counts()
        await engine.aquery("What is Cargo?")
        after_query = counts()
        await engine.aanswer("What is Cargo?")
        after_answer = counts()
    assert {s: after_query[s] - before[s] for s in stages} == {
        "embed": 1,
        "dense": 1,
        "sparse": 1,
        "fuse": 1,
        "generate": 0,
    }
    assert {s: after_answer[s] - after_query[s] for s in stages} == {
        "embed": 1,
        "dense": 1,
        "sparse": 1,
        "fuse": 1,
        "generate": 1,
    }
