"""Retrieval: the SQLite FTS5 keyword index and retriever, rank fusion, the hybrid retriever.

:class:`HybridRetriever` is imported on first use, so the keyword index alone does not
load the vector store stack (FAISS, langchain-community).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from langchain_rag_async.retrievers.fusion import (
    fuse_ranked_ids,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from langchain_rag_async.retrievers.keyword import FTS5Retriever
from langchain_rag_async.retrievers.sparse import FTS5Index, to_fts5_query

if TYPE_CHECKING:
    from langchain_rag_async.retrievers.hybrid import HybridRetriever

__all__ = [
    "FTS5Index",
    "FTS5Retriever",
    "HybridRetriever",
    "fuse_ranked_ids",
    "reciprocal_rank_fusion",
    "to_fts5_query",
    "weighted_score_fusion",
]

_LAZY = {"HybridRetriever": "langchain_rag_async.retrievers.hybrid"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
