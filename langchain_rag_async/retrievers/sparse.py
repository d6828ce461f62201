"""FTS5Retriever: sparse (BM25) retrieval over an :class:`FTS5Index`, as a LangChain retriever.

The sparse side of :class:`~langchain_rag_async.retrievers.HybridRetriever` on its own: a
drop-in for LangChain's ``BM25Retriever`` whose index lives in SQLite (persistent,
incremental, shared with the indexing pipeline) instead of being rebuilt in memory. It
does not load the vector-store stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Self

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import PrivateAttr

from langchain_rag_async._checks import (
    check_count,
    check_filter,
    check_query,
    check_search_kwargs,
)
from langchain_rag_async.aio.deadline import check_timeout, deadline
from langchain_rag_async.config import RetrievalConfig
from langchain_rag_async.errors import RetrievalError, RetrievalTimeoutError
from langchain_rag_async.ids import with_ids
from langchain_rag_async.retrievers._owned import ChecksSettings, ClosesOwnedIndex
from langchain_rag_async.sparse_index import FTS5Index

__all__ = ("FTS5Retriever",)

_SEARCH_KWARGS = frozenset({"k", "filter", "timeout"})


def _with_score(doc: Document, score: float) -> Document:
    """The hit, its BM25 relevance in ``metadata["scores"]["sparse"]`` (as the hybrid's)."""
    doc.metadata["scores"] = {"sparse": score}
    return doc


_DEFAULTS = RetrievalConfig()  # the one source of retrieval defaults


class FTS5Retriever(ChecksSettings, ClosesOwnedIndex, BaseRetriever):
    """Chunks ranked by BM25 over an :class:`FTS5Index` (SQLite FTS5, porter stemming).

    ``k``, ``filter`` and ``timeout`` may also be given per call
    (``retriever.invoke(q, k=3)``). A search that outlives ``timeout`` is cancelled and
    raises :class:`~langchain_rag_async.errors.RetrievalTimeoutError` (the sync twin raises
    it once SQLite answers: a sync query cannot be interrupted). The
    question may hold any characters: FTS5 syntax is escaped. Each document carries its
    BM25 relevance in ``metadata["scores"] = {"sparse": ...}``; chunks sharing no word
    with the question are not returned, so fewer than ``k`` documents may come back.

    Lifecycle: a retriever over an index you pass in does not own it. One built by
    :meth:`from_documents` owns its in-memory index: close it with :meth:`aclose`
    (``async with``) or :meth:`close`.

    Example:
        .. code-block:: python

            retriever = FTS5Retriever(index=FTS5Index.in_index_dir(".rag-index"), k=5)
            docs = await retriever.ainvoke("how do lifetimes work?")
    """

    index: FTS5Index
    """The sparse index searched."""
    k: int = _DEFAULTS.k
    """Documents returned (at most); ``RetrievalConfig().k`` by default."""
    filter: dict[str, Any] | None = None
    """Exact-match metadata filter: a scalar, a list of scalars ("any of"), or ``None``."""
    timeout: float | None = None
    """Seconds a search may take; ``None``: no limit."""

    _owns_index: bool = PrivateAttr(default=False)
    _closed: bool = PrivateAttr(default=False)

    def _check_settings(self) -> None:
        check_count("k", self.k)
        self.filter = check_filter(self.filter)
        self.timeout = check_timeout(self.timeout)

    @classmethod
    def from_documents(
        cls, documents: Iterable[Document], *, k: int = _DEFAULTS.k, **kwargs: Any
    ) -> Self:
        """Build a retriever over ``documents`` in a new in-memory index it owns (blocking).

        Documents without an id get a deterministic one. In async code, use
        :meth:`afrom_documents`.
        """
        docs = with_ids(documents)
        index = FTS5Index()
        try:
            index.upsert(docs)
            retriever = cls(index=index, k=k, **kwargs)
        except BaseException:
            index.close()
            raise
        retriever._owns_index = True
        return retriever

    @classmethod
    async def afrom_documents(
        cls, documents: Iterable[Document], *, k: int = _DEFAULTS.k, **kwargs: Any
    ) -> Self:
        """Async twin of :meth:`from_documents`."""
        docs = with_ids(documents)
        index = FTS5Index()
        try:
            await index.aupsert(docs)
            retriever = cls(index=index, k=k, **kwargs)
        except BaseException:
            await index.aclose()
            raise
        retriever._owns_index = True
        return retriever

    def _release_owned_index(self) -> FTS5Index | None:
        if not self._owns_index or self._closed:
            return None
        self._closed = True
        return self.index

    def _arguments(
        self, query: str, overrides: dict[str, Any]
    ) -> tuple[str, int, Any, float | None]:
        if self._closed:
            raise RetrievalError("this FTS5Retriever was closed; build a new one")
        check_search_kwargs("FTS5Retriever", overrides, _SEARCH_KWARGS)
        k = check_count("k", overrides.get("k", self.k))
        filter_ = check_filter(overrides["filter"] if "filter" in overrides else self.filter)
        timeout = check_timeout(overrides["timeout"] if "timeout" in overrides else self.timeout)
        return check_query(query), k, filter_, timeout

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        question, k, filter_, timeout = self._arguments(query, kwargs)
        async with deadline(timeout, lambda seconds: _timed_out(question, seconds)):
            hits = await self.index.asearch(question, k, filter=filter_)
        return [_with_score(doc, score) for doc, score in hits]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        question, k, filter_, timeout = self._arguments(query, kwargs)
        started = time.monotonic()
        hits = self.index.search(question, k, filter=filter_)
        if timeout is not None and time.monotonic() - started > timeout:
            raise _timed_out(question, timeout)
        return [_with_score(doc, score) for doc, score in hits]


def _timed_out(question: str, seconds: float) -> RetrievalTimeoutError:
    return RetrievalTimeoutError(
        f"the BM25 search for {question!r} did not finish within {seconds:g} s; "
        "allow more time (timeout=)",
        timeout=seconds,
    )
