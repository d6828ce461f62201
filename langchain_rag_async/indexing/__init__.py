"""Incremental indexing: record manager, planning, the overlapped pipeline and its graph.

Names are imported on first use, so a submodule (``indexing.events``, ``indexing.doctor``,
``indexing.lock``) can be imported without loading LangGraph and the indexing graph.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_rag_async.indexing.api import aindex_directory, index_directory
    from langchain_rag_async.indexing.convert import (
        ConversionSummary,
        aconvert_langchain_faiss,
        convert_langchain_faiss,
    )
    from langchain_rag_async.indexing.events import (
        FailedFile,
        IndexingProgress,
        IndexingSummary,
    )
    from langchain_rag_async.indexing.graph import build_indexing_graph
    from langchain_rag_async.indexing.record_manager import FileRecord, SQLiteRecordManager
    from langchain_rag_async.indexing.resources import index_model_id
    from langchain_rag_async.indexing.steps import IndexingContext

__all__ = (
    "ConversionSummary",
    "FailedFile",
    "FileRecord",
    "IndexingContext",
    "IndexingProgress",
    "IndexingSummary",
    "SQLiteRecordManager",
    "aconvert_langchain_faiss",
    "aindex_directory",
    "build_indexing_graph",
    "convert_langchain_faiss",
    "index_directory",
    "index_model_id",
)

_LAZY = {
    "ConversionSummary": "langchain_rag_async.indexing.convert",
    "aconvert_langchain_faiss": "langchain_rag_async.indexing.convert",
    "convert_langchain_faiss": "langchain_rag_async.indexing.convert",
    "index_model_id": "langchain_rag_async.indexing.resources",
    "FailedFile": "langchain_rag_async.indexing.events",
    "FileRecord": "langchain_rag_async.indexing.record_manager",
    "IndexingContext": "langchain_rag_async.indexing.steps",
    "IndexingProgress": "langchain_rag_async.indexing.events",
    "IndexingSummary": "langchain_rag_async.indexing.events",
    "SQLiteRecordManager": "langchain_rag_async.indexing.record_manager",
    "aindex_directory": "langchain_rag_async.indexing.api",
    "build_indexing_graph": "langchain_rag_async.indexing.graph",
    "index_directory": "langchain_rag_async.indexing.api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
