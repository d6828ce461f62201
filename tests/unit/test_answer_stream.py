"""Tests of the answer API: streamed events, errors, timeout, cancellation, sync twin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any, Literal

import pytest
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_openai import ChatOpenAI
from pydantic import Field, PrivateAttr

from langchain_rag_async.answering import (
    AnswerContext,
    AnswerEvent,
    AnswerResult,
    DoneEvent,
    ErrorEvent,
    SourcesEvent,
    TokenEvent,
    aanswer,
    answer,
    astream_answer,
)
from langchain_rag_async.answering.stream import answer_graph
from langchain_rag_async.chat_models import ExtractiveChatModel
from langchain_rag_async.chat_models.factory import abuild_chat_model
from langchain_rag_async.config import LLMConfig, RetrievalConfig
from langchain_rag_async.errors import (
    ConfigurationError,
    GenerationError,
    GenerationTimeoutError,
    RetrievalError,
)
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.testing.openai_server import FakeOpenAIServer

BREAD = Document(
    id="bread-0",
    page_content="Feed the sourdough starter with equal weights of flour and water every day.",
    metadata={"source": "recipes/sourdough.md", "start_index": 0},
)
PODS = Document(
    id="pods-3",
    page_content=(
        "A Pod is the smallest deployable unit that Kubernetes schedules onto a node. "
        "Containers in one Pod share a network namespace and can talk over localhost."
    ),
    metadata={"source": "k8s/pods.md", "start_index": 120, "scores": {"fused": 0.03}},
)
QUESTION = "What do containers in one Pod share?"


class FixedRetriever(BaseRetriever):
    """Returns fixed documents (the first ``k``), or fails; records the queries."""

    documents: list[Document]
    queries: list[str] = Field(default_factory=list)
    failure: str | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int = 4
    ) -> list[Document]:
        self.queries.append(query)
        if self.failure:
            raise ConnectionRefusedError(self.failure)
        return self.documents[:k]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int = 4
    ) -> list[Document]:
        return self._get_relevant_documents(query, run_manager=run_manager.get_sync(), k=k)


class ScriptedChatModel(BaseChatModel):
    """Streams ``tokens``, then finishes, fails, or blocks until cancelled.

    ``blocked`` is set when the stream waits forever; ``closed`` when the stream's
    ``finally`` ran; ``cancelled`` tells whether it ended by cancellation.
    """

    tokens: list[str]
    then: Literal["finish", "fail", "block"] = "finish"
    _blocked: asyncio.Event = PrivateAttr(default_factory=asyncio.Event)
    _closed: asyncio.Event = PrivateAttr(default_factory=asyncio.Event)
    _cancelled: bool = PrivateAttr(default=False)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def blocked(self) -> asyncio.Event:
        return self._blocked

    @property
    def closed(self) -> asyncio.Event:
        return self._closed

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = AIMessage(content="".join(self.tokens))
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        try:
            for token in self.tokens:
                yield ChatGenerationChunk(message=AIMessageChunk(content=token))
            if self.then == "fail":
                raise ConnectionResetError("model endpoint reset the stream")
            if self.then == "block":
                self._blocked.set()
                await asyncio.Event().wait()  # never set: only cancellation ends this
        except asyncio.CancelledError:
            self._cancelled = True
            raise
        finally:
            self._closed.set()


def other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def collect(events: AsyncIterator[AnswerEvent]) -> list[AnswerEvent]:
    return [event async for event in events]


def tokens_of(events: list[AnswerEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TokenEvent)]


@pytest.fixture
def retriever() -> FixedRetriever:
    return FixedRetriever(documents=[BREAD, PODS])


# -- the happy paths ------------------------------------------------------------------------


async def test_events_come_in_order_with_a_fake_chat_model(retriever: FixedRetriever) -> None:
    llm = GenericFakeChatModel(messages=iter([AIMessage("They share a network namespace [2].")]))
    events = await collect(astream_answer(QUESTION, retriever=retriever, llm=llm, k=2))

    assert isinstance(events[0], SourcesEvent)
    assert [s["source"] for s in events[0].sources] == ["recipes/sourdough.md", "k8s/pods.md"]
    assert events[0].sources[1] == {
        "n": 2,
        "source": "k8s/pods.md",
        "chunk_id": "pods-3",
        "score": 0.03,
        "start_index": 120,
    }
    tokens = tokens_of(events)
    assert len(tokens) > 3
    assert all(isinstance(e, TokenEvent) for e in events[1:-1])
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.answer == "".join(tokens) == "They share a network namespace [2]."
    assert done.sources == events[0].sources
    assert [e.type for e in events] == ["sources", *["token"] * len(tokens), "done"]


async def test_extractive_model_streams_an_answer_citing_the_right_source(
    retriever: FixedRetriever,
) -> None:
    events = await collect(astream_answer(QUESTION, retriever=retriever, llm=ExtractiveChatModel()))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.answer == "".join(tokens_of(events))
    assert "share a network namespace and can talk over localhost. [2]" in done.answer
    assert "[1]" not in done.answer
    assert done.sources[1]["source"] == "k8s/pods.md"


async def test_chat_openai_streams_through_the_fake_server(
    retriever: FixedRetriever, openai_server: FakeOpenAIServer
) -> None:
    reply = "Containers in one Pod share a network namespace [2]."
    openai_server.chat_reply = reply
    llm = await abuild_chat_model(
        LLMConfig(provider="openai", openai_base_url=openai_server.base_url)
    )
    assert isinstance(llm, ChatOpenAI)
    async with llm.root_async_client:  # closes the keep-alive connection at the end
        events = await collect(astream_answer(QUESTION, retriever=retriever, llm=llm))

    tokens = tokens_of(events)
    assert len(tokens) == len(reply.split())  # one SSE chunk per word, each its own event
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.answer == "".join(tokens) == reply
    assert openai_server.stats.status_counts[200] == 1


async def test_aanswer_returns_answer_sources_and_documents(retriever: FixedRetriever) -> None:
    result = await aanswer(QUESTION, retriever=retriever, llm=ExtractiveChatModel(), k=2)
    assert isinstance(result, AnswerResult)
    assert "[2]" in result.answer
    assert [d.id for d in result.documents] == ["bread-0", "pods-3"]
    assert [s["n"] for s in result.sources] == [1, 2]


async def test_history_is_rewritten_before_retrieval(retriever: FixedRetriever) -> None:
    llm = GenericFakeChatModel(
        messages=iter(
            [AIMessage("What do Kubernetes Pod containers share?"), AIMessage("A net [2].")]
        )
    )
    history = [HumanMessage("What is a Kubernetes Pod?"), AIMessage("The smallest unit [2].")]
    events = await collect(
        astream_answer("What do they share?", retriever=retriever, llm=llm, history=history)
    )
    assert retriever.queries == ["What do Kubernetes Pod containers share?"]
    assert "".join(tokens_of(events)) == "A net [2]."  # the rewrite is not streamed


@pytest.mark.parametrize("follow_up", [False, True])
async def test_the_stream_runs_the_graphs_steps_to_the_same_events(
    retriever: FixedRetriever, follow_up: bool
) -> None:
    """astream_answer calls the graph's nodes without the graph: same sources, tokens, answer."""
    history = [HumanMessage("What is a Kubernetes Pod?"), AIMessage("The unit [2].")]
    inputs: dict[str, Any] = {"question": QUESTION, "history": history if follow_up else []}
    context = AnswerContext(retriever=retriever, llm=ExtractiveChatModel(), k=2)
    sources: list[Any] = []
    graph_tokens: list[str] = []
    async for mode, data in answer_graph().astream(
        inputs, context=context, stream_mode=["updates", "messages"]
    ):
        if mode == "updates" and "retrieve" in data:
            sources = data["retrieve"]["sources"]
        elif mode == "messages" and data[1]["langgraph_node"] == "generate":
            graph_tokens.append(data[0].text)
    graph_queries, retriever.queries = retriever.queries, []

    events = await collect(
        astream_answer(
            QUESTION, retriever=retriever, llm=ExtractiveChatModel(), k=2, history=inputs["history"]
        )
    )
    assert retriever.queries == graph_queries  # the follow-up condensed the same way
    assert isinstance(events[0], SourcesEvent) and list(events[0].sources) == sources
    assert tokens_of(events) == graph_tokens and len(graph_tokens) > 1
    done = events[-1]
    assert isinstance(done, DoneEvent) and done.answer == "".join(graph_tokens)


async def test_spans_nest_answer_over_retrieve_and_generate(
    retriever: FixedRetriever, spans: Any
) -> None:
    await collect(astream_answer(QUESTION, retriever=retriever, llm=ExtractiveChatModel()))
    finished = {s.name: s for s in spans.get_finished_spans()}
    root = finished["answer"]
    for child in ("retrieve", "generate"):
        assert finished[child].parent is not None
        assert finished[child].parent.span_id == root.context.span_id
    assert finished["retrieve"].attributes["documents"] == 2


# -- failures -------------------------------------------------------------------------------


async def test_model_failing_mid_stream_ends_with_an_error_keeping_the_partial_answer(
    retriever: FixedRetriever, caplog: pytest.LogCaptureFixture
) -> None:
    llm = ScriptedChatModel(tokens=["Containers ", "share "], then="fail")
    with caplog.at_level(logging.ERROR, logger="langchain_rag_async"):
        events = await collect(astream_answer(QUESTION, retriever=retriever, llm=llm))

    assert [e.type for e in events] == ["sources", "token", "token", "error"]
    error = events[-1]
    assert isinstance(error, ErrorEvent) and isinstance(events[0], SourcesEvent)
    assert error.kind == "generation"
    assert error.answer == "Containers share "
    assert error.sources == events[0].sources
    assert "ConnectionResetError: model endpoint reset the stream" in error.message
    assert "Traceback" not in error.message
    # The traceback goes to the log instead.
    assert "Traceback" in caplog.text and "ConnectionResetError" in caplog.text


async def test_graph_keeps_the_partial_answer_in_state_when_the_model_fails(
    retriever: FixedRetriever,
) -> None:
    from langchain_rag_async.answering import AnswerContext

    llm = ScriptedChatModel(tokens=["Half ", "an "], then="fail")
    state = await answer_graph().ainvoke(
        {"question": QUESTION}, context=AnswerContext(retriever=retriever, llm=llm)
    )
    assert state["answer"] == "Half an "
    assert "ConnectionResetError" in state["error"]


async def test_aanswer_raises_generation_error_when_the_model_fails(
    retriever: FixedRetriever,
) -> None:
    llm = ScriptedChatModel(tokens=["Half "], then="fail")
    with pytest.raises(GenerationError, match="answer model failed.*ConnectionResetError"):
        await aanswer(QUESTION, retriever=retriever, llm=llm)


async def test_retriever_failure_is_an_error_event() -> None:
    retriever = FixedRetriever(documents=[], failure="vector service refused")
    llm = ScriptedChatModel(tokens=["never"])
    events = await collect(astream_answer(QUESTION, retriever=retriever, llm=llm))
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, ErrorEvent)
    assert error.kind == "retrieval"
    assert "ConnectionRefusedError: vector service refused" in error.message
    assert (error.answer, error.sources) == ("", ())
    assert not llm.closed.is_set()  # generation never started


async def test_aanswer_raises_the_retrieval_error_with_its_cause() -> None:
    retriever = FixedRetriever(documents=[], failure="vector service refused")
    with pytest.raises(RetrievalError) as info:
        await aanswer(QUESTION, retriever=retriever, llm=ExtractiveChatModel())
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_timeout_ends_the_stream_with_an_error_keeping_the_partial_answer(
    retriever: FixedRetriever,
) -> None:
    llm = ScriptedChatModel(tokens=["Containers ", "share "], then="block")
    events = await collect(astream_answer(QUESTION, retriever=retriever, llm=llm, timeout=1.0))

    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.kind == "timeout"
    assert "within 1 s" in error.message
    assert error.answer == "Containers share "
    assert llm.cancelled and llm.closed.is_set()
    assert other_tasks() == set()


async def test_aanswer_timeout_is_a_generation_error(retriever: FixedRetriever) -> None:
    llm = ScriptedChatModel(tokens=["Containers "], then="block")
    with pytest.raises(GenerationError, match="no answer within 0.5 s") as info:
        await aanswer(QUESTION, retriever=retriever, llm=llm, timeout=0.5)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert isinstance(info.value, GenerationTimeoutError) and info.value.timeout == 0.5
    assert llm.cancelled


# -- cancellation ---------------------------------------------------------------------------


async def test_closing_the_stream_cancels_generation(retriever: FixedRetriever) -> None:
    llm = ScriptedChatModel(tokens=["Containers ", "share "], then="block")
    seen: list[str] = []
    async with aclosing(astream_answer(QUESTION, retriever=retriever, llm=llm)) as events:
        async for event in events:
            seen.append(event.type)
            if isinstance(event, TokenEvent):
                await llm.blocked.wait()
                break
    assert seen == ["sources", "token"]
    assert llm.cancelled and llm.closed.is_set()
    assert other_tasks() == set()  # neither the run's task nor any node task is left


async def test_cancelling_the_consumer_cancels_generation(retriever: FixedRetriever) -> None:
    llm = ScriptedChatModel(tokens=["Containers "], then="block")
    received: list[AnswerEvent] = []

    async def consume() -> None:
        async for event in astream_answer(QUESTION, retriever=retriever, llm=llm):
            received.append(event)

    consumer = asyncio.create_task(consume())
    await llm.blocked.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert llm.cancelled and llm.closed.is_set()
    assert other_tasks() == set()
    assert [e.type for e in received][:1] == ["sources"]


async def test_breaking_out_of_async_for_cancels_generation(retriever: FixedRetriever) -> None:
    llm = ScriptedChatModel(tokens=["Containers "], then="block")
    async for event in astream_answer(QUESTION, retriever=retriever, llm=llm):
        if isinstance(event, TokenEvent):
            await llm.blocked.wait()
            break
    # The dropped stream is closed by the event loop's async-generator finaliser.
    async with asyncio.timeout(10):
        await llm.closed.wait()
        if leftover := other_tasks():  # the finaliser's aclose task, finishing the run
            await asyncio.wait(leftover)
    assert llm.cancelled
    assert other_tasks() == set()


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "  \n "])
async def test_empty_question_raises_before_any_work(
    question: str, retriever: FixedRetriever
) -> None:
    llm = ScriptedChatModel(tokens=["never"])
    with pytest.raises(RetrievalError, match="question is empty"):
        await collect(astream_answer(question, retriever=retriever, llm=llm))
    with pytest.raises(RetrievalError, match="question is empty"):
        await aanswer(question, retriever=retriever, llm=llm)
    assert retriever.queries == []
    assert other_tasks() == set()


@pytest.mark.parametrize(("k", "timeout"), [(0, None), (3, 0.0), (3, -1.0)])
async def test_bad_k_or_timeout_is_a_configuration_error(
    k: int, timeout: float | None, retriever: FixedRetriever
) -> None:
    with pytest.raises(ConfigurationError):
        await collect(
            astream_answer(
                QUESTION, retriever=retriever, llm=ExtractiveChatModel(), k=k, timeout=timeout
            )
        )
    assert retriever.queries == []


# -- the sync twin --------------------------------------------------------------------------


@pytest.fixture
def sync_retriever() -> Iterator[FixedRetriever]:
    yield FixedRetriever(documents=[BREAD, PODS])


def test_sync_answer_works_inside_a_running_loop(sync_retriever: FixedRetriever) -> None:
    async def caller() -> AnswerResult:
        # A sync caller inside a running loop (Jupyter-style) must not deadlock.
        return answer(QUESTION, retriever=sync_retriever, llm=ExtractiveChatModel())

    inside = asyncio.run(caller())
    outside = answer(QUESTION, retriever=sync_retriever, llm=ExtractiveChatModel())
    assert inside == outside
    assert "[2]" in inside.answer


def test_sync_answer_raises_for_an_empty_question(sync_retriever: FixedRetriever) -> None:
    with pytest.raises(RetrievalError):
        answer(" ", retriever=sync_retriever, llm=ExtractiveChatModel())


# -- the chat service's limiter and the default k ------------------------------------------


class CountingChatModel(GenericFakeChatModel):
    """A real fake chat model that counts how many of its streams run at once."""

    active: int = 0
    peak: int = 0

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                await asyncio.sleep(0)  # let the other answers in, if nothing holds them
                yield chunk
        finally:
            self.active -= 1


def counting_model(answers: int) -> CountingChatModel:
    replies = iter([AIMessage(content=f"Answer number {n} cites [1].") for n in range(answers)])
    return CountingChatModel(messages=replies)


async def answer_three_at_once(llm: CountingChatModel, limiter: ServiceLimiter | None) -> None:
    retriever = FixedRetriever(documents=[PODS])
    async with asyncio.TaskGroup() as group:
        for _ in range(3):
            group.create_task(aanswer(QUESTION, retriever=retriever, llm=llm, limiter=limiter))


async def test_without_a_limiter_concurrent_answers_overlap_in_the_model() -> None:
    llm = counting_model(3)
    await answer_three_at_once(llm, None)
    assert llm.peak > 1  # the control: the counting model does see overlapping calls


async def test_a_limiter_of_one_keeps_concurrent_answers_out_of_each_other() -> None:
    llm = counting_model(3)
    limiter = ServiceLimiter("chat:fake", max_concurrency=1)
    await answer_three_at_once(llm, limiter)
    assert llm.peak == 1
    assert limiter.peak_in_flight == 1 and limiter.in_flight == 0


async def test_streamed_answers_hold_the_limiter_too() -> None:
    llm = counting_model(2)
    limiter = ServiceLimiter("chat:fake", max_concurrency=1)
    retriever = FixedRetriever(documents=[PODS])

    async def stream() -> list[AnswerEvent]:
        return await collect(
            astream_answer(QUESTION, retriever=retriever, llm=llm, limiter=limiter)
        )

    first, second = await asyncio.gather(stream(), stream())
    assert first[-1].type == second[-1].type == "done"
    assert llm.peak == 1 and limiter.in_flight == 0


async def test_a_follow_up_rewrite_also_goes_through_the_limiter() -> None:
    llm = CountingChatModel(
        messages=iter([AIMessage(content="pod network namespace"), AIMessage(content="It [1].")])
    )
    limiter = ServiceLimiter("chat:fake", max_concurrency=1)
    history = [HumanMessage(content="What is a Pod?"), AIMessage(content="A unit [1].")]
    result = await aanswer(
        "What do its containers share?",
        retriever=FixedRetriever(documents=[PODS]),
        llm=llm,
        history=history,
        limiter=limiter,
    )
    assert result.answer == "It [1]."
    assert limiter.peak_in_flight == 1 and limiter.in_flight == 0


async def test_k_defaults_to_the_retrieval_config() -> None:
    many = [
        Document(id=f"d{n}", page_content=f"Pods share a network namespace, fact {n}.")
        for n in range(RetrievalConfig().k + 3)
    ]
    result = await aanswer(
        QUESTION, retriever=FixedRetriever(documents=many), llm=ExtractiveChatModel()
    )
    assert len(result.documents) == RetrievalConfig().k
