"""Embeddings: the offline local model, rate limiting and retries, the cache, the factory.

``ServiceLimiter`` lives in :mod:`langchain_rag_async.limits` (one limiter per external
service) and ``estimate_tokens`` in :mod:`langchain_rag_async._text`; both stay importable
from here, as before.
"""

from __future__ import annotations

from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.embeddings.cache import CachedEmbeddings, SQLiteEmbeddingCache
from langchain_rag_async.embeddings.factory import (
    build_base_embeddings,
    build_embeddings,
    embedding_limiter,
    embedding_model_id,
)
from langchain_rag_async.embeddings.local import LocalMiniLMEmbeddings
from langchain_rag_async.embeddings.rate_limited import RateLimitedEmbeddings
from langchain_rag_async.limits import ServiceLimiter

__all__ = (
    "CachedEmbeddings",
    "LocalMiniLMEmbeddings",
    "RateLimitedEmbeddings",
    "SQLiteEmbeddingCache",
    "ServiceLimiter",
    "build_base_embeddings",
    "build_embeddings",
    "embedding_limiter",
    "embedding_model_id",
    "estimate_tokens",
)
