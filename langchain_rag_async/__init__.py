"""langchain-rag-async: async-first RAG components for LangChain and LangGraph.

Public names are imported lazily on first use, so ``import langchain_rag_async`` stays
fast and does not load FAISS, onnxruntime or LangGraph until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_rag_async.answering import (
        AnswerContext,
        AnswerEvent,
        AnswerResult,
        aanswer,
        astream_answer,
        build_answer_graph,
    )
    from langchain_rag_async.chat_models import (
        ExtractiveChatModel,
        build_chat_model,
    )
    from langchain_rag_async.config import (
        EmbeddingConfig,
        LLMConfig,
        LoaderConfig,
        PipelineConfig,
        RAGConfig,
        RateLimitConfig,
        RetrievalConfig,
        RetryConfig,
        SplitterConfig,
    )
    from langchain_rag_async.embeddings import (
        CachedEmbeddings,
        LocalMiniLMEmbeddings,
        RateLimitedEmbeddings,
        ServiceLimiter,
        SQLiteEmbeddingCache,
        build_embeddings,
    )
    from langchain_rag_async.engine import (
        AsyncRAGEngine,
        RAGEngine,
    )
    from langchain_rag_async.errors import (
        ConfigurationError,
        EmbeddingError,
        EmbeddingModelMismatchError,
        GenerationError,
        IndexCorruptedError,
        IndexingError,
        IndexLockedError,
        IndexNotFoundError,
        LoadingError,
        RAGError,
        RetrievalError,
        VectorStoreError,
    )
    from langchain_rag_async.gc_tuning import (
        freeze_long_lived,
    )
    from langchain_rag_async.ids import (
        chunk_id,
    )
    from langchain_rag_async.indexing import (
        IndexingContext,
        IndexingSummary,
        SQLiteRecordManager,
        aindex_directory,
        build_indexing_graph,
        index_directory,
    )
    from langchain_rag_async.loaders import (
        AsyncDirectoryLoader,
    )
    from langchain_rag_async.prompts import (
        ANSWER_PROMPT,
    )
    from langchain_rag_async.retrievers import (
        FTS5Index,
        FTS5Retriever,
        HybridRetriever,
        fuse_ranked_ids,
        reciprocal_rank_fusion,
        weighted_score_fusion,
    )
    from langchain_rag_async.splitters import (
        RunnableTextSplitter,
    )
    from langchain_rag_async.vectorstores import (
        AsyncFAISS,
        CompactDocstore,
    )

_EXPORTS: dict[str, str] = {
    "ANSWER_PROMPT": "langchain_rag_async.prompts",
    "AnswerContext": "langchain_rag_async.answering",
    "AnswerEvent": "langchain_rag_async.answering",
    "AnswerResult": "langchain_rag_async.answering",
    "AsyncDirectoryLoader": "langchain_rag_async.loaders",
    "AsyncFAISS": "langchain_rag_async.vectorstores",
    "AsyncRAGEngine": "langchain_rag_async.engine",
    "CachedEmbeddings": "langchain_rag_async.embeddings",
    "CompactDocstore": "langchain_rag_async.vectorstores",
    "ConfigurationError": "langchain_rag_async.errors",
    "EmbeddingConfig": "langchain_rag_async.config",
    "EmbeddingError": "langchain_rag_async.errors",
    "EmbeddingModelMismatchError": "langchain_rag_async.errors",
    "ExtractiveChatModel": "langchain_rag_async.chat_models",
    "FTS5Index": "langchain_rag_async.retrievers",
    "FTS5Retriever": "langchain_rag_async.retrievers",
    "GenerationError": "langchain_rag_async.errors",
    "HybridRetriever": "langchain_rag_async.retrievers",
    "IndexCorruptedError": "langchain_rag_async.errors",
    "IndexLockedError": "langchain_rag_async.errors",
    "IndexNotFoundError": "langchain_rag_async.errors",
    "IndexingContext": "langchain_rag_async.indexing",
    "IndexingError": "langchain_rag_async.errors",
    "IndexingSummary": "langchain_rag_async.indexing",
    "LLMConfig": "langchain_rag_async.config",
    "LoaderConfig": "langchain_rag_async.config",
    "LoadingError": "langchain_rag_async.errors",
    "LocalMiniLMEmbeddings": "langchain_rag_async.embeddings",
    "PipelineConfig": "langchain_rag_async.config",
    "RAGConfig": "langchain_rag_async.config",
    "RAGEngine": "langchain_rag_async.engine",
    "RAGError": "langchain_rag_async.errors",
    "RateLimitConfig": "langchain_rag_async.config",
    "RateLimitedEmbeddings": "langchain_rag_async.embeddings",
    "RetrievalConfig": "langchain_rag_async.config",
    "RetrievalError": "langchain_rag_async.errors",
    "RetryConfig": "langchain_rag_async.config",
    "RunnableTextSplitter": "langchain_rag_async.splitters",
    "SQLiteEmbeddingCache": "langchain_rag_async.embeddings",
    "SQLiteRecordManager": "langchain_rag_async.indexing",
    "ServiceLimiter": "langchain_rag_async.embeddings",
    "SplitterConfig": "langchain_rag_async.config",
    "VectorStoreError": "langchain_rag_async.errors",
    "aanswer": "langchain_rag_async.answering",
    "aindex_directory": "langchain_rag_async.indexing",
    "astream_answer": "langchain_rag_async.answering",
    "build_answer_graph": "langchain_rag_async.answering",
    "build_chat_model": "langchain_rag_async.chat_models",
    "build_embeddings": "langchain_rag_async.embeddings",
    "build_indexing_graph": "langchain_rag_async.indexing",
    "chunk_id": "langchain_rag_async.splitters",
    "freeze_long_lived": "langchain_rag_async.gc_tuning",
    "fuse_ranked_ids": "langchain_rag_async.retrievers",
    "index_directory": "langchain_rag_async.indexing",
    "reciprocal_rank_fusion": "langchain_rag_async.retrievers",
    "weighted_score_fusion": "langchain_rag_async.retrievers",
}

__all__ = [
    "ANSWER_PROMPT",
    "AnswerContext",
    "AnswerEvent",
    "AnswerResult",
    "AsyncDirectoryLoader",
    "AsyncFAISS",
    "AsyncRAGEngine",
    "CachedEmbeddings",
    "CompactDocstore",
    "ConfigurationError",
    "EmbeddingConfig",
    "EmbeddingError",
    "EmbeddingModelMismatchError",
    "ExtractiveChatModel",
    "FTS5Index",
    "FTS5Retriever",
    "GenerationError",
    "HybridRetriever",
    "IndexCorruptedError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexingContext",
    "IndexingError",
    "IndexingSummary",
    "LLMConfig",
    "LoaderConfig",
    "LoadingError",
    "LocalMiniLMEmbeddings",
    "PipelineConfig",
    "RAGConfig",
    "RAGEngine",
    "RAGError",
    "RateLimitConfig",
    "RateLimitedEmbeddings",
    "RetrievalConfig",
    "RetrievalError",
    "RetryConfig",
    "RunnableTextSplitter",
    "SQLiteEmbeddingCache",
    "SQLiteRecordManager",
    "ServiceLimiter",
    "SplitterConfig",
    "VectorStoreError",
    "aanswer",
    "aindex_directory",
    "astream_answer",
    "build_answer_graph",
    "build_chat_model",
    "build_embeddings",
    "build_indexing_graph",
    "chunk_id",
    "freeze_long_lived",
    "fuse_ranked_ids",
    "index_directory",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'langchain_rag_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
