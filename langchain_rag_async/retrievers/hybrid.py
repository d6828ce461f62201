"""HybridRetriever: dense (vector store) and sparse (FTS5 BM25) search run concurrently, then fused.

The async path is the real one: both searches run at once in an :class:`asyncio.TaskGroup`.
The sync twin calls the stores' own sync methods one after the other. Everything that does
no I/O (argument checks, filter translation, fusion) lives in plain helpers both twins call.

Over an :class:`~langchain_rag_async.vectorstores.AsyncFAISS` store, both sides return ids
and scores only (``asearch_ids``), the fusion ranks ids, and documents are read for the
``k`` winners alone (``AsyncFAISS.lookup``, falling back to the FTS5 index for a chunk the
store lacks). Any other vector store is searched for documents, as LangChain does.
"""

from __future__ import annotations

import math
import time
from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Sequence,
    Sized,
)
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self, TypeGuard, TypeVar

from langchain_community.vectorstores.faiss import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from opentelemetry.trace import Span
from pydantic import PrivateAttr

from langchain_rag_async._checks import (
    check_count,
    check_filter,
    check_query,
    check_search_kwargs,
)
from langchain_rag_async.aio import both as _both
from langchain_rag_async.aio.deadline import check_timeout, deadline
from langchain_rag_async.config import FusionMethod, RetrievalConfig
from langchain_rag_async.errors import (
    ConfigurationError,
    RAGError,
    RetrievalError,
    RetrievalTimeoutError,
)
from langchain_rag_async.ids import with_ids
from langchain_rag_async.metrics import QUERY_LATENCY
from langchain_rag_async.observability import get_logger, span
from langchain_rag_async.retrievers._owned import ChecksSettings, ClosesOwnedIndex
from langchain_rag_async.retrievers.fusion import (
    FusedHit,
    RankedIds,
    RankedList,
    fuse_ranked_ids,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from langchain_rag_async.retrievers.hybrid_store import HybridSearchStore
from langchain_rag_async.sparse_index import FTS5Index
from langchain_rag_async.vectorstores import AsyncFAISS, metadata_filter

__all__ = ("FAISS_FILTER_FETCH_FACTOR", "HybridRetriever")

FAISS_FILTER_FETCH_FACTOR = 10
"""With a filter, a FAISS store scans this many times ``fetch_k`` nearest vectors.

FAISS flat indexes cannot filter inside the search: LangChain's FAISS fetches ``fetch_k``
neighbours, then drops those the filter rejects. The sparse side filters inside SQL.
"""

_DEFAULTS = RetrievalConfig()
"""The one source of the retriever's defaults (``k``, ``fetch_k``, fusion, weights, ``rrf_c``)."""
_SEARCH_KWARGS = frozenset({"k", "fetch_k", "filter", "timeout"})
_log = get_logger(__name__)
_T = TypeVar("_T")
_Hits = TypeVar("_Hits", bound=Sized)
_U = TypeVar("_U")


# --------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True, slots=True)
class _Plan:
    """One search, checked: what to ask each side and how many results to keep."""

    query: str
    k: int
    per_side: int
    filter: dict[str, Any] | None
    timeout: float | None = None

    def timed_out(self, seconds: float) -> RetrievalTimeoutError:
        """The error of a search that outlived ``seconds``."""
        return RetrievalTimeoutError(
            f"the hybrid search for {self.query!r} did not finish within {seconds:g} s; "
            "allow more time (timeout=) or ask for fewer candidates (fetch_k=)",
            timeout=seconds,
        )


def _dense_kwargs(store: VectorStore, plan: _Plan) -> dict[str, Any]:
    """Keyword arguments of the dense relevance search (filter only when there is one)."""
    if plan.filter is None:
        return {}
    if isinstance(store, FAISS):
        return {"filter": plan.filter, "fetch_k": plan.per_side * FAISS_FILTER_FETCH_FACTOR}
    return {"filter": plan.filter}


_NO_RELEVANCE = (
    "{kind} gives no relevance scores (it defines no _select_relevance_score_fn), which "
    "weighted fusion (the default) needs; pass fusion='rrf' (ranks only), or pass the "
    "store a relevance_score_fn"
)


def _gives_relevance(store: VectorStore) -> bool:
    """Whether ``store`` maps its scores to relevance.

    AsyncFAISS always does (:attr:`AsyncFAISS.relevance_score_fn`). For any other store,
    LangChain offers no public test: ``similarity_search_with_relevance_scores`` calls the
    store's ``_select_relevance_score_fn`` hook, which raises ``NotImplementedError`` when
    the store has none. Asking the hook, here and nowhere else, answers without searching.
    """
    if isinstance(store, AsyncFAISS):
        return True
    try:
        store._select_relevance_score_fn()
    except NotImplementedError:
        return False
    return True


def _search_error(side: str, query: str, exc: Exception) -> RetrievalError:
    """Wrap a foreign error of one side (the library's own errors are raised unchanged)."""
    return RetrievalError(
        f"{side} search for {query!r} failed: {type(exc).__name__}: {exc}. Check that the "
        f"{side} index is open and built with the configured model, then retry."
    )


def _ids_kwargs(plan: _Plan) -> dict[str, Any]:
    """Arguments of ``AsyncFAISS.(a)search_ids`` for this plan."""
    fetch_k = plan.per_side * FAISS_FILTER_FETCH_FACTOR
    return {"k": plan.per_side, "filter": plan.filter, "fetch_k": fetch_k}


@contextmanager
def _side(side: str, plan: _Plan) -> Iterator[Span]:
    """One side's search: in its own span; a foreign error raised as a RetrievalError."""
    with span(side, k=plan.per_side) as current, QUERY_LATENCY.labels(stage=side).time():
        try:
            yield current
        except RAGError:
            raise
        except Exception as exc:
            raise _search_error(side, plan.query, exc) from exc


def _counted(current: Span, hits: _Hits) -> _Hits:
    current.set_attribute("rag.results", len(hits))
    return hits


def _ranks_ids(store: VectorStore) -> TypeGuard[AsyncFAISS]:
    """Whether to rank ids and build only the winners (AsyncFAISS, in-memory docstore)."""
    return isinstance(store, AsyncFAISS) and store.docstore_in_memory


def _scored(
    batch: Sequence[FusedHit],
    found: Sequence[Document | None],
    keep: Callable[[dict[str, Any]], bool] | None,
) -> list[Document]:
    """Each hit's document from the store with its scores attached.

    Hits the store lacks (another generation's chunks: see :meth:`HybridRetriever._choose`)
    or that fail ``keep`` (the filter, checked again: a write may have landed since the
    search) are left out. The documents are fresh copies, so the scores are set in place.
    """
    chosen = []
    for hit, document in zip(batch, found, strict=True):
        if document is not None and (keep is None or keep(document.metadata)):
            document.metadata["scores"] = dict(hit.scores)
            chosen.append(document)
    return chosen


# --------------------------------------------------------------------------- the retriever


class HybridRetriever(ChecksSettings, ClosesOwnedIndex, BaseRetriever):
    """Dense and sparse (BM25) search, run concurrently and fused into one ranking.

    The dense side is any :class:`~langchain_core.vectorstores.VectorStore` with relevance
    scores (normally :class:`~langchain_rag_async.vectorstores.AsyncFAISS`); the sparse
    side is an :class:`~langchain_rag_async.retrievers.FTS5Index`. Each side returns
    ``fetch_k`` candidates (at least ``k``); they are fused by reciprocal rank fusion
    (``sum weight / (rrf_c + rank)``) or by a weighted sum of min-max normalised scores,
    deduplicated by document id (both indexes must use the same ids, as the indexing
    pipeline does), and the best ``k`` come back. Every document carries
    ``metadata["scores"] = {"dense": relevance or None, "sparse": bm25 or None,
    "fused": fused}``.

    Defaults come from :class:`~langchain_rag_async.config.RetrievalConfig` (one source for
    the retriever, the engine and the CLI): ``k=6``, ``fetch_k=30`` and, deliberately,
    weighted fusion, which measured best on SciFact (docs/benchmarks.md), where LangChain's
    ``EnsembleRetriever`` defaults to rank fusion. Weighted fusion needs relevance scores
    from the dense store: a store without them (LangChain's ``InMemoryVectorStore``) is
    refused with a :class:`~langchain_rag_async.errors.ConfigurationError` that says to
    pass ``fusion="rrf"``. With reciprocal rank fusion, which needs only ranks, such a
    store works; its ``"dense"`` score is then the store's own
    (``similarity_search_with_score``).

    An AsyncFAISS store with an in-memory docstore (the default) is searched with
    ``asearch_ids`` and the FTS5 index with ``asearch_ids``: ids and scores only. The
    documents of the ``k`` winners are then read from the store (a chunk it lacks from
    the FTS5 index; one found nowhere, or no longer matching the filter after a
    concurrent write, is skipped for the next). Any other store is searched with
    ``(a)similarity_search_with_relevance_scores``, and the FTS5 index with ``asearch``.
    A subclass of AsyncFAISS that changes how it searches overrides ``(a)search_ids``.

    ``k``, ``fetch_k``, ``filter`` and ``timeout`` may also be given per call:
    ``retriever.invoke(question, k=3, filter={"source": "a.md"})``; a per-call ``filter``
    replaces the field (``filter={}`` searches without one), a per-call ``timeout`` the
    field (``timeout=None`` searches without one). When the ``timeout`` expires, the async
    search is cancelled (both sides; nothing of it runs on) and a
    :class:`~langchain_rag_async.errors.RetrievalTimeoutError` (also a ``TimeoutError``)
    is raised; the sync twin cannot interrupt a store's sync search and raises it as soon
    as the side that overran returns. Filters are exact-match dicts
    understood by both sides: a scalar matches equal values, a list any of its values,
    ``None`` a missing key. With a filter, FAISS scans ``FAISS_FILTER_FETCH_FACTOR * fetch_k``
    neighbours before filtering, so a very selective filter may leave the dense side
    with fewer candidates; the sparse side filters inside SQL.

    Lifecycle: a retriever built from existing stores does not own them; close them
    yourself (``aclose`` is then a no-op). One built by :meth:`from_documents` /
    :meth:`afrom_documents` owns its in-memory stores: call :meth:`aclose` (or use
    ``async with``), or :meth:`close` from sync code, to release them.

    Example:
        .. code-block:: python

            retriever = HybridRetriever(vectorstore=store, sparse=FTS5Index.in_index_dir(d))
            docs = await retriever.ainvoke("what is ownership?", k=3)
            docs[0].metadata["scores"]  # {"dense": 0.81, "sparse": 7.2, "fused": 0.032}
    """

    vectorstore: VectorStore
    """The dense side (normally an AsyncFAISS store)."""
    sparse: FTS5Index | None = None
    """The sparse side, holding the same chunks under the same ids; ``None`` when the
    store runs both sides itself (a :class:`HybridSearchStore`: the PostgreSQL store)."""
    k: int = _DEFAULTS.k
    """Documents returned (default: ``RetrievalConfig().k``)."""
    fetch_k: int = _DEFAULTS.fetch_k
    """Candidates fetched from each side before fusion (at least ``k`` are fetched)."""
    fusion: FusionMethod = _DEFAULTS.fusion
    """``"weighted"`` (normalised scores, the default) or ``"rrf"`` (reciprocal rank fusion)."""
    dense_weight: float = _DEFAULTS.dense_weight
    """Weight of the dense side in the fusion."""
    sparse_weight: float = _DEFAULTS.sparse_weight
    """Weight of the sparse side in the fusion."""
    rrf_c: int = _DEFAULTS.rrf_c
    """The damping constant of reciprocal rank fusion."""
    filter: dict[str, Any] | None = None
    """Exact-match metadata filter applied to both sides."""
    timeout: float | None = None
    """Seconds a search may take (both sides and the fusion); ``None``: no limit."""

    _owns_stores: bool = PrivateAttr(default=False)
    _closed: bool = PrivateAttr(default=False)

    def _check_settings(self) -> None:
        self.to_config()  # the same checks as RetrievalConfig
        if self.sparse is None and not isinstance(self.vectorstore, HybridSearchStore):
            raise ConfigurationError(
                f"a {type(self.vectorstore).__name__} needs a sparse index (sparse=FTS5Index"
                "(...)); only a store that searches both sides itself (PostgresVectorStore) "
                "works without one"
            )
        if self.fusion == "weighted" and not _gives_relevance(self.vectorstore):
            raise ConfigurationError(_NO_RELEVANCE.format(kind=type(self.vectorstore).__name__))
        weights = (self.dense_weight, self.sparse_weight)
        if not all(math.isfinite(w) for w in weights):
            raise ConfigurationError(f"fusion weights must be finite; got {weights}")
        self.filter = check_filter(self.filter)  # raises ConfigurationError
        self.timeout = check_timeout(self.timeout)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        store: VectorStore,
        sparse: FTS5Index | None = None,
        config: RetrievalConfig | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create a retriever over existing stores with the settings of ``config``.

        Args:
            store: The dense side (not owned: the caller closes it).
            sparse: The sparse side (not owned: the caller closes it); ``None`` over a
                store that runs hybrid search itself (``PostgresVectorStore``: one SQL
                statement per query).
            config: Search and fusion settings; ``RetrievalConfig()`` by default.
            **kwargs: Other fields (``filter``, ``tags``, ``metadata``).
        """
        config = config or RetrievalConfig()
        return cls(
            vectorstore=store,
            sparse=sparse,
            k=config.k,
            fetch_k=config.fetch_k,
            fusion=config.fusion,
            dense_weight=config.dense_weight,
            sparse_weight=config.sparse_weight,
            rrf_c=config.rrf_c,
            **kwargs,
        )

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[Document],
        *,
        embedding: Embeddings,
        k: int = _DEFAULTS.k,
        **kwargs: Any,
    ) -> Self:
        """Build a self-contained retriever over ``documents`` (blocking).

        The documents go into a new in-memory AsyncFAISS store (cosine similarity) and a
        new in-memory FTS5Index, both owned by the retriever (see :meth:`close`).
        Documents without an id get a deterministic one. In async code, use
        :meth:`afrom_documents`.

        Args:
            documents: The documents to search.
            embedding: The embedding model of the dense side.
            k: Documents returned per search.
            **kwargs: Other fields (``fetch_k``, ``fusion``, weights, ``filter``...).
        """
        docs = with_ids(documents)
        store = AsyncFAISS.create(embedding, distance_strategy=DistanceStrategy.COSINE)
        sparse = FTS5Index()
        try:
            if docs:
                store.add_documents(docs, ids=[str(doc.id) for doc in docs])
                sparse.upsert(docs)
            retriever = cls(vectorstore=store, sparse=sparse, k=k, **kwargs)
        except BaseException:
            sparse.close()
            raise
        retriever._owns_stores = True
        return retriever

    @classmethod
    async def afrom_documents(
        cls,
        documents: Iterable[Document],
        *,
        embedding: Embeddings,
        k: int = _DEFAULTS.k,
        **kwargs: Any,
    ) -> Self:
        """Async twin of :meth:`from_documents`: embeds and indexes without blocking."""
        docs = with_ids(documents)
        store = AsyncFAISS.create(embedding, distance_strategy=DistanceStrategy.COSINE)
        sparse = FTS5Index()
        try:
            if docs:
                await store.aadd_documents(docs, ids=[str(doc.id) for doc in docs])
                await sparse.aupsert(docs)
            retriever = cls(vectorstore=store, sparse=sparse, k=k, **kwargs)
        except BaseException:
            await sparse.aclose()
            raise
        retriever._owns_stores = True
        return retriever

    def to_config(self) -> RetrievalConfig:
        """The search and fusion settings as a :class:`RetrievalConfig`.

        Raises:
            ConfigurationError: A setting is out of range.
        """
        return RetrievalConfig(
            k=self.k,
            fetch_k=self.fetch_k,
            fusion=self.fusion,
            dense_weight=self.dense_weight,
            sparse_weight=self.sparse_weight,
            rrf_c=self.rrf_c,
        )

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def owns_stores(self) -> bool:
        """Whether :meth:`aclose` closes the stores (true for ``from_documents``)."""
        return self._owns_stores

    def _release_owned_index(self) -> FTS5Index | None:
        if not self._owns_stores or self._closed:
            return None
        self._closed = True
        return self.sparse  # the in-memory FAISS store needs no closing

    # -- search ---------------------------------------------------------------------------

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        """Search both sides concurrently and fuse (kwargs: ``k``, ``fetch_k``, ``filter``).

        Over an :class:`AsyncFAISS` store both sides return ids and scores only; the
        documents are built for the ``k`` winners alone. Other stores return documents.
        """
        plan = self._plan(query, kwargs)
        with span("hybrid_search", k=plan.k, fusion=self.fusion, fetch_k=plan.per_side) as current:
            async with deadline(plan.timeout, plan.timed_out):
                documents = await self._asearch(plan)
            current.set_attribute("rag.results", len(documents))
        return documents

    async def _asearch(self, plan: _Plan) -> list[Document]:
        store = self.vectorstore
        if self.sparse is None and isinstance(store, HybridSearchStore):
            return await store.ahybrid_search(plan.query, **self._whole(plan))
        if _ranks_ids(store):
            dense_ids, sparse_ids = await _both(
                self._adense_ids(store, plan), self._asparse_ids(plan)
            )
            with QUERY_LATENCY.labels(stage="fuse").time():
                return self._choose(store, dense_ids, sparse_ids, plan)
        dense, sparse = await _both(self._adense(plan), self._asparse(plan))
        with QUERY_LATENCY.labels(stage="fuse").time():
            return self._fuse(dense, sparse, plan.k)

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        **kwargs: Any,
    ) -> list[Document]:
        """Sync twin: the stores' sync searches, one after the other, then the same fusion."""
        plan = self._plan(query, kwargs)
        started = time.monotonic()

        def in_time() -> None:  # a sync search cannot be interrupted: checked after each side
            if plan.timeout is not None and time.monotonic() - started > plan.timeout:
                raise plan.timed_out(plan.timeout)

        with span("hybrid_search", k=plan.k, fusion=self.fusion, fetch_k=plan.per_side) as current:
            store = self.vectorstore
            if self.sparse is None and isinstance(store, HybridSearchStore):
                documents = store.hybrid_search(plan.query, **self._whole(plan))
                in_time()
            elif _ranks_ids(store):
                dense_ids = self._dense_ids(store, plan)
                in_time()
                sparse_ids = self._sparse_ids(plan)
                in_time()
                documents = self._choose(store, dense_ids, sparse_ids, plan)
            else:
                dense = self._dense(plan)
                in_time()
                sparse = self._sparse(plan)
                in_time()
                documents = self._fuse(dense, sparse, plan.k)
            current.set_attribute("rag.results", len(documents))
        return documents

    def _fts(self) -> FTS5Index:
        """The sparse index (checked at construction: only a HybridSearchStore has none)."""
        if self.sparse is None:
            raise ConfigurationError("this HybridRetriever has no sparse index")
        return self.sparse

    def _whole(self, plan: _Plan) -> dict[str, Any]:
        """Arguments of a :class:`HybridSearchStore`'s search for ``plan``."""
        return {
            "k": plan.k,
            "fetch_k": plan.per_side,
            "filter": plan.filter,
            "settings": self.to_config(),
        }

    # One method per side and kind of result, each in its span with foreign errors wrapped.

    async def _adense_ids(self, store: AsyncFAISS, plan: _Plan) -> RankedIds:
        with _side("dense", plan) as current:
            return _counted(current, await store.asearch_ids(plan.query, **_ids_kwargs(plan)))

    def _dense_ids(self, store: AsyncFAISS, plan: _Plan) -> RankedIds:
        with _side("dense", plan) as current:
            return _counted(current, store.search_ids(plan.query, **_ids_kwargs(plan)))

    async def _asparse_ids(self, plan: _Plan) -> RankedIds:
        with _side("sparse", plan) as current:
            hits = await self._fts().asearch_ids(plan.query, plan.per_side, filter=plan.filter)
            return _counted(current, hits)

    def _sparse_ids(self, plan: _Plan) -> RankedIds:
        with _side("sparse", plan) as current:
            hits = self._fts().search_ids(plan.query, plan.per_side, filter=plan.filter)
            return _counted(current, hits)

    async def _adense(self, plan: _Plan) -> RankedList:
        store, kwargs = self.vectorstore, _dense_kwargs(self.vectorstore, plan)
        relevance = self._relevance_scores()
        with _side("dense", plan) as current:
            if relevance:
                search = store.asimilarity_search_with_relevance_scores
            else:
                search = store.asimilarity_search_with_score
            return _counted(current, await search(plan.query, plan.per_side, **kwargs))

    def _dense(self, plan: _Plan) -> RankedList:
        store, kwargs = self.vectorstore, _dense_kwargs(self.vectorstore, plan)
        relevance = self._relevance_scores()
        with _side("dense", plan) as current:
            if relevance:
                search = store.similarity_search_with_relevance_scores
            else:
                search = store.similarity_search_with_score
            return _counted(current, search(plan.query, plan.per_side, **kwargs))

    def _relevance_scores(self) -> bool:
        """Whether the dense store gives relevance scores; without, RRF uses its raw ones.

        Raises:
            ConfigurationError: Weighted fusion over a store without relevance scores.
        """
        if _gives_relevance(self.vectorstore):
            return True
        if self.fusion == "weighted":
            raise ConfigurationError(_NO_RELEVANCE.format(kind=type(self.vectorstore).__name__))
        return False

    async def _asparse(self, plan: _Plan) -> RankedList:
        with _side("sparse", plan) as current:
            hits = await self._fts().asearch(plan.query, plan.per_side, filter=plan.filter)
            return _counted(current, hits)

    def _sparse(self, plan: _Plan) -> RankedList:
        with _side("sparse", plan) as current:
            hits = self._fts().search(plan.query, plan.per_side, filter=plan.filter)
            return _counted(current, hits)

    def _choose(
        self, store: AsyncFAISS, dense: RankedIds, sparse: RankedIds, plan: _Plan
    ) -> list[Document]:
        """The documents of the best ``k`` fused ids the store holds, scores attached.

        Shared by both twins (no I/O: the store's docstore is in memory). The store is the
        reference: a sparse hit it lacks is a chunk of another generation (a run in
        progress elsewhere saves the sparse rows with its next store; a crash left them),
        so it is skipped like an id removed since the search or no longer matching the
        filter, for the next one. A query thus sees one generation, never a mix.
        """
        keep = None if plan.filter is None else metadata_filter(plan.filter)
        chosen: list[Document] = []
        for batch in self._fused_batches(dense, sparse, plan.k):
            found = store.lookup([hit.id for hit in batch])
            if any(doc is None for doc in found):
                _log.debug(
                    "hybrid_hits_not_in_store",
                    ids=[h.id for h, d in zip(batch, found, strict=True) if d is None],
                )
            chosen.extend(_scored(batch, found, keep))
            if len(chosen) >= plan.k:
                break
        return chosen[: plan.k]

    def _fused_batches(
        self, dense: RankedIds, sparse: RankedIds, k: int
    ) -> Iterator[list[FusedHit]]:
        """The best ``k`` fused ids, then (only if asked: some were removed) the rest by ``k``."""
        first = self._fuse_ids(dense, sparse, k)
        yield first
        rest = self._fuse_ids(dense, sparse, None)[len(first) :]
        for start in range(0, len(rest), k):
            yield rest[start : start + k]

    def _plan(self, query: str, overrides: dict[str, Any]) -> _Plan:
        """Check the query and the per-call arguments against the fields (no I/O).

        Raises:
            RetrievalError: The query is empty or the retriever was closed.
            ArgumentTypeError: An unknown keyword argument was given (a ``TypeError``).
            ConfigurationError: ``k``/``fetch_k`` is not a positive whole number, the filter
                is not an exact-match dict, or ``timeout`` is not positive seconds.
        """
        if self._closed:
            raise RetrievalError(
                "this HybridRetriever was closed and its in-memory stores released; "
                "build a new one with from_documents()"
            )
        check_search_kwargs("HybridRetriever", overrides, _SEARCH_KWARGS)
        query = check_query(query)
        k = check_count("k", overrides.get("k", self.k))
        fetch_k = check_count("fetch_k", overrides.get("fetch_k", self.fetch_k))
        filter_ = check_filter(overrides["filter"] if "filter" in overrides else self.filter)
        timeout = check_timeout(overrides["timeout"] if "timeout" in overrides else self.timeout)
        return _Plan(query=query, k=k, per_side=max(k, fetch_k), filter=filter_, timeout=timeout)

    def _fuse_ids(self, dense: RankedIds, sparse: RankedIds, k: int | None) -> list[FusedHit]:
        weights = (self.dense_weight, self.sparse_weight)
        return fuse_ranked_ids(
            (dense, sparse), method=self.fusion, weights=weights, c=self.rrf_c, k=k
        )

    def _fuse(self, dense: RankedList, sparse: RankedList, k: int) -> list[Document]:
        weights = (self.dense_weight, self.sparse_weight)
        if self.fusion == "weighted":
            return weighted_score_fusion((dense, sparse), weights=weights, k=k)
        return reciprocal_rank_fusion((dense, sparse), weights=weights, c=self.rrf_c, k=k)
