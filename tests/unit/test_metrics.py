"""Prometheus metrics: what the library counts, and the server's ``/metrics``."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.config import ServerConfig
from langchain_rag_async.metrics import REGISTRY, provider_of
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
    ):
        assert name in text, name
    assert value("rag_documents_processed_total", outcome="indexed") == indexed_before + 3
    assert value("rag_query_latency_seconds_count", stage="dense") == dense_before + 1
    assert value("rag_time_to_first_token_seconds_count") == ttft_before + 1
    assert value("rag_requests_in_flight", endpoint="/v1/chat/completions") == 0
