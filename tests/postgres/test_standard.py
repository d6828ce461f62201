"""langchain-tests standard suites for the Postgres store and hybrid retriever."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from langchain_rag_async.postgres import (
    PostgresDatabase,
    PostgresHybridRetriever,
    PostgresVectorStore,
)


class TestPostgresVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, pg_url: str) -> Iterator[VectorStore]:  # type: ignore[override]
        store = PostgresVectorStore(PostgresDatabase(pg_url), self.get_embeddings())
        yield store
        store.close()


_TEXTS = [f"document number {i} about topic {i % 4}" for i in range(12)]


class TestPostgresHybridRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _db(self, pg_url: str) -> Iterator[None]:
        store = PostgresVectorStore(PostgresDatabase(pg_url), DeterministicFakeEmbedding(size=8))
        docs = [Document(id=f"d{i}", page_content=t) for i, t in enumerate(_TEXTS)]
        store.add_documents(docs)
        type(self)._store = store
        yield
        store.close()

    @property
    def retriever_constructor(self) -> type[PostgresHybridRetriever]:
        return PostgresHybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, object]:
        return {"vectorstore": type(self)._store, "k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "document about topic"
