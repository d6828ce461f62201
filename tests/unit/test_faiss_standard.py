"""langchain-tests standard suites for AsyncFAISS (sync and async), with no skips."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from langchain_rag_async.vectorstores import AsyncFAISS


class TestAsyncFAISSStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:  # type: ignore[override]
        yield AsyncFAISS.create(self.get_embeddings(), dimension=6)


class TestLazyDimensionAsyncFAISSStandard(VectorStoreIntegrationTests):
    """The same suite against a store that creates its FAISS index at the first add."""

    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:  # type: ignore[override]
        yield AsyncFAISS.create(self.get_embeddings())


class TestCosineAsyncFAISSStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self) -> Iterator[VectorStore]:  # type: ignore[override]
        yield AsyncFAISS.create(self.get_embeddings(), distance_strategy=DistanceStrategy.COSINE)
