"""Prometheus metrics of the library, in one registry the library owns (never the global one).

The library counts what it does (files indexed, embedding requests, the seconds of each
query stage); the server adds what only it sees (time to first token, requests in
flight) and exposes the registry at ``GET /metrics``. Labels take values from small fixed
sets (outcomes, providers, stage names), never a path or a question.

Metrics:
    ``rag_documents_processed_total{outcome}``: files handled by indexing runs
        (``indexed``, ``skipped``, ``failed``, ``deleted``), counted as a run goes.
    ``rag_embedding_requests_total{provider, outcome}``: requests to the embedding
        service: ``ok``, ``429``, ``error`` (any other failure; ``timeout`` and
        ``bad_response``, unusable vectors, are counted apart), and ``retry``: a retry
        scheduled after a failure (so failures = 429 + error + timeout + bad_response).
    ``rag_chunks_embedded_total``: chunk texts sent to the embedding model (cache misses).
    ``rag_chunks_cached_total``: chunk texts whose vectors came from the embedding cache.
    ``rag_rate_limiter_wait_seconds{service}``: time a request waited for its service's
        limiter (a concurrency slot, the token budget, the request pacer).
    ``rag_adaptive_concurrency{service}``: the limiter's current concurrency limit (halved
        on 429, raised by one after a window of successes).
    ``rag_query_latency_seconds{stage}``: ``embed`` (the query's vector), ``dense`` (the
        vector search, the query's embedding included), ``sparse``, ``fuse`` (fusion and
        building the winners), ``generate`` (the chat model's answer).
    ``rag_time_to_first_token_seconds``: from an answer request to its first token.
    ``rag_requests_in_flight{endpoint}``: HTTP requests being served.
    ``rag_event_loop_lag_seconds``: how late a timer fired on the event loop (something
        held the loop that long); sampled by :func:`watch_event_loop_lag`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from langchain_rag_async.errors import ConfigurationError

__all__ = (
    "ADAPTIVE_CONCURRENCY",
    "CHUNKS_CACHED",
    "CHUNKS_EMBEDDED",
    "DOCUMENTS_PROCESSED",
    "EMBEDDING_REQUESTS",
    "EMBED_BATCH_SIZE",
    "EVENT_LOOP_LAG",
    "MEMORY_ADAPTATIONS",
    "PIPELINE_QUEUE_DEPTH",
    "QUERY_LATENCY",
    "RATE_LIMITER_WAIT",
    "REGISTRY",
    "REQUESTS_IN_FLIGHT",
    "TIME_TO_FIRST_TOKEN",
    "RunningTotals",
    "count_chunks",
    "exposition",
    "provider_of",
    "serve_metrics",
    "watch_event_loop_lag",
)

REGISTRY = CollectorRegistry(auto_describe=True)
"""The library's registry; pass it to your exporter or mount :func:`exposition`."""

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

DOCUMENTS_PROCESSED = Counter(
    "rag_documents_processed",
    "Files handled by indexing runs, by outcome (indexed, skipped, failed, deleted).",
    ["outcome"],
    registry=REGISTRY,
)
EMBEDDING_REQUESTS = Counter(
    "rag_embedding_requests",
    "Requests to the embedding service, by provider and outcome (ok, 429, error, retry).",
    ["provider", "outcome"],
    registry=REGISTRY,
)
QUERY_LATENCY = Histogram(
    "rag_query_latency_seconds",
    "Seconds per query stage (embed, dense, sparse, fuse, generate).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "rag_time_to_first_token_seconds",
    "Seconds from an answer request to its first token.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CHUNKS_EMBEDDED = Counter(
    "rag_chunks_embedded",
    "Chunk texts sent to the embedding model (embedding-cache misses).",
    registry=REGISTRY,
)
CHUNKS_CACHED = Counter(
    "rag_chunks_cached",
    "Chunk texts whose vectors came from the embedding cache.",
    registry=REGISTRY,
)
RATE_LIMITER_WAIT = Histogram(
    "rag_rate_limiter_wait_seconds",
    "Seconds a request waited for its service's limiter (slot, token budget, pacing).",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
ADAPTIVE_CONCURRENCY = Gauge(
    "rag_adaptive_concurrency",
    "Current adaptive concurrency limit of a service's limiter.",
    ["service"],
    registry=REGISTRY,
)
EVENT_LOOP_LAG = Histogram(
    "rag_event_loop_lag_seconds",
    "Seconds a timer on the event loop fired late (the loop was held that long).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
REQUESTS_IN_FLIGHT = Gauge(
    "rag_requests_in_flight",
    "HTTP requests being served, by endpoint.",
    ["endpoint"],
    registry=REGISTRY,
)


def provider_of(service: str) -> str:
    """The provider part of a limiter's service name (``"embeddings:openai"`` → ``openai``)."""
    return service.rpartition(":")[2] or service


class RunningTotals:
    """Counts the growth of running totals into a counter labelled by ``outcome``.

    A long run reports its totals as they grow (each time it emits progress); what grew
    since the last report is counted, so ``/metrics`` follows the run, not just its end.
    """

    __slots__ = ("_counter", "_seen")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._seen: dict[str, int] = {}

    def update(self, **totals: int) -> None:
        """Count each outcome's growth since the last call."""
        for outcome, total in totals.items():
            grown = total - self._seen.get(outcome, 0)
            if grown > 0:
                self._counter.labels(outcome=outcome).inc(grown)
                self._seen[outcome] = total


def count_chunks(*, embedded: int, cached: int) -> None:
    """Count chunk texts embedded by the model and served from the embedding cache."""
    CHUNKS_EMBEDDED.inc(embedded)
    CHUNKS_CACHED.inc(cached)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# -- memory-adaptive batches of the indexing pipeline (indexing/memory.py) ---------------------

MEMORY_ADAPTATIONS = Counter(
    "rag_memory_adaptations",
    "Memory-adaptive batching decisions of indexing runs, by direction (shrink: available "
    "memory fell under the threshold; grow: it came back above it).",
    ["direction"],
    registry=REGISTRY,
)
EMBED_BATCH_SIZE = Gauge(
    "rag_embed_batch_size",
    "Texts per embedding request the indexing pipeline uses now (memory-adaptive).",
    registry=REGISTRY,
)
PIPELINE_QUEUE_DEPTH = Gauge(
    "rag_pipeline_queue_depth",
    "Capacity of each queue between indexing stages now (memory-adaptive).",
    registry=REGISTRY,
)


@asynccontextmanager
async def watch_event_loop_lag(interval: float = 0.5) -> AsyncIterator[None]:
    """Sample the running loop's lag into ``rag_event_loop_lag_seconds`` while the block runs.

    A task sleeps ``interval`` seconds again and again and records how much later than
    asked it woke: the time callbacks held the loop. It is cancelled when the block exits.

    Args:
        interval: Seconds between samples.
    """
    loop = asyncio.get_running_loop()

    async def sample() -> None:
        while True:
            asked = loop.time() + interval
            await asyncio.sleep(interval)
            EVENT_LOOP_LAG.observe(max(0.0, loop.time() - asked))

    task = asyncio.create_task(sample(), name="rag-event-loop-lag")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])  # never swallows a cancellation of the caller


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Serve the library's registry at ``http://host:port/metrics`` from a daemon thread.

    For long runs of a process that has no HTTP server of its own (``rag-async index
    --metrics-port``); the thread ends with the process.

    Args:
        port: TCP port; 0 picks a free one.
        host: Interface to bind.

    Returns:
        The port bound.

    Raises:
        ConfigurationError: The address cannot be bound (in use, not permitted).
    """
    try:
        server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
            "choose another --metrics-port (RAG_METRICS_PORT)"
        ) from exc
    return int(server.server_port)
