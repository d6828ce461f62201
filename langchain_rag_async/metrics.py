"""Prometheus metrics of the library, in one registry the library owns (never the global one).

The library counts what it does (files indexed, embedding requests, the seconds of each
query stage); the server adds what only it sees (time to first token, requests in
flight) and exposes the registry at ``GET /metrics``. Labels take values from small fixed
sets (outcomes, providers, stage names), never a path or a question.

Metrics:
    ``rag_documents_processed_total{outcome}``: files handled by indexing runs
        (``indexed``, ``skipped``, ``failed``, ``deleted``).
    ``rag_embedding_requests_total{provider, outcome}``: requests to the embedding
        service (``ok``, ``429``, ``error``, ``retry``: a retry scheduled after a failure).
    ``rag_query_latency_seconds{stage}``: ``embed`` (the query's vector), ``dense`` (the
        vector search, the query's embedding included), ``sparse``, ``fuse`` (fusion and
        building the winners), ``generate`` (the chat model's answer).
    ``rag_time_to_first_token_seconds``: from an answer request to its first token.
    ``rag_requests_in_flight{endpoint}``: HTTP requests being served.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = (
    "DOCUMENTS_PROCESSED",
    "EMBEDDING_REQUESTS",
    "QUERY_LATENCY",
    "REGISTRY",
    "REQUESTS_IN_FLIGHT",
    "TIME_TO_FIRST_TOKEN",
    "exposition",
    "provider_of",
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
REQUESTS_IN_FLIGHT = Gauge(
    "rag_requests_in_flight",
    "HTTP requests being served, by endpoint.",
    ["endpoint"],
    registry=REGISTRY,
)


def provider_of(service: str) -> str:
    """The provider part of a limiter's service name (``"embeddings:openai"`` → ``openai``)."""
    return service.rpartition(":")[2] or service


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# -- memory-adaptive batches of the indexing pipeline (indexing/memory.py) ---------------------
# (to add to __all__ above at merge: EMBED_BATCH_SIZE, MEMORY_ADAPTATIONS, PIPELINE_QUEUE_DEPTH)

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
