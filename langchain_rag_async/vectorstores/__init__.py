"""Vector stores of langchain-rag-async: :class:`AsyncFAISS` and its on-disk format."""

from __future__ import annotations

from langchain_rag_async.vectorstores.faiss import AsyncFAISS, read_manifest

__all__ = ["AsyncFAISS", "read_manifest"]
