"""The engine facade: index, query and answer over one index directory.

:class:`AsyncRAGEngine` is the real implementation; :class:`RAGEngine` has the same
constructor and sync twins that also work inside a running event loop (Jupyter).
The engine owns the one :class:`ServiceLimiter` of each external service it calls: the
embedding service's (shared by indexing and query embedding) and the chat service's
(shared by every answer).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async._checks import check_question
from langchain_rag_async._closing import AsyncClosing, Closing
from langchain_rag_async._paths import aresolve
from langchain_rag_async.aio import LoopBound, run_sync
from langchain_rag_async.aio.deadline import deadline
from langchain_rag_async.config import RAGConfig
from langchain_rag_async.embeddings.factory import (
    aclose_base_embeddings,
    build_base_embeddings,
    embedding_limiter,
)
from langchain_rag_async.embeddings.rate_limited import RateLimitedEmbeddings
from langchain_rag_async.errors import (
    IndexNotFoundError,
    RAGError,
    RetrievalTimeoutError,
    UsageError,
)
from langchain_rag_async.gc_tuning import freeze_long_lived
from langchain_rag_async.indexing.lock import run_lock_if_free
from langchain_rag_async.indexing.resources import (
    MANIFEST_FILE,
    check_model,
    reconcile_sparse,
    resolve_model_id,
)
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.observability import get_logger
from langchain_rag_async.retrievers.hybrid import HybridRetriever
from langchain_rag_async.sparse_index import FTS5Index
from langchain_rag_async.vectorstores import AsyncFAISS

if TYPE_CHECKING:  # imported where used: a query loads neither LangGraph graph
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from langchain_rag_async.answering import AnswerEvent, AnswerResult
    from langchain_rag_async.indexing.events import IndexingSummary
    from langchain_rag_async.postgres import PostgresHybridRetriever, PostgresVectorStore

__all__ = ("AsyncRAGEngine", "RAGEngine")

ProgressHandler = Callable[[dict[str, Any]], None]
T = TypeVar("T")
_log = get_logger(__name__)


class AsyncRAGEngine(AsyncClosing):
    """Index a directory, then query it (hybrid search) and answer questions (streamed).

    Args:
        index_dir: The index directory; ``config.index_dir`` when not given.
        config: All settings; :meth:`RAGConfig.from_env` when not given.
        store_url: ``postgresql://...``: the index lives in that database (vectors,
            keyword index, records, cache; :mod:`langchain_rag_async.postgres`) instead
            of ``index_dir``; ``config.store_url`` when not given.
        embeddings: Your own base embedding model instead of the configured one.
        llm: Your own chat model instead of the configured one.

    Attributes:
        limiter: The one limiter of the embedding service (indexing and queries).
        chat_limiter: The one limiter of the chat service (``config.llm``'s
            ``rate_limit`` and ``concurrency``), held around every model call of an answer.

    Example:
        ```python
        async with AsyncRAGEngine(index_dir=".rag-index") as engine:
            await engine.aindex_directory("docs")
            async for event in engine.astream_answer("How do lifetimes work?"):
                ...
        ```
    """

    def __init__(
        self,
        index_dir: str | Path | None = None,
        config: RAGConfig | None = None,
        *,
        store_url: str | None = None,
        embeddings: Embeddings | None = None,
        llm: BaseChatModel | None = None,
    ) -> None:
        config = config or RAGConfig.from_env()
        if index_dir is not None:
            config = replace(config, index_dir=Path(index_dir))
        if store_url is not None:
            config = replace(config, store_url=store_url)
        self.config = config
        self._embeddings = embeddings
        self._llm = llm
        self.limiter = embedding_limiter(config.embeddings, base=embeddings)
        self.chat_limiter = ServiceLimiter.from_config(f"chat:{config.llm.provider}", config.llm)
        self._stores: _Stores | None = None
        self._retired: list[_Stores] = []
        self._load_locks: LoopBound[asyncio.Lock] = LoopBound(asyncio.Lock)
        self._checks: LoopBound[_Check] = LoopBound(_Check)

    # -- indexing -----------------------------------------------------------------------

    async def aindex_directory(
        self,
        path: str | Path,
        *,
        on_progress: ProgressHandler | None = None,
        timeout: float | None = None,
        confine_to: Sequence[Path] = (),
    ) -> IndexingSummary:
        """Index ``path`` incrementally into this engine's index directory.

        ``confine_to``: when given, files whose real path (links followed) lies outside
        these directories are reported and not read (``LoaderConfig.confine_to``).
        """
        from langchain_rag_async.indexing.api import aindex_directory

        config = self.config
        if confine_to:
            loader = replace(config.loader, confine_to=tuple(confine_to))
            config = replace(config, loader=loader)
        summary = await aindex_directory(
            path,
            config=config,
            embeddings=self._embeddings,
            limiter=self.limiter,
            on_progress=on_progress,
            timeout=timeout,
        )
        await self._retire_stores()  # the next query sees the new index
        return summary

    # -- retrieval ----------------------------------------------------------------------

    async def aretriever(
        self, *, k: int | None = None
    ) -> HybridRetriever | PostgresHybridRetriever:
        """The hybrid retriever over the saved index (loaded once, reloaded after indexing).

        The retriever stays usable until the engine re-indexes or closes; the engine's own
        methods keep the stores open while they use them, even across a re-index.

        Raises:
            IndexNotFoundError: Nothing was indexed in the index directory yet.
            EmbeddingModelMismatchError: The index was built with another model.
        """
        stores = await self._current_stores()
        return stores.retriever(self.config, k)

    @asynccontextmanager
    async def _using(
        self, k: int | None
    ) -> AsyncIterator[HybridRetriever | PostgresHybridRetriever]:
        """A retriever whose stores stay open until the block ends (re-index or not)."""
        stores = await self._current_stores()
        stores.users += 1
        try:
            yield stores.retriever(self.config, k)
        finally:
            stores.users -= 1
            if stores.retired and stores.users == 0:
                await self._close_retired(stores)

    async def _current_stores(self) -> _Stores:
        stores = self._stores
        if stores is not None and self._refresh_due(stores):
            # Queries arriving during the check wait for it (one stat; a load if the index
            # changed), so none of them is answered from the older index after it. They
            # share one check and all go on when it ends: taking a lock in turn would
            # release them one loop turn apart, spreading a burst of queries over
            # seconds of a busy loop.
            check = self._checks.get()
            if check.task is None or check.task.done():
                check.task = asyncio.get_running_loop().create_task(
                    self._refresh(stores), name="rag-index-refresh"
                )
            await asyncio.shield(check.task)  # a cancelled query leaves it to the others
        if self._stores is None:
            async with self._load_locks.get():  # concurrent first queries load it once
                if self._stores is None:
                    return await self._load_current()
        return self._stores

    async def _refresh(self, stores: _Stores) -> None:
        """Load the saved index if it is newer than ``stores`` (one ``stat`` otherwise)."""
        async with self._load_locks.get():
            if self._stores is stores and self._refresh_due(stores):
                saved = await run_in_executor(None, _manifest_key, stores.index_dir)
                if saved is not None and saved != stores.manifest_key:
                    _log.info("newer saved index found", index_dir=str(stores.index_dir))
                    await self._retire_stores()
                    await self._load_current()
                # Only now: until the check is done, every query waits for it.
                stores.checked_at = time.monotonic()

    async def _load_current(self) -> _Stores:
        self._stores = stores = await self._load_stores()
        if self.config.freeze_gc:
            freeze_long_lived(once=True)  # gc_tuning: short GC pauses
        return stores

    def _refresh_due(self, stores: _Stores) -> bool:
        """Whether to check for a newer saved index (every ``refresh_interval``).

        Never over PostgreSQL: each query reads the latest committed checkpoint.
        """
        if stores.sparse is None:
            return False
        return time.monotonic() - stores.checked_at >= self.config.retrieval.refresh_interval

    async def aquery(
        self,
        question: str,
        k: int | None = None,
        *,
        filter: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[Document]:
        """The ``k`` chunks most relevant to ``question`` (dense + sparse, fused).

        Each document carries ``metadata["scores"] = {"dense", "sparse", "fused"}``.

        Args:
            question: What to search for.
            k: How many chunks; ``config.retrieval.k`` when ``None``.
            filter: Exact-match metadata filter (``{"source": "a.md"}``).
            timeout: Seconds for the search; ``None``: no limit.

        Raises:
            RetrievalError: The question is empty.
            RetrievalTimeoutError: The search took longer than ``timeout`` (it was cancelled).
            IndexNotFoundError: Nothing was indexed in the index directory yet.
        """
        check_question(question)
        k = self.config.retrieval.k if k is None else k
        kwargs: dict[str, Any] = {"k": k}
        if filter is not None:
            kwargs["filter"] = filter

        def timed_out(seconds: float) -> RetrievalTimeoutError:
            return RetrievalTimeoutError(
                f"no results for {question!r} within {seconds:g} s; allow more time (timeout=)",
                timeout=seconds,
            )

        async with self._using(k) as retriever, deadline(timeout, timed_out):
            return await retriever.ainvoke(question, **kwargs)

    # -- answers ------------------------------------------------------------------------

    async def aanswer(
        self,
        question: str,
        *,
        history: Sequence[BaseMessage] = (),
        k: int | None = None,
        timeout: float | None = None,
    ) -> AnswerResult:
        """Answer ``question`` from the index, citing sources as ``[n]``.

        ``k`` is ``config.retrieval.k`` when ``None``; the chat model is called through
        :attr:`chat_limiter`.
        """
        from langchain_rag_async.answering import aanswer

        check_question(question)
        k = self.config.retrieval.k if k is None else k
        llm = await self.allm()
        async with self._using(k) as retriever:
            return await aanswer(
                question,
                retriever=retriever,
                llm=llm,
                history=history,
                k=k,
                timeout=timeout,
                limiter=self.chat_limiter,
            )

    async def astream_answer(
        self,
        question: str,
        *,
        history: Sequence[BaseMessage] = (),
        k: int | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[AnswerEvent, None]:
        """Stream the answer: a ``sources`` event, ``token`` events, then ``done`` or ``error``."""
        from langchain_rag_async.answering import astream_answer

        check_question(question)
        k = self.config.retrieval.k if k is None else k
        llm = await self.allm()
        async with self._using(k) as retriever:
            events = astream_answer(
                question,
                retriever=retriever,
                llm=llm,
                history=history,
                k=k,
                timeout=timeout,
                limiter=self.chat_limiter,
            )
            async with aclosing(events):
                async for event in events:
                    yield event

    async def allm(self) -> BaseChatModel:
        """The chat model: yours, or the configured one (extractive offline by default)."""
        if self._llm is None:
            from langchain_rag_async.chat_models.factory import abuild_chat_model

            self._llm = await abuild_chat_model(self.config.llm)
        return self._llm

    # -- lifecycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the open index files (also those a running query still uses)."""
        check = self._checks.get().task
        if check is not None and not check.done():  # let it end (its stores close below)
            await asyncio.wait([check])
        await self._retire_stores()
        retired, self._retired = self._retired, []
        for stores in retired:
            await stores.aclose()

    async def _load_stores(self) -> _Stores:
        if self.config.store_url:
            return await self._load_postgres(self.config.store_url)
        index_dir = await aresolve(self.config.index_dir)
        # Read before the load: a save landing meanwhile is then seen as a change, once more.
        saved = await run_in_executor(None, _manifest_key, index_dir)
        model_id = resolve_model_id(self.config, self._embeddings)
        if not await run_in_executor(None, index_dir.is_dir):
            raise IndexNotFoundError(index_dir)
        if await check_model(index_dir, model_id) is None:
            raise IndexNotFoundError(index_dir)
        query_embeddings, own_base = await self._query_embeddings()
        store = await AsyncFAISS.aload_local(
            str(index_dir), query_embeddings, expected_model_id=model_id
        )
        # A directory this process may not write (a read-only mount, another user's
        # index) is searched as it is: nothing is repaired or created there.
        if not await run_in_executor(None, os.access, index_dir, os.W_OK):
            sparse = await _read_only_sparse(index_dir, store)
        else:
            sparse = FTS5Index.in_index_dir(index_dir)
            try:
                await sparse.averify()  # damage since its last write: refuse, never rank wrongly
                if await sparse.acount() != len(store.index_to_docstore_id):
                    # A missing or lagging sparse index (a crash, a copied index without
                    # sparse.sqlite): rebuild it from the store rather than search half
                    # blind. Not while a run is indexing (another process, maybe): it is
                    # mid-checkpoint.
                    async with run_lock_if_free(index_dir) as free:
                        if free:
                            await reconcile_sparse(store, sparse)
            except BaseException:
                await sparse.aclose()
                raise
        return _Stores(
            store=store,
            sparse=sparse,
            own_base=own_base,
            index_dir=index_dir,
            manifest_key=saved,
            checked_at=time.monotonic(),
        )

    async def _query_embeddings(self) -> tuple[RateLimitedEmbeddings, Embeddings | None]:
        """The query model behind the engine's limiter, and the base model if we built it."""
        own_base: Embeddings | None = None
        if self._embeddings is not None:
            base = self._embeddings
        else:
            base = own_base = await run_in_executor(
                None, build_base_embeddings, self.config.embeddings
            )
        emb = self.config.embeddings
        limited = RateLimitedEmbeddings(
            base,
            limiter=self.limiter,
            batch_size=emb.batch_size,
            retry=emb.retry,
            request_timeout=emb.request_timeout,
        )
        return limited, own_base

    async def _load_postgres(self, store_url: str) -> _Stores:
        """The query side of an index in PostgreSQL (nothing loaded into memory)."""
        from langchain_rag_async.postgres import PostgresDatabase, PostgresVectorStore, TableNames
        from langchain_rag_async.postgres.schema import acheck_model, aread_meta

        db = PostgresDatabase(store_url, pool=self.config.store_pool)
        names = TableNames()
        try:
            model_id = resolve_model_id(self.config, self._embeddings)
            if "dimension" not in await aread_meta(db, names):
                raise IndexNotFoundError(db.where)
            await acheck_model(db, names, model_id, record=False)
            query_embeddings, own_base = await self._query_embeddings()
        except BaseException:
            await db.aclose()
            raise
        return _Stores(
            store=PostgresVectorStore(db, query_embeddings, names=names),
            sparse=None,
            own_base=own_base,
            index_dir=Path(db.where),
            manifest_key=None,
            checked_at=time.monotonic(),
        )

    async def _retire_stores(self) -> None:
        """Stop handing out the current stores; close them once no query uses them."""
        stores, self._stores = self._stores, None
        if stores is None:
            return
        stores.retired = True
        if stores.users == 0:
            await stores.aclose()
        else:
            self._retired.append(stores)

    async def _close_retired(self, stores: _Stores) -> None:
        if stores in self._retired:
            self._retired.remove(stores)
        await stores.aclose()


async def _read_only_sparse(index_dir: Path, store: AsyncFAISS) -> FTS5Index:
    """The sparse index of a directory this process may not write (a read-only mount).

    Searched as it is on disk when it holds as many chunks as the store; missing, damaged
    or lagging (a crash), it cannot be repaired there, so it is rebuilt in memory from the
    store for this process rather than searched half blind.
    """
    sparse = FTS5Index.in_index_dir(index_dir, read_only=True)
    try:
        await sparse.averify()
        if await sparse.acount() == len(store.index_to_docstore_id):
            return sparse
    except RAGError:
        pass
    await sparse.aclose()
    _log.warning("sparse index unusable in a read-only directory; rebuilt in memory")
    memory = FTS5Index()
    try:
        ids = [str(i) for i in store.index_to_docstore_id.values()]
        await memory.aupsert(await store.aget_by_ids(ids))
    except BaseException:
        await memory.aclose()
        raise
    return memory


def _manifest_key(index_dir: Path) -> tuple[int, int, int] | None:
    """What changes when a save replaces the manifest (inode, mtime, size); None: none."""
    try:
        stat = (index_dir / MANIFEST_FILE).stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


@dataclass(slots=True)
class _Check:
    """The running check for a newer saved index, shared by the queries waiting for it."""

    task: asyncio.Task[None] | None = None


@dataclass(slots=True, eq=False)
class _Stores:
    """One loaded generation of the index: store, sparse index, query model, users."""

    store: AsyncFAISS | PostgresVectorStore
    sparse: FTS5Index | None  # None: the index is in PostgreSQL (keyword side included)
    own_base: Embeddings | None
    index_dir: Path
    manifest_key: tuple[int, int, int] | None
    checked_at: float
    users: int = 0
    retired: bool = False

    def retriever(
        self, config: RAGConfig, k: int | None
    ) -> HybridRetriever | PostgresHybridRetriever:
        retrieval = config.retrieval
        if k is not None:
            retrieval = replace(retrieval, k=k, fetch_k=max(retrieval.fetch_k, k))
        if isinstance(self.store, AsyncFAISS) and self.sparse is not None:
            return HybridRetriever.from_config(self.store, self.sparse, retrieval)
        from langchain_rag_async.postgres import PostgresVectorStore

        if not isinstance(self.store, PostgresVectorStore):
            raise UsageError("an index is either a directory (FAISS + FTS5) or PostgreSQL")
        return HybridRetriever.from_config(self.store, None, retrieval)  # one SQL statement

    async def aclose(self) -> None:
        if self.sparse is not None:
            await self.sparse.aclose()
        elif not isinstance(self.store, AsyncFAISS):
            await self.store.aclose()
        if self.own_base is not None:
            await aclose_base_embeddings(self.own_base)


class RAGEngine(Closing):
    """Sync twin of :class:`AsyncRAGEngine` (same constructor).

    Every method runs its async twin through the package's one sync bridge
    (:func:`langchain_rag_async.aio.run_sync`: one event loop in a daemon thread, shared
    by the process) and waits for the result. So it works from plain scripts and from
    inside a running event loop (Jupyter, an async web handler) alike, and clients bound
    to a loop (HTTP connections of ``ChatOpenAI`` or ``OpenAIEmbeddings``, SQLite
    connections) stay valid from one call to the next. Call :meth:`close` (or use
    ``with``) when done; the engine cannot be used after that.
    """

    def __init__(
        self,
        index_dir: str | Path | None = None,
        config: RAGConfig | None = None,
        *,
        store_url: str | None = None,
        embeddings: Embeddings | None = None,
        llm: BaseChatModel | None = None,
    ) -> None:
        self._engine = AsyncRAGEngine(
            index_dir, config, store_url=store_url, embeddings=embeddings, llm=llm
        )
        self._closed = False

    @property
    def config(self) -> RAGConfig:
        """The engine's settings."""
        return self._engine.config

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def index_directory(
        self, path: str | Path, *, on_progress: ProgressHandler | None = None
    ) -> IndexingSummary:
        """Sync twin of :meth:`AsyncRAGEngine.aindex_directory`."""
        return self._call(self._engine.aindex_directory(path, on_progress=on_progress))

    def query(
        self, question: str, k: int | None = None, *, filter: dict[str, Any] | None = None
    ) -> list[Document]:
        """Sync twin of :meth:`AsyncRAGEngine.aquery`."""
        return self._call(self._engine.aquery(question, k, filter=filter))

    def answer(
        self, question: str, *, history: Sequence[BaseMessage] = (), k: int | None = None
    ) -> AnswerResult:
        """Sync twin of :meth:`AsyncRAGEngine.aanswer`."""
        return self._call(self._engine.aanswer(question, history=history, k=k))

    async def aclose(self) -> None:
        """Close from async code (runs :meth:`close` in a worker thread)."""
        await run_in_executor(None, self.close)

    def close(self) -> None:
        """Close the open index files (idempotent); the shared sync bridge keeps running."""
        if self._closed:
            return
        self._closed = True
        run_sync(self._engine.aclose())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise UsageError("this RAGEngine is closed; create a new one")
        return run_sync(coro)
