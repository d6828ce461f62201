"""An in-memory docstore that stays out of the garbage collector's way.

LangChain's ``InMemoryDocstore`` keeps one pydantic ``Document`` per chunk, and each one is
three or four objects the cyclic garbage collector tracks (the model, its ``__dict__``, its
``__pydantic_fields_set__`` set...). A full collection walks every tracked object while the
event loop stands still, so the pause grows with the index: about 20k extra objects for
SciFact's 5k documents, millions for a large index. Its ``add`` also copies the whole
dictionary on every call, so indexing in batches is quadratic.

:class:`CompactDocstore` stores each chunk as a tuple of two strings: its text and its
metadata as JSON. CPython stops tracking a tuple once the collector sees it holds only
untracked things, so chunks whose metadata values are plain (strings, numbers, booleans,
``None``; JSON gives those back exactly) cost the collector nothing. Other metadata is kept
as a deep-copied dictionary. ``search`` hands out a fresh ``Document`` the caller owns.
Adding is proportional to the batch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

from langchain_community.docstore.base import AddableMixin, Docstore
from langchain_core.documents import Document

from langchain_rag_async.errors import ConfigurationError, DocumentNotFoundError, DuplicateIdError

__all__ = ("CompactDocstore",)

_PLAIN = (str, int, float, bool, type(None))

# (text, metadata as JSON) for plain metadata, else (text, a private deep copy)
_Entry = tuple[str, str | dict[str, Any]]


def is_plain(metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` has string keys and string, number, boolean or ``None`` values."""
    return all(type(key) is str and type(value) in _PLAIN for key, value in metadata.items())


def _entry(doc: Document) -> _Entry:
    """Never fails where ``InMemoryDocstore`` would not (it stores the object as given)."""
    if is_plain(doc.metadata):
        try:
            return doc.page_content, json.dumps(doc.metadata, ensure_ascii=False)
        except ValueError:  # an int beyond the int-to-text digit limit
            pass
    return doc.page_content, _private_copy(doc.metadata)


def _private_copy(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy, or a shallow one for values that cannot be copied (locks, handles...)."""
    try:
        return copy.deepcopy(dict(metadata))
    except Exception:  # what deepcopy raises depends on the object
        return dict(metadata)


def _metadata(stored: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(stored, str):
        loaded: dict[str, Any] = json.loads(stored)
        return loaded
    return _private_copy(stored)


class CompactDocstore(Docstore, AddableMixin):
    """Chunks by id, kept as ``(page_content, metadata)`` pairs; see the module docstring.

    Drop-in for ``InMemoryDocstore`` (same ``add``/``delete``/``search`` contract, same
    ``ValueError`` on duplicate or unknown ids), with ``get``, ``len()``, ``in`` and
    iteration over ids besides. One difference: documents handed out (``search``, ``get``,
    the read-only ``_dict`` view) are copies, so changing one never changes the store;
    replace a document by adding it again through the vector store.
    """

    def __init__(self, documents: Mapping[str, Document] | None = None) -> None:
        """Create the store, optionally filled with ``documents`` (id -> document)."""
        self._entries: dict[str, _Entry] = {}
        if documents:
            self.add(dict(documents))

    def add(self, texts: dict[str, Document]) -> None:
        """Store ``texts`` (id -> document), all or none; an id already present raises."""
        self.add_prepared(self.prepare(texts))

    @staticmethod
    def prepare(texts: Mapping[str, Document]) -> dict[str, _Entry]:
        """Encode documents for :meth:`add_prepared` without touching the store.

        The vector store prepares a batch before it changes its FAISS index, so nothing
        about the documents can fail half-way through an update.
        """
        return {doc_id: _entry(doc) for doc_id, doc in texts.items()}

    def add_prepared(self, entries: dict[str, _Entry]) -> None:
        """Store what :meth:`prepare` returned.

        Raises:
            DuplicateIdError: An id is already stored (a ``ValueError``, as LangChain's
                ``InMemoryDocstore`` raises).
        """
        overlapping = entries.keys() & self._entries.keys()
        if overlapping:
            raise DuplicateIdError(sorted(overlapping), "the CompactDocstore")
        self._entries.update(entries)

    def delete(self, ids: list[Any]) -> None:
        """Remove ``ids``; those not stored are ignored unless none of them is.

        Raises:
            ConfigurationError: None of ``ids`` is stored (a ``ValueError``, as LangChain's
                ``InMemoryDocstore`` raises).
        """
        present = [doc_id for doc_id in ids if doc_id in self._entries]
        if not present:
            raise ConfigurationError(
                f"Tried to delete ids that do not exist in the CompactDocstore: {list(ids)[:10]}"
            )
        for doc_id in present:
            del self._entries[doc_id]

    def get(self, doc_id: str) -> Document | None:
        """A new ``Document`` (id set, metadata the caller's own) or ``None``."""
        entry = self._entries.get(doc_id)
        if entry is None:
            return None
        text, stored = entry
        return Document(page_content=text, metadata=_metadata(stored), id=doc_id)

    def fields(self, doc_id: str) -> tuple[str, dict[str, Any]] | None:
        """``(page_content, metadata)`` without building a Document or copying, or ``None``.

        For reading only (saving the store): the metadata may be the stored object itself.
        """
        entry = self._entries.get(doc_id)
        if entry is None:
            return None
        text, stored = entry
        return text, (json.loads(stored) if isinstance(stored, str) else stored)

    def search(self, search: str) -> str | Document:
        """The document stored under ``search``, or a "not found" message (Docstore API)."""
        found = self.get(search)
        return f"ID {search} not found." if found is None else found

    @property
    def _dict(self) -> Mapping[str, Document]:
        """Read-only id -> document view, for code written against ``InMemoryDocstore``.

        ``len(store.docstore._dict)`` and iterating ``store.docstore._dict.values()`` are
        common LangChain idioms; each document is built when it is looked up.
        """
        return _DocumentsView(self)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))


class _DocumentsView(Mapping[str, Document]):
    """The read-only mapping behind :attr:`CompactDocstore._dict`."""

    def __init__(self, store: CompactDocstore) -> None:
        self._store = store

    def __getitem__(self, doc_id: str) -> Document:
        found = self._store.get(doc_id)
        if found is None:
            raise DocumentNotFoundError([doc_id], "the CompactDocstore")
        return found

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)
