"""Retrieval: the sparse (FTS5) retriever, rank fusion, the hybrid retriever.

:class:`HybridRetriever` is imported on first use, so the sparse retriever alone does not
load the vector store stack (FAISS, langchain-community). :class:`FTS5Index` and
:func:`to_fts5_query` live in :mod:`langchain_rag_async.sparse_index`; they are
re-exported here for compatibility.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from langchain_rag_async.retrievers.fusion import (
    fuse_ranked_ids,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from langchain_rag_async.retrievers.sparse import FTS5Retriever
from langchain_rag_async.sparse_index import FTS5Index, to_fts5_query

if TYPE_CHECKING:
    from langchain_rag_async.retrievers.hybrid import HybridRetriever

__all__ = (
    "FTS5Index",
    "FTS5Retriever",
    "HybridRetriever",
    "fuse_ranked_ids",
    "reciprocal_rank_fusion",
    "to_fts5_query",
    "weighted_score_fusion",
)

_LAZY = {"HybridRetriever": "langchain_rag_async.retrievers.hybrid"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
