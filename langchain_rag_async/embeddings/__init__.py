"""Embeddings: the offline local model, rate limiting and retries, the cache, the factory.

``ServiceLimiter`` lives in :mod:`langchain_rag_async.limits` (one limiter per external
service) and ``estimate_tokens`` in :mod:`langchain_rag_async._text`; both stay importable
from here, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.embeddings.cache import CachedEmbeddings, SQLiteEmbeddingCache
from langchain_rag_async.embeddings.factory import (
    build_base_embeddings,
    build_embeddings,
    embedding_limiter,
    embedding_model_id,
)
from langchain_rag_async.embeddings.rate_limited import RateLimitedEmbeddings
from langchain_rag_async.limits import ServiceLimiter

if TYPE_CHECKING:
    from langchain_rag_async.embeddings.local import LocalMiniLMEmbeddings

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


def __getattr__(name: str) -> object:
    """Import the local model's module at its first use (``LocalMiniLMEmbeddings``).

    Not every importer of the package needs it: an OpenAI run never does (about 1 MiB of
    RSS; docs/benchmarks.md, "Indexing memory against LangChain").
    """
    if name == "LocalMiniLMEmbeddings":
        from langchain_rag_async.embeddings.local import LocalMiniLMEmbeddings

        return LocalMiniLMEmbeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
