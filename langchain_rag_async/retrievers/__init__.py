"""Retrieval: the SQLite FTS5 keyword index, rank fusion and the hybrid retriever."""

from __future__ import annotations

from langchain_rag_async.retrievers.fusion import (
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from langchain_rag_async.retrievers.hybrid import HybridRetriever
from langchain_rag_async.retrievers.sparse import FTS5Index, to_fts5_query

__all__ = [
    "FTS5Index",
    "HybridRetriever",
    "reciprocal_rank_fusion",
    "to_fts5_query",
    "weighted_score_fusion",
]
