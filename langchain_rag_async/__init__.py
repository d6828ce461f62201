"""langchain-rag-async: async-first RAG components for LangChain and LangGraph.

Public names are imported lazily on first use, so ``import langchain_rag_async`` stays
fast and does not load FAISS, onnxruntime or LangGraph until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; test_imports checks it matches _EXPORTS
    from langchain_rag_async.answering import AnswerContext as AnswerContext
    from langchain_rag_async.answering import AnswerEvent as AnswerEvent
    from langchain_rag_async.answering import AnswerResult as AnswerResult
    from langchain_rag_async.answering import aanswer as aanswer
    from langchain_rag_async.answering import astream_answer as astream_answer
    from langchain_rag_async.answering import build_answer_graph as build_answer_graph
    from langchain_rag_async.chat_models import ExtractiveChatModel as ExtractiveChatModel
    from langchain_rag_async.chat_models import build_chat_model as build_chat_model
    from langchain_rag_async.config import EmbeddingConfig as EmbeddingConfig
    from langchain_rag_async.config import LLMConfig as LLMConfig
    from langchain_rag_async.config import LoaderConfig as LoaderConfig
    from langchain_rag_async.config import PipelineConfig as PipelineConfig
    from langchain_rag_async.config import RAGConfig as RAGConfig
    from langchain_rag_async.config import RateLimitConfig as RateLimitConfig
    from langchain_rag_async.config import RetrievalConfig as RetrievalConfig
    from langchain_rag_async.config import RetryConfig as RetryConfig
    from langchain_rag_async.config import SplitterConfig as SplitterConfig
    from langchain_rag_async.embeddings import CachedEmbeddings as CachedEmbeddings
    from langchain_rag_async.embeddings import LocalMiniLMEmbeddings as LocalMiniLMEmbeddings
    from langchain_rag_async.embeddings import RateLimitedEmbeddings as RateLimitedEmbeddings
    from langchain_rag_async.embeddings import SQLiteEmbeddingCache as SQLiteEmbeddingCache
    from langchain_rag_async.embeddings import build_embeddings as build_embeddings
    from langchain_rag_async.engine import AsyncRAGEngine as AsyncRAGEngine
    from langchain_rag_async.engine import RAGEngine as RAGEngine
    from langchain_rag_async.errors import ConfigurationError as ConfigurationError
    from langchain_rag_async.errors import EmbeddingError as EmbeddingError
    from langchain_rag_async.errors import (
        EmbeddingModelMismatchError as EmbeddingModelMismatchError,
    )
    from langchain_rag_async.errors import GenerationError as GenerationError
    from langchain_rag_async.errors import IndexCorruptedError as IndexCorruptedError
    from langchain_rag_async.errors import IndexingError as IndexingError
    from langchain_rag_async.errors import IndexLockedError as IndexLockedError
    from langchain_rag_async.errors import IndexNotFoundError as IndexNotFoundError
    from langchain_rag_async.errors import LoadingError as LoadingError
    from langchain_rag_async.errors import RAGError as RAGError
    from langchain_rag_async.errors import RAGTimeoutError as RAGTimeoutError
    from langchain_rag_async.errors import RetrievalError as RetrievalError
    from langchain_rag_async.errors import VectorStoreError as VectorStoreError
    from langchain_rag_async.gc_tuning import freeze_long_lived as freeze_long_lived
    from langchain_rag_async.ids import chunk_id as chunk_id
    from langchain_rag_async.indexing import ConversionSummary as ConversionSummary
    from langchain_rag_async.indexing import IndexingContext as IndexingContext
    from langchain_rag_async.indexing import IndexingSummary as IndexingSummary
    from langchain_rag_async.indexing import SQLiteRecordManager as SQLiteRecordManager
    from langchain_rag_async.indexing import aconvert_langchain_faiss as aconvert_langchain_faiss
    from langchain_rag_async.indexing import aindex_directory as aindex_directory
    from langchain_rag_async.indexing import build_indexing_graph as build_indexing_graph
    from langchain_rag_async.indexing import convert_langchain_faiss as convert_langchain_faiss
    from langchain_rag_async.indexing import index_directory as index_directory
    from langchain_rag_async.indexing import index_model_id as index_model_id
    from langchain_rag_async.limits import ServiceLimiter as ServiceLimiter
    from langchain_rag_async.loaders import AsyncDirectoryLoader as AsyncDirectoryLoader
    from langchain_rag_async.prompts import ANSWER_PROMPT as ANSWER_PROMPT
    from langchain_rag_async.retrievers import FTS5Index as FTS5Index
    from langchain_rag_async.retrievers import FTS5Retriever as FTS5Retriever
    from langchain_rag_async.retrievers import HybridRetriever as HybridRetriever
    from langchain_rag_async.retrievers import fuse_ranked_ids as fuse_ranked_ids
    from langchain_rag_async.retrievers import reciprocal_rank_fusion as reciprocal_rank_fusion
    from langchain_rag_async.retrievers import weighted_score_fusion as weighted_score_fusion
    from langchain_rag_async.splitters import RunnableTextSplitter as RunnableTextSplitter
    from langchain_rag_async.vectorstores import AsyncFAISS as AsyncFAISS
    from langchain_rag_async.vectorstores import CompactDocstore as CompactDocstore

_EXPORTS: dict[str, tuple[str, ...]] = {
    "langchain_rag_async.answering": (
        "AnswerContext",
        "AnswerEvent",
        "AnswerResult",
        "aanswer",
        "astream_answer",
        "build_answer_graph",
    ),
    "langchain_rag_async.chat_models": (
        "ExtractiveChatModel",
        "build_chat_model",
    ),
    "langchain_rag_async.config": (
        "EmbeddingConfig",
        "LLMConfig",
        "LoaderConfig",
        "PipelineConfig",
        "RAGConfig",
        "RateLimitConfig",
        "RetrievalConfig",
        "RetryConfig",
        "SplitterConfig",
    ),
    "langchain_rag_async.embeddings": (
        "CachedEmbeddings",
        "LocalMiniLMEmbeddings",
        "RateLimitedEmbeddings",
        "SQLiteEmbeddingCache",
        "build_embeddings",
    ),
    "langchain_rag_async.engine": (
        "AsyncRAGEngine",
        "RAGEngine",
    ),
    "langchain_rag_async.errors": (
        "ConfigurationError",
        "EmbeddingError",
        "EmbeddingModelMismatchError",
        "GenerationError",
        "IndexCorruptedError",
        "IndexLockedError",
        "IndexNotFoundError",
        "IndexingError",
        "LoadingError",
        "RAGError",
        "RAGTimeoutError",
        "RetrievalError",
        "VectorStoreError",
    ),
    "langchain_rag_async.gc_tuning": ("freeze_long_lived",),
    "langchain_rag_async.indexing": (
        "ConversionSummary",
        "IndexingContext",
        "IndexingSummary",
        "SQLiteRecordManager",
        "aconvert_langchain_faiss",
        "aindex_directory",
        "build_indexing_graph",
        "convert_langchain_faiss",
        "index_directory",
        "index_model_id",
    ),
    "langchain_rag_async.ids": ("chunk_id",),
    "langchain_rag_async.limits": ("ServiceLimiter",),
    "langchain_rag_async.loaders": ("AsyncDirectoryLoader",),
    "langchain_rag_async.prompts": ("ANSWER_PROMPT",),
    "langchain_rag_async.retrievers": (
        "FTS5Index",
        "FTS5Retriever",
        "HybridRetriever",
        "fuse_ranked_ids",
        "reciprocal_rank_fusion",
        "weighted_score_fusion",
    ),
    "langchain_rag_async.splitters": ("RunnableTextSplitter",),
    "langchain_rag_async.vectorstores": (
        "AsyncFAISS",
        "CompactDocstore",
    ),
}
"""The public names, by the module they are imported from on first use."""

_MODULE_OF: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = tuple(sorted(_MODULE_OF))
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'langchain_rag_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
