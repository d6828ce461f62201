"""The locked, blocking core of :class:`AsyncFAISS`: every read and write of FAISS state.

Writes (upsert, delete, merge) hold the write side of a readers-writer lock around the
FAISS change *and* the docstore and id-map updates; searches, lookups and snapshots hold
the read side. So ``index.ntotal == len(index_to_docstore_id) ==`` the number of stored
documents at every moment a reader can observe. All methods here block (the async twins
in :mod:`langchain_rag_async.vectorstores.faiss` call them in an executor), except
:meth:`FAISSCore.lookup`: one dictionary read per id, without the lock.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
from langchain_community.docstore.base import AddableMixin, Docstore
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores.faiss import FAISS, dependable_faiss_import
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from langchain_rag_async.aio import LoopBound
from langchain_rag_async.errors import VectorStoreError
from langchain_rag_async.observability import span
from langchain_rag_async.vectorstores import _scoring as scoring
from langchain_rag_async.vectorstores._locks import ReadWriteLock
from langchain_rag_async.vectorstores._persistence import IndexSnapshot
from langchain_rag_async.vectorstores.docstore import CompactDocstore

__all__ = (
    "SEARCH_FETCH_K",
    "SEARCH_K",
    "FAISSCore",
    "MetadataFilter",
    "metadata_filter",
    "plan_upsert",
    "stored_documents",
    "unzip",
)

MetadataFilter = Callable[..., Any] | dict[str, Any]

SEARCH_K = 4
"""Results of a store search that names no ``k``: LangChain's ``VectorStore`` default.

Kept on purpose, as LangChain code calling any vector store expects; the hybrid retriever,
the engine and the CLI take theirs from :class:`~langchain_rag_async.config.RetrievalConfig`.
"""
SEARCH_FETCH_K = 20
"""Candidates fetched before filtering or MMR when none is named: LangChain FAISS's default."""
_Hit = tuple[Document, float, Any]  # caller-owned copy, raw FAISS value, vector or None


def plan_upsert(
    count: int, metadatas: Sequence[dict[str, Any]] | None, ids: Sequence[str | None] | None
) -> tuple[list[str], list[int]]:
    """Return the id of every input and the inputs to store (the last of each id wins).

    Raises:
        VectorStoreError: ``metadatas`` or ``ids`` do not match ``count``.
    """
    if metadatas is not None and len(metadatas) != count:
        raise VectorStoreError(f"got {len(metadatas)} metadatas for {count} texts; pass one each")
    if ids is not None and len(ids) != count:
        raise VectorStoreError(f"got {len(ids)} ids for {count} texts; pass one each")
    all_ids = [(ids[i] if ids else None) or str(uuid.uuid4()) for i in range(count)]
    last = {doc_id: i for i, doc_id in enumerate(all_ids)}
    return all_ids, sorted(last.values())


def metadata_filter(filter: MetadataFilter) -> Callable[[dict[str, Any]], bool]:
    """The predicate on a document's metadata that ``filter`` describes, as FAISS reads it.

    A dict matches exactly per key (a list: any of its values; ``None``: the key missing
    or ``None``) and may use FAISS's operators (``$eq``, ``$in``, ``$and``...); a callable
    is used as given. The package's one metadata predicate: the store's searches and the
    hybrid retriever's re-check both use it. LangChain's FAISS offers its builder only as
    the hook ``FAISS._create_filter_func``; this is the one place that calls it, so the
    store filters exactly as FAISS documents.

    Args:
        filter: A metadata dict or a callable taking the metadata.

    Returns:
        ``keep(metadata) -> bool``.
    """
    return FAISS._create_filter_func(filter)


def stored_documents(
    ids: list[str], texts: list[str], metadatas: Sequence[dict[str, Any]] | None, keep: list[int]
) -> list[Document]:
    """Documents to store; metadata is copied so callers cannot change stored state."""
    return [
        Document(id=ids[i], page_content=texts[i], metadata=dict(metadatas[i] if metadatas else {}))
        for i in keep
    ]


def unzip(pairs: Iterable[tuple[str, list[float]]]) -> tuple[list[str], list[list[float]]]:
    """Split ``(text, vector)`` pairs into texts and vectors."""
    items = list(pairs)
    return [text for text, _ in items], [vector for _, vector in items]


def _copy(doc: Document, doc_id: str) -> Document:
    """A caller-owned copy of a stored document, its id set."""
    return doc.model_copy(update={"id": doc_id, "metadata": dict(doc.metadata)})


def stored_fields(docstore: Docstore, doc_id: str) -> tuple[str, dict[str, Any]] | None:
    """``(page_content, metadata)`` stored under ``doc_id``, to read and not to keep."""
    if isinstance(docstore, CompactDocstore):
        return docstore.fields(doc_id)  # no Document built, no copy made
    found = docstore.search(doc_id)
    return (found.page_content, found.metadata) if isinstance(found, Document) else None


def fetch_document(docstore: Docstore, doc_id: str) -> Document | None:
    """A caller-owned copy of the document stored under ``doc_id``, or ``None``."""
    if isinstance(docstore, CompactDocstore):
        return docstore.get(doc_id)  # already a fresh copy
    found = docstore.search(doc_id)
    return _copy(found, doc_id) if isinstance(found, Document) else None


class FAISSCore(FAISS):
    """FAISS with a readers-writer lock, upserts and lazily created indexes (blocking)."""

    def __init__(
        self,
        embedding_function: Embeddings | Callable[[str], list[float]],
        index: Any,
        docstore: Docstore,
        index_to_docstore_id: dict[int, str],
        relevance_score_fn: Callable[[float], float] | None = None,
        normalize_L2: bool = False,
        distance_strategy: DistanceStrategy = DistanceStrategy.EUCLIDEAN_DISTANCE,
        *,
        embedding_model_id: str | None = None,
    ) -> None:
        super().__init__(
            embedding_function,
            index,
            docstore,
            index_to_docstore_id,
            relevance_score_fn=relevance_score_fn,
            distance_strategy=distance_strategy,
        )
        cosine = distance_strategy == DistanceStrategy.COSINE and self._uses_inner_product()
        # Set here rather than by FAISS, which warns when normalising for non-L2 metrics.
        self._normalize_L2 = normalize_L2 or cosine
        self._embedding_model_id = embedding_model_id
        self._rw_lock = ReadWriteLock()
        # Async writers queue here (one lock per event loop) before entering the executor.
        self._writer_queues: LoopBound[asyncio.Lock] = LoopBound(asyncio.Lock)
        self._positions: dict[str, int] = {}
        self._positions_of: dict[int, str] | None = None

    @property
    def embedding_model_id(self) -> str | None:
        """Identity of the embedding model that built the index, if known."""
        return self._embedding_model_id

    @property
    def dimension(self) -> int | None:
        """Vector width, or ``None`` while a lazily created store has no vector yet."""
        return None if self.index is None else int(self.index.d)

    @property
    def relevance_score_fn(self) -> Callable[[float], float]:
        """Maps this store's scores to relevance in ``[0, 1]`` (1 is the query itself).

        The ``relevance_score_fn`` given at construction, else the formula for the
        index's metric (see :mod:`._scoring`). LangChain's
        ``similarity_search_with_relevance_scores`` applies it through its
        ``_select_relevance_score_fn`` hook, which this class overrides to return it.
        """
        if self.override_relevance_score_fn is not None:
            return self.override_relevance_score_fn
        return functools.partial(
            scoring.relevance, **self._score_rules(), normalized=self._normalize_L2
        )

    @property
    def rw_lock(self) -> ReadWriteLock:
        """The lock guarding the index; hold ``rw_lock.read()`` to inspect it consistently."""
        return self._rw_lock

    # -- writes ---------------------------------------------------------------------------

    def _upsert(self, docs: list[Document], vectors: Any) -> None:
        """Add ``docs`` with ``vectors``, replacing documents with the same ids."""
        if not docs:
            return
        matrix = np.array(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(docs):
            raise VectorStoreError(
                f"expected {len(docs)} vectors of equal width, got an array of shape "
                f"{matrix.shape}; check what the embedding model returns"
            )
        if self._normalize_L2:
            dependable_faiss_import().normalize_L2(matrix)
        if not isinstance(self.docstore, AddableMixin):
            raise VectorStoreError(f"{type(self.docstore).__name__} cannot add documents")
        by_id = {str(doc.id): doc for doc in docs}
        # Encoded before anything changes, so a document that cannot be stored fails the
        # call and leaves index, docstore and id map as they were.
        store_batch: Callable[[], None] = (
            functools.partial(self.docstore.add_prepared, self.docstore.prepare(by_id))
            if isinstance(self.docstore, CompactDocstore)
            else functools.partial(self.docstore.add, by_id)
        )
        with span("vectorstore.upsert", documents=len(docs)), self._rw_lock.write():
            if self.index is None:
                self.index = scoring.new_index(matrix.shape[1], self.distance_strategy)
            self._check_width(matrix.shape[1], "vectors")
            positions = self._id_positions()
            stale = [str(doc.id) for doc in docs if doc.id in positions]
            if stale:
                self._remove_locked(stale, positions)
            start = int(self.index.ntotal)
            self.index.add(matrix)
            store_batch()
            for offset, doc in enumerate(docs):
                self.index_to_docstore_id[start + offset] = str(doc.id)
                self._positions[str(doc.id)] = start + offset

    def _delete(self, ids: list[str]) -> bool:
        """Remove ``ids``; unknown ones are ignored."""
        with span("vectorstore.delete", ids=len(ids)), self._rw_lock.write():
            positions = self._id_positions()
            found = [doc_id for doc_id in dict.fromkeys(ids) if doc_id in positions]
            if found:
                self._remove_locked(found, positions)
        return True

    def _id_positions(self) -> dict[str, int]:
        """Map id -> index position, rebuilt if the id map was replaced; lock held."""
        mapping = self.index_to_docstore_id
        if self._positions_of is not mapping or len(self._positions) != len(mapping):
            self._positions = {doc_id: pos for pos, doc_id in mapping.items()}
            self._positions_of = mapping
        return self._positions

    def _remove_locked(self, ids: list[str], positions: dict[str, int]) -> None:
        """Remove present ``ids`` from index, docstore and id map; write lock held."""
        drop = {positions[doc_id] for doc_id in ids}
        self.index.remove_ids(np.fromiter(drop, dtype=np.int64, count=len(drop)))
        self.docstore.delete(ids)
        ordered = sorted(self.index_to_docstore_id.items())
        remaining = [doc_id for pos, doc_id in ordered if pos not in drop]
        self.index_to_docstore_id.clear()
        self.index_to_docstore_id.update(enumerate(remaining))
        self._positions = {doc_id: pos for pos, doc_id in enumerate(remaining)}
        self._positions_of = self.index_to_docstore_id

    def _check_width(self, width: int, what: str) -> None:
        if width != self.index.d:
            raise VectorStoreError(
                f"{what} have {width} dimensions but the index holds {self.index.d}; "
                "use the embedding model that built the index, or rebuild it"
            )

    def merge_from(self, target: FAISS) -> None:
        """Upsert every document of ``target`` with the vectors ``target`` stores."""
        guard: AbstractContextManager[None] = (
            target.rw_lock.read() if isinstance(target, FAISSCore) else nullcontext()
        )
        with guard:
            total = 0 if target.index is None else int(target.index.ntotal)
            vectors = target.index.reconstruct_n(0, total) if total else []
            ids = [target.index_to_docstore_id[pos] for pos in range(total)]
            stored = [fetch_document(target.docstore, doc_id) for doc_id in ids]
        docs = [doc for doc in stored if doc is not None]
        if len(docs) != total:
            raise VectorStoreError("the store to merge lacks documents for some of its vectors")
        self._upsert(docs, vectors)

    # -- reads ----------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for ``ids`` in the order asked; unknown ids are skipped."""
        with self._rw_lock.read():
            found = [fetch_document(self.docstore, doc_id) for doc_id in ids]
        return [doc for doc in found if doc is not None]

    @property
    def docstore_in_memory(self) -> bool:
        """Whether the docstore is a plain in-memory mapping (:meth:`lookup` is cheap).

        True for :class:`CompactDocstore` (the default) and LangChain's
        ``InMemoryDocstore``; false for any other ``Docstore``, which may do I/O.
        """
        return isinstance(self.docstore, CompactDocstore | InMemoryDocstore)

    def lookup(self, ids: Sequence[str], /) -> list[Document | None]:
        """Copies of the documents stored under ``ids`` (``None`` where absent), lock-free.

        No lock: with an in-memory docstore (:attr:`docstore_in_memory`) this is one
        dictionary read per id, safe on the event loop even while a write holds the lock.
        A write that ran since the ids were found shows: a removed id gives ``None``, a
        replaced one its new version. For ids that :meth:`search_ids` just returned; use
        :meth:`get_by_ids` for a consistent read.
        """
        found: list[Document | None] = []
        for doc_id in ids:
            try:
                found.append(fetch_document(self.docstore, doc_id))
            except KeyError:  # removed between a docstore's membership test and its read
                found.append(None)
        return found

    def search_ids(
        self,
        query: str,
        k: int = SEARCH_K,
        *,
        filter: MetadataFilter | None = None,
        fetch_k: int = SEARCH_FETCH_K,
    ) -> list[tuple[str, float]]:
        """The ids of the ``k`` nearest documents and their relevance scores, best first.

        Like ``similarity_search_with_relevance_scores`` but without building documents
        (unless a filter needs their metadata): for callers that rank first and fetch
        only the winners, such as the hybrid retriever (see :meth:`lookup`).

        Args:
            query: The text to embed and search for.
            k: Ids to return.
            filter: Metadata filter, as in ``similarity_search``.
            fetch_k: Candidates fetched before filtering.
        """
        return self.search_ids_by_vector(
            self._embed_query(query), k, filter=filter, fetch_k=fetch_k
        )

    def search_ids_by_vector(
        self,
        embedding: list[float],
        k: int = SEARCH_K,
        *,
        filter: MetadataFilter | None = None,
        fetch_k: int = SEARCH_FETCH_K,
    ) -> list[tuple[str, float]]:
        """:meth:`search_ids` for a query vector."""
        relevance = self.relevance_score_fn
        if filter is not None:
            hits = self.similarity_search_with_score_by_vector(embedding, k, filter, fetch_k)
            return [(str(doc.id), relevance(score)) for doc, score in hits]
        rules = self._score_rules()
        query = self._query_matrix(embedding)
        with self._rw_lock.read():
            nearest = self._nearest(query, k)
            found = [(str(self.index_to_docstore_id[pos]), raw) for raw, pos in nearest]
        return [(doc_id, relevance(scoring.to_score(raw, **rules))) for doc_id, raw in found]

    def _query_matrix(self, embedding: list[float]) -> Any:
        query = np.array([embedding], dtype=np.float32)
        if self._normalize_L2:
            dependable_faiss_import().normalize_L2(query)
        return query

    def _nearest(self, query: Any, fetch: int) -> list[tuple[float, int]]:
        """``(raw FAISS value, position)`` of the nearest ``fetch``; hold the read lock."""
        if self.index is None or self.index.ntotal == 0 or fetch <= 0:
            return []
        self._check_width(query.shape[1], "query vectors")
        raw, found = self.index.search(query, min(fetch, int(self.index.ntotal)))
        return [(float(v), int(p)) for v, p in zip(raw[0], found[0], strict=True) if p >= 0]

    def _search(self, embedding: list[float], fetch: int, *, vectors: bool) -> list[_Hit]:
        """The nearest ``fetch`` entries, read consistently under the read lock."""
        query = self._query_matrix(embedding)
        with self._rw_lock.read():
            hits: list[_Hit] = []
            for value, pos in self._nearest(query, fetch):
                doc_id = self.index_to_docstore_id[pos]
                doc = fetch_document(self.docstore, doc_id)
                if doc is None:
                    raise VectorStoreError(f"no document stored for id {doc_id!r}; rebuild")
                vector = self.index.reconstruct(pos) if vectors else None
                hits.append((doc, value, vector))
        return hits

    def _uses_inner_product(self) -> bool:
        if self.index is None:
            return self.distance_strategy in scoring.INNER_PRODUCT_STRATEGIES
        return bool(self.index.metric_type == dependable_faiss_import().METRIC_INNER_PRODUCT)

    def _score_rules(self) -> dict[str, Any]:
        return {"inner_product": self._uses_inner_product(), "strategy": self.distance_strategy}

    def similarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = SEARCH_K,
        filter: MetadataFilter | None = None,
        fetch_k: int = SEARCH_FETCH_K,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Nearest documents and their scores (scales in :mod:`._scoring`).

        Args:
            embedding: The query vector.
            k: Documents to return.
            filter: Metadata dict (``$eq``, ``$in``, ``$and``... as in FAISS) or callable.
            fetch_k: Candidates fetched before filtering.
            **kwargs: ``score_threshold`` drops hits beyond it (on the score scale).
        """
        rules = self._score_rules()
        keep = None if filter is None else metadata_filter(filter)
        threshold = kwargs.get("score_threshold")
        higher = scoring.higher_is_closer(**rules)
        fetch = k if keep is None else max(k, fetch_k)
        results: list[tuple[Document, float]] = []
        for doc, raw, _ in self._search(embedding, fetch, vectors=False):
            score = scoring.to_score(raw, **rules)
            if keep is not None and not keep(doc.metadata):
                continue
            if threshold is not None and (score < threshold if higher else score > threshold):
                continue
            results.append((doc, score))
        return results[:k]

    def max_marginal_relevance_search_with_score_by_vector(
        self,
        embedding: list[float],
        *,
        k: int = SEARCH_K,
        fetch_k: int = SEARCH_FETCH_K,
        lambda_mult: float = 0.5,
        filter: MetadataFilter | None = None,
    ) -> list[tuple[Document, float]]:
        """Documents chosen by maximal marginal relevance, with their scores.

        Args:
            embedding: The query vector.
            k: Documents to return.
            fetch_k: Candidates considered (twice as many are fetched with a filter).
            lambda_mult: 1 favours relevance, 0 favours diversity.
            filter: Metadata dict or callable, as in ``similarity_search``.
        """
        keep = None if filter is None else metadata_filter(filter)
        hits = self._search(embedding, fetch_k if keep is None else fetch_k * 2, vectors=True)
        hits = [hit for hit in hits if keep is None or keep(hit[0].metadata)]
        if not hits:
            return []
        query = np.array(embedding, dtype=np.float32)
        chosen = maximal_marginal_relevance(query, [h[2] for h in hits], lambda_mult, k)
        rules = self._score_rules()
        return [(hits[i][0], scoring.to_score(hits[i][1], **rules)) for i in chosen]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """LangChain's hook for ``similarity_search_with_relevance_scores`` (overridden)."""
        return self.relevance_score_fn

    def _snapshot(self) -> IndexSnapshot:
        """A consistent copy of the state for saving, taken under the read lock."""
        with self._rw_lock.read():
            total = 0 if self.index is None else int(self.index.ntotal)
            if total != len(self.index_to_docstore_id):
                raise VectorStoreError("the index and its id map disagree; refusing to save")
            documents = []
            for pos in range(total):
                doc_id = self.index_to_docstore_id[pos]
                fields = stored_fields(self.docstore, doc_id)
                if fields is None:
                    raise VectorStoreError(f"no document stored for id {doc_id!r}; cannot save")
                documents.append((doc_id, *fields))
            faiss = dependable_faiss_import()
            serialized = None if self.index is None else faiss.serialize_index(self.index)
        return IndexSnapshot(
            index_bytes=None if serialized is None else serialized.tobytes(),
            documents=documents,
            embedding_model_id=self._embedding_model_id,
            dimension=self.dimension,
            distance_strategy=DistanceStrategy(self.distance_strategy).value,
            normalize_L2=self._normalize_L2,
        )

    def serialize_to_bytes(self) -> bytes:
        """Pickle the index state (as FAISS does), consistently under the read lock."""
        with self._rw_lock.read():
            return super().serialize_to_bytes()
