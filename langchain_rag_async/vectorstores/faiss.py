"""AsyncFAISS: LangChain's FAISS store with native async, upserts, locking and safe saves.

The public face of the store. Blocking work (FAISS, docstore, files) lives in
:mod:`._core` and :mod:`._persistence`; the async methods here await the embedding model
on the event loop (or, for a model that computes in an executor anyway, embed in the
search's own executor call) and hand that blocking work to an executor. Score scales and relevance
formulas are documented in :mod:`._scoring`.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.errors import (
    ConfigurationError,
    IndexCorruptedError,
    IndexNotFoundError,
    VectorStoreError,
)
from langchain_rag_async.observability import get_logger
from langchain_rag_async.vectorstores import _persistence as persistence
from langchain_rag_async.vectorstores import _scoring as scoring
from langchain_rag_async.vectorstores._core import (
    SEARCH_FETCH_K,
    SEARCH_K,
    FAISSCore,
    MetadataFilter,
    plan_upsert,
    stored_documents,
    unzip,
)
from langchain_rag_async.vectorstores._persistence import DEFAULT_LOCK_TIMEOUT, read_manifest
from langchain_rag_async.vectorstores.docstore import CompactDocstore

__all__ = ("AsyncFAISS", "read_manifest")

_log = get_logger(__name__)


def _embeds_in_executor(embedding: Any) -> bool:
    """Whether the model's ``aembed_query`` only runs its blocking twin in an executor.

    True for plain functions, for models that keep LangChain's default ``aembed_query``,
    and for classes that define ``aembed_query`` *and* say so themselves
    (``embeds_in_executor = True``, as
    :class:`~langchain_rag_async.embeddings.LocalMiniLMEmbeddings`): a subclass that
    overrides ``aembed_query`` (a limiter, a timeout) inherits no such promise. Such a
    query can be embedded in the thread that searches. Models with real async I/O (HTTP
    clients, rate limiters, caches) keep their own path.
    """
    if not isinstance(embedding, Embeddings):
        return True
    if "aembed_query" in getattr(embedding, "__dict__", {}):  # replaced on the instance
        return False
    owner = next(kind for kind in type(embedding).__mro__ if "aembed_query" in vars(kind))
    return owner is Embeddings or vars(owner).get("embeds_in_executor") is True


class AsyncFAISS(FAISSCore):
    """FAISS vector store with true async, idempotent upserts and crash-safe persistence.

    A drop-in subclass of ``langchain_community``'s ``FAISS``: the constructor (plus a
    keyword-only ``embedding_model_id``), the ``from_*`` class methods and all search
    methods keep their signatures. Differences: adding an existing id replaces it (also
    within one call, where the last one wins); deleting unknown ids is a no-op; empty
    stores answer searches with ``[]``; relevance scores lie in ``[0, 1]`` for every
    metric; returned documents are copies; ``save_local``/``load_local`` use a
    pickle-free, checksummed, atomically replaced format (see :mod:`._persistence`).

    Concurrency: searches run concurrently with each other; a write (add, delete,
    merge) holds a readers-writer lock over the FAISS change and the docstore and id-map
    updates, so searchers never see a torn state. Async writers also queue on an
    :class:`asyncio.Lock`, so waiting writers do not occupy executor threads. The
    inherited async searches (``asimilarity_search``, ``amax_marginal_relevance_search``,
    ``asimilarity_search_with_relevance_scores``...) await ``aembed_query`` on the loop
    and reach FAISS through the executor hops defined here; when the model only computes
    in an executor anyway (the local model), similarity searches and :meth:`asearch_ids`
    embed and search in one executor call. :meth:`asearch_ids` returns ids and scores
    without building documents; :meth:`lookup` reads documents without the lock.

    Example:
        .. code-block:: python

            store = AsyncFAISS.create(embeddings, dimension=384, embedding_model_id=model_id)
            await store.aadd_documents(docs)
            hits = await store.asimilarity_search("question", k=4)
            await store.asave_local(".rag-index")
    """

    @classmethod
    def create(
        cls,
        embedding: Embeddings,
        *,
        dimension: int | None = None,
        distance_strategy: DistanceStrategy = DistanceStrategy.EUCLIDEAN_DISTANCE,
        normalize_L2: bool = False,
        embedding_model_id: str | None = None,
        relevance_score_fn: Callable[[float], float] | None = None,
    ) -> Self:
        """Create an empty store.

        Args:
            embedding: The embedding model.
            dimension: Vector width. ``None`` creates the FAISS index at the first add,
                from the width of the first vectors (no probe call to the model).
            distance_strategy: ``EUCLIDEAN_DISTANCE``, ``MAX_INNER_PRODUCT`` or ``COSINE``.
            normalize_L2: L2-normalise vectors before indexing (always on for ``COSINE``).
            embedding_model_id: Identity of the model, saved with the index.
            relevance_score_fn: Overrides the built-in relevance formula.

        Raises:
            ConfigurationError: ``dimension`` is not positive or the strategy is unsupported.
        """
        strategy = scoring.check_strategy(distance_strategy)
        if dimension is not None and dimension <= 0:
            raise ConfigurationError(f"dimension must be positive; got {dimension}")
        index = None if dimension is None else scoring.new_index(dimension, strategy)
        return cls(
            embedding,
            index,
            CompactDocstore(),
            {},
            relevance_score_fn=relevance_score_fn,
            normalize_L2=normalize_L2,
            distance_strategy=strategy,
            embedding_model_id=embedding_model_id,
        )

    async def _aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if isinstance(self.embedding_function, Embeddings):
            return await self.embedding_function.aembed_documents(texts)
        return await run_in_executor(None, self._embed_documents, texts)

    async def _aembed_query(self, text: str) -> list[float]:
        if isinstance(self.embedding_function, Embeddings):
            return await self.embedding_function.aembed_query(text)
        return await run_in_executor(None, self._embed_query, text)

    async def _in_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking write in the executor, one async writer per loop at a time."""
        async with self._writer_queues.get():
            return await run_in_executor(None, fn, *args)

    # -- writes ---------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` and upsert them; returns one id per text."""
        texts = list(texts)
        all_ids, keep = plan_upsert(len(texts), metadatas, ids)
        vectors = self._embed_documents([texts[i] for i in keep]) if keep else []
        self._upsert(stored_documents(all_ids, texts, metadatas, keep), vectors)
        return all_ids

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` (awaiting the model) and upsert them; returns one id per text.

        Args:
            texts: The texts.
            metadatas: One metadata dict per text (copied).
            ids: One id per text; missing ids get a UUID. An existing id is replaced and,
                within one call, the last text with an id wins.
            **kwargs: Ignored (LangChain compatibility).
        """
        texts = list(texts)
        all_ids, keep = plan_upsert(len(texts), metadatas, ids)
        vectors = await self._aembed_documents([texts[i] for i in keep]) if keep else []
        docs = stored_documents(all_ids, texts, metadatas, keep)
        await self._in_writer(self._upsert, docs, vectors)
        return all_ids

    def add_embeddings(
        self,
        text_embeddings: Iterable[tuple[str, list[float]]],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Upsert texts with precomputed vectors; returns one id per pair."""
        texts, vectors = unzip(text_embeddings)
        all_ids, keep = plan_upsert(len(texts), metadatas, ids)
        docs = stored_documents(all_ids, texts, metadatas, keep)
        self._upsert(docs, [vectors[i] for i in keep])
        return all_ids

    async def aadd_embeddings(
        self,
        text_embeddings: Iterable[tuple[str, list[float]]],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Upsert texts with precomputed vectors off the loop; returns one id per pair.

        Args:
            text_embeddings: ``(text, vector)`` pairs.
            metadatas: One metadata dict per pair (copied).
            ids: One id per pair, as in :meth:`aadd_texts`.
            **kwargs: Ignored (compatibility with ``add_embeddings``).
        """
        texts, vectors = unzip(text_embeddings)
        all_ids, keep = plan_upsert(len(texts), metadatas, ids)
        docs = stored_documents(all_ids, texts, metadatas, keep)
        await self._in_writer(self._upsert, docs, [vectors[i] for i in keep])
        return all_ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete ``ids``; unknown ids are ignored. Returns True."""
        return self._delete(_require_ids(ids))

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete ``ids`` off the loop; unknown ids are ignored. Returns True."""
        result: bool = await self._in_writer(self._delete, _require_ids(ids))
        return result

    # -- reads (FAISS runs in the executor; the query is embedded there or on the loop) ----

    async def asimilarity_search_with_score(
        self,
        query: str,
        k: int = SEARCH_K,
        filter: MetadataFilter | None = None,
        fetch_k: int = SEARCH_FETCH_K,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Nearest documents and scores for ``query`` (embedded, then searched).

        When the embedding model computes in an executor thread anyway (the local model),
        the query is embedded and searched in one executor call instead of two.
        """
        if self._embeds_with_search(AsyncFAISS.asimilarity_search_with_score_by_vector):
            search = functools.partial(
                self.similarity_search_with_score, query, k, filter, fetch_k, **kwargs
            )
            return await run_in_executor(None, search)
        if (
            fused := self._search_then(AsyncFAISS.asimilarity_search_with_score_by_vector)
        ) is not None:
            then = functools.partial(
                self.similarity_search_with_score_by_vector,
                k=k,
                filter=filter,
                fetch_k=fetch_k,
                **kwargs,
            )
            result: list[tuple[Document, float]] = await fused(query, then)
            return result
        embedding = await self._aembed_query(query)
        return await self.asimilarity_search_with_score_by_vector(
            embedding, k, filter, fetch_k, **kwargs
        )

    async def asearch_ids(
        self,
        query: str,
        k: int = SEARCH_K,
        *,
        filter: MetadataFilter | None = None,
        fetch_k: int = SEARCH_FETCH_K,
    ) -> list[tuple[str, float]]:
        """Async twin of :meth:`search_ids`: ids and relevance scores, no documents built."""
        if self._embeds_with_search():
            search = functools.partial(self.search_ids, query, k, filter=filter, fetch_k=fetch_k)
            return await run_in_executor(None, search)
        if (fused := self._search_then()) is not None:
            then = functools.partial(self.search_ids_by_vector, k=k, filter=filter, fetch_k=fetch_k)
            ids: list[tuple[str, float]] = await fused(query, then)
            return ids
        embedding = await self._aembed_query(query)
        by_vector = functools.partial(
            self.search_ids_by_vector, embedding, k, filter=filter, fetch_k=fetch_k
        )
        return await run_in_executor(None, by_vector)

    def _embeds_with_search(self, *async_steps: Callable[..., Any]) -> bool:
        """Whether to embed the query in the search's executor call (one hop, not two).

        Only when the model computes in an executor anyway and no subclass changed how
        the query is embedded or searched asynchronously (``async_steps``).
        """
        kind = type(self)
        steps = (AsyncFAISS._aembed_query, *async_steps)
        if any(getattr(kind, step.__name__) is not step for step in steps):
            return False
        return _embeds_in_executor(self.embedding_function)

    def _search_then(self, *async_steps: Callable[..., Any]) -> Callable[..., Any] | None:
        """The model's ``aembed_query_then``, to embed and search in one executor call.

        Our :class:`~langchain_rag_async.embeddings.RateLimitedEmbeddings` has it (the
        engine's query model): around the local model, the query is embedded and searched
        in the same executor call. Only when no subclass changed how the query is embedded
        or searched asynchronously (``async_steps``).
        """
        kind = type(self)
        steps = (AsyncFAISS._aembed_query, *async_steps)
        if any(getattr(kind, step.__name__) is not step for step in steps):
            return None
        then = getattr(self.embedding_function, "aembed_query_then", None)
        return then if callable(then) else None

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for ``ids`` in the order asked; unknown ids are skipped."""
        return await run_in_executor(None, self.get_by_ids, ids)

    async def asimilarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = SEARCH_K,
        filter: MetadataFilter | None = None,
        fetch_k: int = SEARCH_FETCH_K,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Nearest documents and scores; the FAISS search runs in the executor."""
        search = functools.partial(
            self.similarity_search_with_score_by_vector, embedding, k, filter, fetch_k, **kwargs
        )
        return await run_in_executor(None, search)

    async def amax_marginal_relevance_search_with_score_by_vector(
        self,
        embedding: list[float],
        *,
        k: int = SEARCH_K,
        fetch_k: int = SEARCH_FETCH_K,
        lambda_mult: float = 0.5,
        filter: MetadataFilter | None = None,
    ) -> list[tuple[Document, float]]:
        """MMR selection with scores; search and selection run in the executor."""
        select = functools.partial(
            self.max_marginal_relevance_search_with_score_by_vector,
            embedding,
            k=k,
            fetch_k=fetch_k,
            lambda_mult=lambda_mult,
            filter=filter,
        )
        return await run_in_executor(None, select)

    # -- persistence ----------------------------------------------------------------------

    def save_local(
        self,
        folder_path: str | Path,
        index_name: str = "index",
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        """Save atomically as a new generation (blocking; see :meth:`asave_local`).

        Args:
            folder_path: The index folder (created if missing).
            index_name: Name of the index inside the folder.
            lock_timeout: Seconds to wait for another process's save or load.

        Raises:
            VectorStoreError: Metadata is not JSON-serialisable or writing failed.
            IndexLockedError: The folder stayed locked longer than ``lock_timeout``.
        """
        persistence.write_index(
            folder_path, self._snapshot, index_name=index_name, lock_timeout=lock_timeout
        )

    async def asave_local(
        self,
        folder_path: str | Path,
        index_name: str = "index",
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        """Snapshot under the read lock and save, all in a worker thread."""
        await run_in_executor(
            None, self.save_local, folder_path, index_name, lock_timeout=lock_timeout
        )

    @classmethod
    def load_local(
        cls,
        folder_path: str | Path,
        embeddings: Embeddings,
        index_name: str = "index",
        *,
        allow_dangerous_deserialization: bool = False,
        io_flags: int = 0,
        expected_model_id: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        **kwargs: Any,
    ) -> Self:
        """Load an index saved by :meth:`save_local` (or, on opt-in, a legacy pickle one).

        Args:
            folder_path: The index folder.
            embeddings: The embedding model for queries.
            index_name: Name of the index inside the folder.
            allow_dangerous_deserialization: Allow LangChain's pickle format
                (``index.faiss`` + ``index.pkl``); only for folders you trust.
            io_flags: FAISS read flags (legacy format only).
            expected_model_id: Refuse an index built with another embedding model.
            lock_timeout: Seconds to wait for another process's save.
            **kwargs: Passed to the constructor (e.g. ``relevance_score_fn``).

        Raises:
            IndexNotFoundError: The folder holds no index.
            IndexCorruptedError: A file is truncated, missing or malformed.
            EmbeddingModelMismatchError: The index was built with another model.
            IndexLockedError: The folder stayed locked longer than ``lock_timeout``.
            VectorStoreError: Only a legacy pickle index exists and no opt-in was given.
        """
        folder = Path(folder_path)
        if persistence.has_manifest(folder, index_name):
            loaded = persistence.read_index(
                folder,
                index_name=index_name,
                expected_model_id=expected_model_id,
                lock_timeout=lock_timeout,
            )
            return cls._from_loaded(loaded, embeddings, folder, kwargs)
        if persistence.has_legacy_files(folder, index_name):
            if not allow_dangerous_deserialization:
                raise VectorStoreError(
                    f"{folder} holds a legacy LangChain FAISS index ({index_name}.faiss + "
                    f"{index_name}.pkl) that is read with pickle, which can run arbitrary code. "
                    "If you trust the folder, pass allow_dangerous_deserialization=True, then "
                    "save_local() it to convert it to the pickle-free format."
                )
            return cls._load_legacy(folder, embeddings, index_name, io_flags, kwargs)
        raise IndexNotFoundError(folder)

    @classmethod
    async def aload_local(
        cls,
        folder_path: str | Path,
        embeddings: Embeddings,
        index_name: str = "index",
        *,
        allow_dangerous_deserialization: bool = False,
        expected_model_id: str | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        **kwargs: Any,
    ) -> Self:
        """Async twin of :meth:`load_local`: reading and checking run in a worker thread."""
        load = functools.partial(
            cls.load_local,
            folder_path,
            embeddings,
            index_name,
            allow_dangerous_deserialization=allow_dangerous_deserialization,
            expected_model_id=expected_model_id,
            lock_timeout=lock_timeout,
            **kwargs,
        )
        return await run_in_executor(None, load)

    @classmethod
    def _from_loaded(
        cls,
        loaded: persistence.LoadedIndex,
        embeddings: Embeddings,
        folder: Path,
        kwargs: dict[str, Any],
    ) -> Self:
        manifest = loaded.manifest
        try:
            strategy = DistanceStrategy(manifest["distance_strategy"])
        except ValueError as exc:
            raise IndexCorruptedError(folder, "unknown distance_strategy in manifest") from exc
        saved = {"distance_strategy": strategy, "normalize_L2": manifest["normalize_L2"]}
        for key, value in saved.items():
            if key in kwargs and kwargs.pop(key) != value:
                raise ConfigurationError(
                    f"the index in {folder} was saved with {key}={value!r}; "
                    f"drop the {key} argument or rebuild the index"
                )
        docs = loaded.documents
        return cls(
            embeddings,
            loaded.index,
            CompactDocstore({str(doc.id): doc for doc in docs}),
            {pos: str(doc.id) for pos, doc in enumerate(docs)},
            normalize_L2=manifest["normalize_L2"],
            distance_strategy=strategy,
            embedding_model_id=manifest["embedding_model_id"],
            **kwargs,
        )

    @classmethod
    def _load_legacy(
        cls,
        folder: Path,
        embeddings: Embeddings,
        index_name: str,
        io_flags: int,
        kwargs: dict[str, Any],
    ) -> Self:
        _log.warning(
            "loading a legacy pickle FAISS index; it records no embedding model, "
            "so expected_model_id cannot be checked",
            folder=str(folder),
        )
        try:
            store = super().load_local(
                str(folder),
                embeddings,
                index_name,
                allow_dangerous_deserialization=True,
                io_flags=io_flags,
                **kwargs,
            )
        except (
            OSError,
            RuntimeError,
            EOFError,
            ValueError,
            AttributeError,
            ImportError,
            pickle.UnpicklingError,
        ) as exc:
            raise IndexCorruptedError(
                folder / index_name, f"the legacy index is unreadable ({exc})"
            ) from exc
        if not isinstance(store, cls):
            raise IndexCorruptedError(
                folder / f"{index_name}.pkl", "it does not hold a FAISS store"
            )
        pickled = folder / f"{index_name}.pkl"
        persistence.check_vector_count(store.index, len(store.index_to_docstore_id), pickled)
        return store

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create a store holding ``texts`` (``create`` arguments go in ``kwargs``)."""
        store = cls._empty(embedding, kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async twin of :meth:`from_texts` (awaits the embedding model)."""
        store = cls._empty(embedding, kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    def from_embeddings(
        cls,
        text_embeddings: Iterable[tuple[str, list[float]]],
        embedding: Embeddings,
        metadatas: Iterable[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Create a store from ``(text, vector)`` pairs."""
        store = cls._empty(embedding, kwargs)
        store.add_embeddings(text_embeddings, None if metadatas is None else list(metadatas), ids)
        return store

    @classmethod
    async def afrom_embeddings(
        cls,
        text_embeddings: Iterable[tuple[str, list[float]]],
        embedding: Embeddings,
        metadatas: Iterable[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async twin of :meth:`from_embeddings`."""
        store = cls._empty(embedding, kwargs)
        metas = None if metadatas is None else list(metadatas)
        await store.aadd_embeddings(text_embeddings, metas, ids=ids)
        return store

    @classmethod
    def _empty(cls, embedding: Embeddings, kwargs: dict[str, Any]) -> Self:
        options = {
            key: kwargs.pop(key)
            for key in (
                "dimension",
                "distance_strategy",
                "normalize_L2",
                "embedding_model_id",
                "relevance_score_fn",
            )
            if key in kwargs
        }
        if kwargs:
            raise ConfigurationError(
                f"unexpected arguments {sorted(kwargs)}; AsyncFAISS.create() accepts "
                "dimension, distance_strategy, normalize_L2, embedding_model_id and "
                "relevance_score_fn"
            )
        return cls.create(embedding, **options)


def _require_ids(ids: Sequence[str] | None) -> list[str]:
    if ids is None:
        raise VectorStoreError(
            "delete() needs the ids to remove; to start over, create a new store "
            "with AsyncFAISS.create()"
        )
    return list(ids)
