"""langchain-tests standard suite for HybridRetriever (built by from_documents), no xfail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from langchain_rag_async.retrievers import HybridRetriever

DOCUMENTS = [
    Document(page_content="Ownership is Rust's most unique feature.", metadata={"ch": 4}),
    Document(page_content="Each value in Rust has an owner.", metadata={"ch": 4}),
    Document(page_content="References allow you to refer to a value without owning it."),
    Document(page_content="Slices let you reference a contiguous sequence of elements."),
    Document(page_content="Structs group related values under one name.", metadata={"ch": 5}),
    Document(page_content="Enums define a type by enumerating its possible variants."),
]

_created: list[HybridRetriever] = []


def _build(**params: Any) -> HybridRetriever:
    """from_documents, remembering the retriever so its in-memory stores get closed."""
    retriever = HybridRetriever.from_documents(**params)
    _created.append(retriever)
    return retriever


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _close_created(self) -> Iterator[None]:
        yield
        while _created:
            retriever = _created.pop()
            retriever.close()
            assert retriever.owns_stores

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        # The suite calls this with retriever_constructor_params (plus k=...).
        return cast("type[BaseRetriever]", _build)

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"documents": DOCUMENTS, "embedding": DeterministicFakeEmbedding(size=32)}

    @property
    def retriever_query_example(self) -> str:
        return "who owns a value in Rust?"


class TestWeightedHybridRetrieverStandard(TestHybridRetrieverStandard):
    """The same suite with weighted score fusion instead of reciprocal rank fusion."""

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {**super().retriever_constructor_params, "fusion": "weighted", "fetch_k": 2}
