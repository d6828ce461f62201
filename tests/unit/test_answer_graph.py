"""Tests of the answer graph: rewrite → retrieve → generate, its state and its streams."""

from __future__ import annotations

import re
from typing import Any

import pytest
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import Field

from langchain_rag_async.answering import AnswerContext, build_answer_graph
from langchain_rag_async.answering.graph import (
    can_rewrite,
    condense_question,
    source_previews,
    validate_question,
)
from langchain_rag_async.chat_models import ExtractiveChatModel
from langchain_rag_async.errors import ConfigurationError, RetrievalError

CITATION = re.compile(r"\[(\d+)\]")

BREAD = Document(
    id="recipes/sourdough.md#0",
    page_content=(
        "A sourdough starter is a culture of wild yeast and lactic acid bacteria. "
        "Feed the starter with equal weights of flour and water every day."
    ),
    metadata={"source": "recipes/sourdough.md", "start_index": 0},
)
PODS = Document(
    id="k8s/pods.md#3",
    page_content=(
        "A Pod is the smallest deployable unit that Kubernetes schedules onto a node. "
        "Containers in one Pod share a network namespace and can talk over localhost."
    ),
    metadata={
        "source": "k8s/pods.md",
        "start_index": 812,
        "scores": {"dense": 0.8, "sparse": None, "fused": 0.0164},
    },
)
RUST = Document(
    page_content="Each value in Rust has an owner. There can only be one owner at a time.",
    metadata={"source": "rust/ownership.md"},
)


class FixedRetriever(BaseRetriever):
    """Returns fixed documents (the first ``k``) and records every query and ``k``."""

    documents: list[Document]
    calls: list[tuple[str, int]] = Field(default_factory=list)
    failure: str | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int = 4
    ) -> list[Document]:
        self.calls.append((query, k))
        if self.failure:
            raise OSError(self.failure)
        return self.documents[:k]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int = 4
    ) -> list[Document]:
        return self._get_relevant_documents(query, run_manager=run_manager.get_sync(), k=k)


class KlessRetriever(BaseRetriever):
    """A retriever that takes no ``k`` and returns everything it has."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.documents)


def fake_llm(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=r) for r in replies]))


async def run_streamed(inputs: Any, context: AnswerContext) -> dict[str, list[Any]]:
    """Stream the graph with updates and messages; collect the parts by mode."""
    parts: dict[str, list[Any]] = {"updates": [], "messages": [], "values": []}
    async for mode, data in build_answer_graph().astream(
        inputs, context=context, stream_mode=["updates", "messages", "values"]
    ):
        parts[mode].append(data)
    return parts


# -- streams of the graph -------------------------------------------------------------------


async def test_tokens_stream_as_messages_and_sources_as_updates() -> None:
    retriever = FixedRetriever(documents=[BREAD, PODS])
    llm = fake_llm("Pods share a network namespace [2].")
    parts = await run_streamed(
        {"question": "What do containers in a Pod share?"},
        AnswerContext(retriever=retriever, llm=llm, k=2),
    )

    nodes = [next(iter(update)) for update in parts["updates"]]
    assert nodes == ["retrieve", "generate"]  # no history: no rewrite
    retrieved = parts["updates"][0]["retrieve"]
    assert [d.id for d in retrieved["documents"]] == [BREAD.id, PODS.id]
    assert retrieved["sources"] == [
        {
            "n": 1,
            "source": "recipes/sourdough.md",
            "chunk_id": BREAD.id,
            "score": None,
            "start_index": 0,
        },
        {"n": 2, "source": "k8s/pods.md", "chunk_id": PODS.id, "score": 0.0164, "start_index": 812},
    ]
    assert retrieved["search_query"] == "What do containers in a Pod share?"

    tokens = [(m, meta) for m, meta in parts["messages"] if m.text]
    assert len(tokens) > 3  # streamed token by token, not one final message
    assert all(isinstance(m, AIMessageChunk) for m, _ in tokens)
    assert {meta["langgraph_node"] for _, meta in tokens} == {"generate"}
    final = parts["values"][-1]
    assert "".join(m.text for m, _ in tokens) == final["answer"]
    assert final["answer"] == "Pods share a network namespace [2]."
    assert final["sources"] == retrieved["sources"]
    assert final.get("error") is None
    assert retriever.calls == [("What do containers in a Pod share?", 2)]


async def test_generate_prompt_holds_numbered_sources_and_history() -> None:
    seen: list[str] = []

    class RecordingModel(GenericFakeChatModel):
        async def _astream(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append("\n---\n".join(f"{m.type}: {m.text}" for m in messages))
            async for chunk in super()._astream(messages, *args, **kwargs):
                yield chunk

    llm = RecordingModel(messages=iter([AIMessage(content="pods"), AIMessage(content="ok [1]")]))
    history = [HumanMessage("What is a Pod?"), AIMessage("The smallest deployable unit [1].")]
    state = await build_answer_graph().ainvoke(
        {"question": "What do they share?", "history": history},
        context=AnswerContext(retriever=FixedRetriever(documents=[PODS]), llm=llm),
    )
    assert state["answer"] == "ok [1]"
    prompt = seen[-1]
    assert "human: What is a Pod?" in prompt and "ai: The smallest deployable unit" in prompt
    assert "[1] (k8s/pods.md) A Pod is the smallest" in prompt
    assert prompt.endswith("Question: What do they share?")


# -- the offline extractive model -----------------------------------------------------------


async def test_extractive_answer_cites_the_right_source() -> None:
    retriever = FixedRetriever(documents=[BREAD, PODS, RUST])
    state = await build_answer_graph().ainvoke(
        {"question": "What do containers in one Pod share?"},
        context=AnswerContext(retriever=retriever, llm=ExtractiveChatModel(), k=3),
    )
    cited = {int(n) for n in CITATION.findall(state["answer"])}
    assert cited == {2}
    assert state["sources"][1]["source"] == "k8s/pods.md"
    assert "share a network namespace" in state["answer"]


async def test_in_memory_vector_store_retriever_gets_k() -> None:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    await store.aadd_documents([BREAD, PODS, RUST])
    state = await build_answer_graph().ainvoke(
        {"question": "Who owns a value in Rust?"},
        context=AnswerContext(retriever=store.as_retriever(), llm=ExtractiveChatModel(), k=2),
    )
    assert len(state["documents"]) == 2
    assert [s["n"] for s in state["sources"]] == [1, 2]


async def test_never_more_than_k_sources_even_when_the_retriever_ignores_k() -> None:
    state = await build_answer_graph().ainvoke(
        {"question": "Who owns a value?"},
        context=AnswerContext(
            retriever=KlessRetriever(documents=[BREAD, PODS, RUST]), llm=ExtractiveChatModel(), k=1
        ),
    )
    assert [d.page_content for d in state["documents"]] == [BREAD.page_content]


# -- follow-ups -----------------------------------------------------------------------------


async def test_history_triggers_a_model_rewrite() -> None:
    retriever = FixedRetriever(documents=[PODS])
    llm = fake_llm('"What do containers in a Kubernetes Pod share?"', "They share a network [1].")
    parts = await run_streamed(
        {
            "question": "What do they share?",
            "history": [HumanMessage("What is a Pod?"), AIMessage("A unit [1].")],
        },
        AnswerContext(retriever=retriever, llm=llm),
    )
    nodes = [next(iter(update)) for update in parts["updates"]]
    assert nodes == ["rewrite", "retrieve", "generate"]
    query = "What do containers in a Kubernetes Pod share?"
    assert parts["updates"][0]["rewrite"] == {"search_query": query}
    assert retriever.calls == [(query, 6)]
    # The rewrite's tokens stay out of the messages stream: only the answer is there.
    streamed = "".join(m.text for m, _ in parts["messages"])
    assert streamed == "They share a network [1]."


async def test_history_as_plain_dicts_like_a_deployment_sends() -> None:
    retriever = FixedRetriever(documents=[PODS])
    inputs: Any = {
        "question": "And what do they share?",
        "history": [{"role": "user", "content": "Tell me about Kubernetes pods"}],
    }
    state = await build_answer_graph().ainvoke(
        inputs,
        context=AnswerContext(retriever=retriever, llm=ExtractiveChatModel()),
    )
    assert state["search_query"] == "And what do they share? Kubernetes pods"
    assert "[1]" in state["answer"]


async def test_extractive_model_condenses_with_the_heuristic() -> None:
    retriever = FixedRetriever(documents=[RUST])
    history = [HumanMessage("How does ownership work in Rust?"), AIMessage("Each value [1].")]
    state = await build_answer_graph().ainvoke(
        {"question": "And what about borrowing?", "history": history},
        context=AnswerContext(retriever=retriever, llm=ExtractiveChatModel()),
    )
    query = "And what about borrowing? ownership work Rust"
    assert retriever.calls == [(query, 6)]
    assert state["search_query"] == query


def test_heuristic_skips_words_the_follow_up_already_has() -> None:
    history = [HumanMessage("How does ownership work in Rust?")]
    # "owns" and "ownership" share a stem: the follow-up already has it.
    assert condense_question("Who owns a value?", history) == "Who owns a value? work Rust"


async def test_a_failing_rewrite_falls_back_to_the_heuristic() -> None:
    class RewriteFails(GenericFakeChatModel):
        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("rewrite endpoint down")

        async def _astream(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("rewrite endpoint down")
            yield  # pragma: no cover

    retriever = FixedRetriever(documents=[RUST])
    state = await build_answer_graph().ainvoke(
        {"question": "Who owns it?", "history": [HumanMessage("Explain Rust borrowing")]},
        context=AnswerContext(retriever=retriever, llm=RewriteFails(messages=iter([]))),
    )
    assert retriever.calls[0][0] == "Who owns it? Rust borrowing"
    assert state["error"] is not None  # the same model then fails to answer, reported in state


def test_condense_question_adds_new_content_words_once() -> None:
    history = [
        HumanMessage("Explain how the borrow checker treats references"),
        AIMessage("It checks lifetimes [1]."),
    ]
    assert (
        condense_question("What about mutable references?", history)
        == "What about mutable references? borrow checker treats"
    )
    assert condense_question("Why?", []) == "Why?"
    assert condense_question(" Why? ", [AIMessage("only an AI turn")]) == "Why?"


def test_only_generative_models_rewrite() -> None:
    assert can_rewrite(fake_llm("x"))
    assert not can_rewrite(ExtractiveChatModel())


# -- validation and failures ----------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   \n\t", None])
async def test_empty_question_fails_before_any_work(question: str | None) -> None:
    retriever = FixedRetriever(documents=[PODS])
    llm = fake_llm("never")
    inputs: Any = {} if question is None else {"question": question}
    with pytest.raises(RetrievalError, match="question is empty"):
        await build_answer_graph().ainvoke(
            inputs, context=AnswerContext(retriever=retriever, llm=llm)
        )
    assert retriever.calls == []


def test_validate_question_strips() -> None:
    assert validate_question("  why?  ") == "why?"


async def test_graph_without_context_says_what_to_pass() -> None:
    with pytest.raises(ConfigurationError, match=r"context=AnswerContext\(retriever=\.\.\., llm="):
        await build_answer_graph().ainvoke({"question": "What is a Pod?"})


def test_context_rejects_a_non_positive_k() -> None:
    with pytest.raises(ConfigurationError, match="k must be a positive"):
        AnswerContext(retriever=FixedRetriever(documents=[]), llm=ExtractiveChatModel(), k=0)


async def test_retriever_failure_is_a_retrieval_error_with_the_query() -> None:
    retriever = FixedRetriever(documents=[], failure="index file vanished")
    with pytest.raises(
        RetrievalError, match="'What is a Pod\\?'.*OSError: index file vanished"
    ) as info:
        await build_answer_graph().ainvoke(
            {"question": "What is a Pod?"},
            context=AnswerContext(retriever=retriever, llm=fake_llm("never")),
        )
    assert isinstance(info.value.__cause__, OSError)


async def test_no_sources_still_answers_without_citations() -> None:
    state = await build_answer_graph().ainvoke(
        {"question": "What is a Pod?"},
        context=AnswerContext(retriever=FixedRetriever(documents=[]), llm=ExtractiveChatModel()),
    )
    assert state["sources"] == []
    assert state["answer"] and not CITATION.search(state["answer"])


# -- helpers and the deployment module -----------------------------------------------------


def test_source_previews_take_the_fused_score_and_the_document_id() -> None:
    doc = Document(
        page_content="x",
        metadata={"path": "a/b.txt", "chunk_id": "c-7", "start_index": True, "scores": {}},
    )
    assert source_previews([doc]) == [
        {"n": 1, "source": "a/b.txt", "chunk_id": "c-7", "score": None, "start_index": None}
    ]


def test_deployment_module_exposes_the_compiled_graph() -> None:
    from graphs.answer import graph

    assert graph.name == "answer"
    assert set(graph.nodes) >= {"rewrite", "retrieve", "generate"}


async def test_generate_trims_a_long_history_to_the_context_budget() -> None:
    seen: list[list[Any]] = []

    class RecordingModel(GenericFakeChatModel):
        async def _astream(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(list(messages))
            async for chunk in super()._astream(messages, *args, **kwargs):
                yield chunk

    history: list[Any] = []
    for turn in range(40):
        history += [HumanMessage(f"q{turn} " + "pods " * 200), AIMessage(f"a{turn} " + "ok " * 200)]
    llm = RecordingModel(messages=iter([AIMessage(content="pods"), AIMessage(content="ok [1]")]))
    context = AnswerContext(
        retriever=FixedRetriever(documents=[PODS]), llm=llm, max_history_tokens=1000
    )
    await build_answer_graph().ainvoke(
        {"question": "What do they share?", "history": history}, context=context
    )
    prompt = seen[-1]
    assert len(prompt) < 10  # system, a few latest turns, the question
    assert "a39" in prompt[-2].text and prompt[1].type == "human"
    with pytest.raises(ConfigurationError, match="max_history_tokens"):
        AnswerContext(retriever=FixedRetriever(documents=[]), llm=llm, max_history_tokens=-1)


def test_context_takes_its_default_k_from_the_retrieval_config() -> None:
    from langchain_rag_async.config import RetrievalConfig

    context = AnswerContext(retriever=FixedRetriever(documents=[]), llm=ExtractiveChatModel())
    assert context.k == RetrievalConfig().k
    assert context.limiter is None  # no limit unless the chat service's limiter is given
