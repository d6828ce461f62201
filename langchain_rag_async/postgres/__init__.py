"""The index in PostgreSQL + pgvector: many indexers and app servers share one index.

Chosen by one setting (``RAG_STORE_URL=postgresql://...``, ``--store-url``,
``AsyncRAGEngine(store_url=...)``); needs the ``postgres`` extra. Every part of the
directory index has its twin here: the vector store (:class:`PostgresVectorStore`), the
keyword index (a generated ``tsvector`` column of the same table), hybrid search in one
statement (:class:`PostgresHybridRetriever`), the record manager, the embedding cache and
the run lock (an advisory lock, across hosts).
"""

from __future__ import annotations

from langchain_rag_async.postgres._connect import PoolSettings, PostgresDatabase
from langchain_rag_async.postgres._sql import TableNames
from langchain_rag_async.postgres.cache import PostgresEmbeddingCache
from langchain_rag_async.postgres.hybrid import PostgresHybridRetriever
from langchain_rag_async.postgres.record_manager import PostgresRecordManager
from langchain_rag_async.postgres.store import PostgresVectorStore
from langchain_rag_async.postgres.writer import PostgresIndexWriter

__all__ = (
    "PoolSettings",
    "PostgresDatabase",
    "PostgresEmbeddingCache",
    "PostgresHybridRetriever",
    "PostgresIndexWriter",
    "PostgresRecordManager",
    "PostgresVectorStore",
    "TableNames",
)
