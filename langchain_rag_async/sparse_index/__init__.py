"""The sparse index: BM25 over the chunks (SQLite FTS5), the store behind sparse retrieval.

A store layer like :mod:`langchain_rag_async.vectorstores`: the indexing pipeline writes
it and the retrievers read it through the :class:`SparseIndex` interface.
"""

from __future__ import annotations

from langchain_rag_async.sparse_index.base import SparseIndex
from langchain_rag_async.sparse_index.fts5 import (
    SPARSE_INDEX_FILENAME,
    FTS5Index,
    SealState,
    seal_sparse,
    to_fts5_query,
)

__all__ = (
    "SPARSE_INDEX_FILENAME",
    "FTS5Index",
    "SealState",
    "SparseIndex",
    "seal_sparse",
    "to_fts5_query",
)
