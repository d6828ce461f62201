"""Embeddings: the offline local model, the per-service limiter, rate limiting, the cache."""

from __future__ import annotations

from langchain_rag_async.embeddings.cache import CachedEmbeddings, SQLiteEmbeddingCache
from langchain_rag_async.embeddings.factory import (
    build_base_embeddings,
    build_embeddings,
    embedding_model_id,
)
from langchain_rag_async.embeddings.limits import ServiceLimiter, estimate_tokens
from langchain_rag_async.embeddings.local import LocalMiniLMEmbeddings
from langchain_rag_async.embeddings.rate_limited import RateLimitedEmbeddings

__all__ = [
    "CachedEmbeddings",
    "LocalMiniLMEmbeddings",
    "RateLimitedEmbeddings",
    "SQLiteEmbeddingCache",
    "ServiceLimiter",
    "build_base_embeddings",
    "build_embeddings",
    "embedding_model_id",
    "estimate_tokens",
]
