"""FTS5Retriever: sparse-only retrieval, the standard retriever suite, arguments, lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from langchain_rag_async import FTS5Index, FTS5Retriever
from langchain_rag_async.errors import ConfigurationError, RetrievalError
from tests.unit.test_hybrid_standard import DOCUMENTS

_created: list[FTS5Retriever] = []


def _build(**params: Any) -> FTS5Retriever:
    retriever = FTS5Retriever.from_documents(**params)
    _created.append(retriever)
    return retriever


class TestFTS5RetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _close_created(self) -> Iterator[None]:
        yield
        while _created:
            _created.pop().close()

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return cast("type[BaseRetriever]", _build)

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"documents": DOCUMENTS}

    @property
    def retriever_query_example(self) -> str:
        return "who owns a value in Rust?"


async def test_ranks_by_bm25_with_scores_and_filters() -> None:
    async with await FTS5Retriever.afrom_documents(DOCUMENTS, k=5) as retriever:
        docs = await retriever.ainvoke("structs group values")
        assert docs[0].page_content.startswith("Structs")
        scores = [doc.metadata["scores"]["sparse"] for doc in docs]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0
        only_ch4 = await retriever.ainvoke("value rust", filter={"ch": 4})
        assert only_ch4 and all(doc.metadata["ch"] == 4 for doc in only_ch4)
        assert await retriever.ainvoke('NEAR("value" -rust*') is not None  # escaped
        with pytest.raises(RetrievalError, match="empty"):
            await retriever.ainvoke("   ")
        with pytest.raises(TypeError, match="fetch_k"):
            await retriever.ainvoke("value", fetch_k=3)
        with pytest.raises(ValueError, match="k must"):
            await retriever.ainvoke("value", k=0)
    with pytest.raises(RetrievalError, match="closed"):
        await retriever.ainvoke("value")


def test_over_an_existing_index_it_does_not_own(tmp_path: Path) -> None:
    index = FTS5Index(tmp_path / "sparse.sqlite")
    try:
        index.upsert([Document(id="a", page_content="borrowing rules", metadata={"ch": 4})])
        retriever = FTS5Retriever(index=index, k=2)
        assert [doc.id for doc in retriever.invoke("borrowing")] == ["a"]
        retriever.close()  # not the owner: the index stays open
        assert index.count() == 1
    finally:
        index.close()
    with pytest.raises(ConfigurationError, match="k must"):
        FTS5Retriever(index=index, k=0)
