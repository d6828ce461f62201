"""A store that runs hybrid search itself: both sides and the fusion, in one round trip.

:class:`~langchain_rag_async.retrievers.HybridRetriever` over such a store and no sparse
index hands the whole search to it (the PostgreSQL store runs it as one SQL statement:
:mod:`langchain_rag_async.postgres.hybrid`); the retriever's settings, per-call
arguments, timeout, tracing and ``metadata["scores"]`` stay the same.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from langchain_core.documents import Document

from langchain_rag_async.config import RetrievalConfig

__all__ = ("HybridSearchStore",)


@runtime_checkable
class HybridSearchStore(Protocol):
    """Dense and keyword search of the same chunks, fused by the store itself."""

    async def ahybrid_search(
        self,
        query: str,
        *,
        k: int,
        fetch_k: int,
        filter: dict[str, Any] | None,
        settings: RetrievalConfig,
    ) -> list[Document]:
        """The ``k`` best chunks by ``settings``' fusion of ``fetch_k`` candidates a side.

        Each document carries ``metadata["scores"] = {"dense", "sparse", "fused"}``, as
        :func:`~langchain_rag_async.retrievers.fusion.fuse_ranked_ids` computes them.
        """
        ...

    def hybrid_search(
        self,
        query: str,
        *,
        k: int,
        fetch_k: int,
        filter: dict[str, Any] | None,
        settings: RetrievalConfig,
    ) -> list[Document]:
        """Sync twin of :meth:`ahybrid_search`."""
        ...
