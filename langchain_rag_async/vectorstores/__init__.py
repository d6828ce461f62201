"""Vector store: :class:`AsyncFAISS`, its on-disk format, :class:`CompactDocstore`."""

from __future__ import annotations

from langchain_rag_async.vectorstores._core import metadata_filter
from langchain_rag_async.vectorstores.docstore import CompactDocstore
from langchain_rag_async.vectorstores.faiss import AsyncFAISS, read_manifest

__all__ = ("AsyncFAISS", "CompactDocstore", "metadata_filter", "read_manifest")
