"""What the package's retrievers share: settings checked after pydantic, closing owned indexes."""

from __future__ import annotations

from typing import Any

from langchain_rag_async._closing import Closing
from langchain_rag_async.sparse_index import FTS5Index

__all__ = ("ChecksSettings", "ClosesOwnedIndex")


class ChecksSettings:
    """Runs :meth:`_check_settings` once the pydantic fields are set.

    Checked after pydantic, not in a validator: pydantic would wrap a
    ``ConfigurationError`` (a ``ValueError``) in a ``ValidationError``, and callers catch
    library errors.
    """

    __slots__ = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._check_settings()

    def _check_settings(self) -> None:
        raise NotImplementedError


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
