"""The interface of a sparse index: what the indexing pipeline and the retrievers use of it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from langchain_core.documents import Document

__all__ = ("SparseIndex",)


@runtime_checkable
class SparseIndex(Protocol):
    """A sparse (BM25) index of chunks, kept under the same ids as the vector store.

    The indexing pipeline writes it (:meth:`aapply`) and repairs it from the vector store
    (:meth:`aids`, :meth:`acount`); the retrievers read it (:meth:`asearch`,
    :meth:`asearch_ids`, :meth:`aget_by_ids` and their sync twins). Its owner closes it.
    :class:`~langchain_rag_async.sparse_index.FTS5Index` is the implementation.
    """

    async def aapply(
        self, *, upserts: Sequence[Document] = (), deletes: Sequence[str] = ()
    ) -> None:
        """Delete ``deletes`` then upsert ``upserts``, in one transaction."""
        ...

    def apply(self, *, upserts: Sequence[Document] = (), deletes: Sequence[str] = ()) -> None:
        """Sync twin of :meth:`aapply`."""
        ...

    async def asearch(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        """The ``k`` best chunks for ``query`` with their relevance, best first."""
        ...

    def search(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[Document, float]]:
        """Sync twin of :meth:`asearch`."""
        ...

    async def asearch_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Like :meth:`asearch`, but ``(id, relevance)`` pairs."""
        ...

    def search_ids(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """Sync twin of :meth:`asearch_ids`."""
        ...

    async def aget_by_ids(self, ids: Iterable[str]) -> list[Document]:
        """The chunks stored under ``ids``, in the order asked; unknown ids skipped."""
        ...

    def get_by_ids(self, ids: Iterable[str]) -> list[Document]:
        """Sync twin of :meth:`aget_by_ids`."""
        ...

    async def acount(self) -> int:
        """How many chunks the index holds."""
        ...

    async def aids(self) -> set[str]:
        """The ids of all chunks."""
        ...

    async def aclose(self) -> None:
        """Close the index for good."""
        ...

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        ...
