"""What the indexing pipeline needs of its store and its record manager, as Protocols.

The directory index (:class:`~langchain_rag_async.vectorstores.AsyncFAISS`,
:class:`~langchain_rag_async.indexing.record_manager.SQLiteRecordManager`) and the
PostgreSQL one (:class:`~langchain_rag_async.postgres.PostgresIndexWriter`,
:class:`~langchain_rag_async.postgres.PostgresRecordManager`) both satisfy them, checked
by mypy where the pipeline is built over each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from langchain_core.documents import Document

from langchain_rag_async.indexing.record_manager import FileRecord

__all__ = ("IndexRecords", "IndexStore")


class IndexStore(Protocol):
    """The chunk store of an indexing run: add, delete, read back, save at checkpoints."""

    async def aadd_embeddings(
        self,
        text_embeddings: Iterable[tuple[str, list[float]]],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
    ) -> list[str]:
        """Store chunks with their vectors under ``ids``."""
        ...

    async def adelete(self, ids: list[str] | None = None) -> bool | None:
        """Delete chunks by id."""
        ...

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored chunks of ``ids`` (as the run sees them)."""
        ...

    async def asave_local(self, folder_path: str) -> None:
        """Make the checkpoint's chunks durable (a no-op where the records commit them)."""
        ...


class IndexRecords(Protocol):
    """The record manager of an indexing run: chunk keys by file, and the file table."""

    async def alist_keys(
        self, *, group_ids: Sequence[str] | None = None, limit: int | None = None
    ) -> list[str]:
        """Chunk keys, optionally of some files only, at most ``limit`` of them."""
        ...

    async def acommit_file_batch(
        self,
        *,
        files: Sequence[FileRecord],
        keys: Sequence[str],
        group_ids: Sequence[str | None],
        delete_keys: Sequence[str] = (),
    ) -> None:
        """Record a checkpoint's files and chunk keys in one transaction."""
        ...

    async def adelete_files(self, paths: Sequence[str]) -> None:
        """Forget files that were deleted."""
        ...
