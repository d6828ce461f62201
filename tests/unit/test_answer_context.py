"""An empty AnswerContext, as the LangGraph server builds for runs that pass none."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_rag_async.answering import AnswerContext, build_answer_graph
from langchain_rag_async.chat_models import ExtractiveChatModel
from langchain_rag_async.errors import ConfigurationError


def context() -> AnswerContext:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([Document("Cargo is the Rust build system.", metadata={"source": "c.md"})])
    return AnswerContext(retriever=store.as_retriever(), llm=ExtractiveChatModel(), k=1)


async def test_an_empty_context_takes_the_default() -> None:
    calls = 0

    async def default() -> AnswerContext:
        nonlocal calls
        calls += 1
        return context()

    graph = build_answer_graph(default_context=default)
    final = await graph.ainvoke({"question": "What is Cargo?"}, context=AnswerContext())
    assert "Cargo" in final["answer"] and calls >= 1


async def test_an_empty_context_without_a_default_says_what_to_pass() -> None:
    graph = build_answer_graph()
    with pytest.raises(ConfigurationError, match="AnswerContext\\(retriever=..., llm=...\\)"):
        await graph.ainvoke({"question": "What is Cargo?"}, context=AnswerContext())
