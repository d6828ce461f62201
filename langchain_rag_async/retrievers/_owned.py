"""Closing for retrievers that may own their sparse index (those built by ``from_documents``)."""

from __future__ import annotations

from langchain_rag_async._closing import Closing
from langchain_rag_async.sparse_index import FTS5Index

__all__ = ("ClosesOwnedIndex",)


class ClosesOwnedIndex(Closing):
    """``aclose``/``close`` (and ``async with``/``with``) close the index if it is owned.

    Subclasses implement :meth:`_release_owned_index`: return the owned index the first
    time (marking the retriever closed), ``None`` when it is not owned or already closed.
    """

    __slots__ = ()

    def _release_owned_index(self) -> FTS5Index | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the index this retriever owns; a no-op for one passed in (idempotent)."""
        index = self._release_owned_index()
        if index is not None:
            await index.aclose()

    def close(self) -> None:
        """Sync twin of :meth:`aclose`."""
        index = self._release_owned_index()
        if index is not None:
            index.close()
