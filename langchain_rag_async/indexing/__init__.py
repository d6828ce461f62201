"""Incremental indexing: record manager, planning, the overlapped pipeline and its graph."""

from __future__ import annotations

from langchain_rag_async.indexing.api import aindex_directory, index_directory
from langchain_rag_async.indexing.events import FailedFile, IndexingProgress, IndexingSummary
from langchain_rag_async.indexing.graph import IndexingContext, build_indexing_graph
from langchain_rag_async.indexing.record_manager import FileRecord, SQLiteRecordManager

__all__ = (
    "FailedFile",
    "FileRecord",
    "IndexingContext",
    "IndexingProgress",
    "IndexingSummary",
    "SQLiteRecordManager",
    "aindex_directory",
    "build_indexing_graph",
    "index_directory",
)
