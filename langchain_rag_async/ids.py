"""Deterministic ids of chunks and hashes of their text: pure functions, no I/O.

Every chunk gets a stable id, :func:`chunk_id`, derived from its source, its position
and the sha256 of its text (:func:`content_hash`): re-splitting unchanged content gives
the same ids, changed content gives new ones, which is what incremental indexing needs.
The splitter, the embedding cache, the retrievers and the indexing pipeline all take
their ids and hashes from here (none of them needs the text splitter for it).
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable

from langchain_core.documents import Document

__all__ = ("CHUNK_ID_NAMESPACE", "chunk_id", "content_hash", "with_ids")

#: Namespace of the UUID5 chunk ids: ``uuid5(NAMESPACE_URL, "https://langchain-rag-async/chunk-id")``.
#: Never change it: every stored chunk id depends on it.
CHUNK_ID_NAMESPACE = uuid.UUID("da85bfbd-4d52-5348-a437-68354eb566b6")


def content_hash(text: str) -> str:
    """Return the sha256 hex digest of ``text`` encoded as UTF-8.

    Args:
        text: Any text, e.g. a chunk or a whole file.

    Returns:
        64 lowercase hex characters.
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(source: str, chunk_index: int, text: str) -> str:
    """Return the deterministic id of a chunk.

    The id is a UUID5 in :data:`CHUNK_ID_NAMESPACE` of ``source``, ``chunk_index`` and
    ``content_hash(text)``, so it changes exactly when one of the three changes.

    Args:
        source: Where the parent document came from (its ``source`` metadata).
        chunk_index: Position of the chunk within its parent, from 0.
        text: The chunk text.

    Returns:
        The UUID as a canonical 36-character string.
    """
    name = f"{source}\x00{chunk_index}\x00{content_hash(text)}"
    return str(uuid.uuid5(CHUNK_ID_NAMESPACE, name))


def with_ids(documents: Iterable[Document]) -> list[Document]:
    """Give documents without an id a deterministic one (copies; ids kept when present).

    The id derives from the ``source`` metadata, the text and how often that pair was seen
    before, so equal documents in one call stay distinct and a rebuild yields the same ids.

    Args:
        documents: The documents, with or without ids.

    Returns:
        The documents in order, each with an id.
    """
    seen: Counter[tuple[str, str]] = Counter()
    result = []
    for doc in documents:
        if doc.id:
            result.append(doc)
            continue
        source = str(doc.metadata.get("source", ""))
        occurrence = seen[source, doc.page_content]
        seen[source, doc.page_content] += 1
        new_id = chunk_id(source, occurrence, doc.page_content)
        result.append(doc.model_copy(update={"id": new_id}))
    return result
