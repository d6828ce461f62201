"""Answer a question: stream typed events (sources, tokens, error, done) or get the result.

:func:`astream_answer` runs the answer graph in a task it owns: closing or cancelling the
stream cancels the run, and a failure or the timeout ends the stream with an
:class:`ErrorEvent` that keeps the partial answer. :func:`aanswer` and :func:`answer`
return the finished :class:`AnswerResult` instead.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from opentelemetry.trace import Status, StatusCode

from langchain_rag_async.aio import run_sync
from langchain_rag_async.answering.graph import (
    AnswerContext,
    AnswerInput,
    AnswerState,
    SourceInfo,
    agenerate,
    alog_exception,
    build_answer_graph,
    default_k,
    retrieve_node,
    rewrite_node,
    run_context,
    validate_question,
)
from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingError,
    GenerationError,
    GenerationTimeoutError,
    RAGError,
    RAGTimeoutError,
    RetrievalError,
    VectorStoreError,
)
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.observability import get_logger, span

__all__ = (
    "AnswerEvent",
    "AnswerResult",
    "DoneEvent",
    "ErrorEvent",
    "ErrorKind",
    "SourcesEvent",
    "TokenEvent",
    "aanswer",
    "answer",
    "answer_graph",
    "astream_answer",
)

logger = get_logger(__name__)

ErrorKind = Literal["retrieval", "generation", "timeout", "internal"]
"""What ended a run early: the retriever, the chat model, the timeout, or a bug."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SourcesEvent:
    """The retrieved sources, numbered as the answer cites them (sent once, before tokens)."""

    sources: tuple[SourceInfo, ...]
    type: Literal["sources"] = "sources"


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenEvent:
    """A piece of the answer text, in order."""

    text: str
    type: Literal["token"] = "token"


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorEvent:
    """The run failed or timed out; the last event of its stream.

    Attributes:
        message: What went wrong and what to do next (no traceback: that goes to the log).
        kind: The stage that failed.
        answer: The answer text streamed before the failure ("" when none).
        sources: The sources retrieved before the failure (empty when none).
    """

    message: str
    kind: ErrorKind
    answer: str = ""
    sources: tuple[SourceInfo, ...] = ()
    type: Literal["error"] = "error"


@dataclass(frozen=True, kw_only=True, slots=True)
class DoneEvent:
    """The answer is complete; the last event of its stream."""

    answer: str
    sources: tuple[SourceInfo, ...]
    type: Literal["done"] = "done"


AnswerEvent = SourcesEvent | TokenEvent | ErrorEvent | DoneEvent
"""One event of :func:`astream_answer`; tell them apart by ``event.type``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AnswerResult:
    """A finished answer.

    Attributes:
        answer: The answer text, citing sources as ``[n]``.
        sources: Previews of the cited sources, ``n`` from 1.
        documents: The retrieved documents, in the order of ``sources``.
    """

    answer: str
    sources: tuple[SourceInfo, ...]
    documents: tuple[Document, ...]


@functools.cache
def answer_graph() -> CompiledStateGraph[AnswerState, AnswerContext, AnswerInput, Any]:
    """The compiled answer graph, built once and shared (compiled graphs are reusable)."""
    return build_answer_graph()


def _prepare(
    question: str,
    retriever: BaseRetriever,
    llm: BaseChatModel,
    history: Sequence[BaseMessage],
    k: int | None,
    timeout: float | None,
    limiter: ServiceLimiter | None,
) -> tuple[AnswerInput, AnswerContext]:
    """Check the arguments before any work and build the graph's input and context."""
    text = validate_question(question)
    if timeout is not None and timeout <= 0:
        raise ConfigurationError(f"timeout must be positive seconds or None; got {timeout}")
    context = AnswerContext(
        retriever=retriever, llm=llm, k=default_k() if k is None else k, limiter=limiter
    )
    return AnswerInput(question=text, history=list(history)), context


@dataclass(slots=True)
class _Progress:
    """What a streamed run has produced so far; puts its events on ``events``."""

    events: asyncio.Queue[AnswerEvent | None]
    sources: tuple[SourceInfo, ...] = ()
    tokens: list[str] = field(default_factory=list)
    answer: str | None = None
    error: str | None = None

    def found(self, sources: Sequence[SourceInfo]) -> None:
        self.sources = tuple(sources)
        self.events.put_nowait(SourcesEvent(sources=self.sources))

    def token(self, text: str) -> None:
        self.tokens.append(text)
        self.events.put_nowait(TokenEvent(text=text))

    @property
    def partial_answer(self) -> str:
        return self.answer if self.answer is not None else "".join(self.tokens)

    def outcome(self) -> AnswerEvent:
        if self.error:
            return self.failure(self.error, "generation")
        return DoneEvent(answer=self.partial_answer, sources=self.sources)

    def failure(self, message: str, kind: ErrorKind) -> ErrorEvent:
        return ErrorEvent(
            message=message, kind=kind, answer=self.partial_answer, sources=self.sources
        )


def _classify(exc: Exception, *, timed_out: bool, timeout: float | None) -> tuple[ErrorKind, str]:
    """Name the stage that failed and say what to do next, without a traceback."""
    if timed_out:
        return "timeout", (
            f"no complete answer within {timeout:g} s; the partial answer is kept. "
            "Allow more time (timeout=) or check that the chat model's endpoint responds"
        )
    if isinstance(exc, RetrievalError | VectorStoreError | EmbeddingError):
        return "retrieval", str(exc)
    if isinstance(exc, GenerationError):
        return "generation", str(exc)
    if isinstance(exc, RAGError):
        return "internal", str(exc)
    return "internal", (
        f"answering failed unexpectedly ({type(exc).__name__}: {exc}); the logs hold the details"
    )


async def _run_steps(inputs: AnswerInput, context: AnswerContext, progress: _Progress) -> None:
    """The answer graph's steps, in its order, called directly: the same events, less work.

    ``rewrite`` (follow-ups only), ``retrieve`` and ``generate`` are the graph's own node
    functions; what the graph adds around them (a checkpoint and callbacks per step, a
    stream event and a message object per token) cost more CPU per answer than the
    extractive model's whole answer, and a served answer needs none of it.
    """
    runtime = Runtime(context=context)
    state: AnswerState = {"question": inputs["question"], "history": inputs.get("history", [])}
    if state["history"]:  # as the graph routes: follow-ups are condensed first
        state.update(await rewrite_node(state, runtime))
    found = await retrieve_node(state, runtime)
    state.update(found)
    progress.found(found.get("sources") or ())
    done = await agenerate(state, run_context(context), progress.token)
    progress.answer, progress.error = done.get("answer"), done.get("error")


async def _traced_steps(inputs: AnswerInput, context: AnswerContext, progress: _Progress) -> None:
    """:func:`_run_steps` as one LangChain chain run named ``answer``.

    LangChain callbacks (LangSmith's tracer, a user's handlers) then see the answer as
    the graph would show it: a chain run whose children are the retriever and model runs
    (their calls inherit the run's config from the context).
    """

    async def answer(_: AnswerInput) -> None:
        await _run_steps(inputs, context, progress)

    await RunnableLambda(answer, name="answer").ainvoke(inputs)


async def _produce(
    inputs: AnswerInput,
    context: AnswerContext,
    timeout: float | None,
    events: asyncio.Queue[AnswerEvent | None],
) -> None:
    """Run the answer's steps and put their events on ``events``; always end with ``None``."""
    progress = _Progress(events)
    deadline = asyncio.timeout(timeout)
    try:
        try:
            with span("answer", k=context.k, history=len(inputs.get("history", ()))) as current:
                async with deadline:
                    await _traced_steps(inputs, context, progress)
                outcome = progress.outcome()
                if isinstance(outcome, ErrorEvent):
                    current.set_status(Status(StatusCode.ERROR, outcome.message))
        except Exception as exc:
            timed_out = deadline.expired()
            kind, message = _classify(exc, timed_out=timed_out, timeout=timeout)
            if timed_out:
                logger.warning(
                    "answer.timeout", timeout=timeout, partial_tokens=len(progress.tokens)
                )
            else:
                await alog_exception(logger, "answer.failed", exc, kind=kind)
            outcome = progress.failure(message, kind)
        events.put_nowait(outcome)
    finally:
        # Also when cancelled, so that a consumer still waiting is released.
        events.put_nowait(None)


async def astream_answer(
    question: str,
    *,
    retriever: BaseRetriever,
    llm: BaseChatModel,
    history: Sequence[BaseMessage] = (),
    k: int | None = None,
    timeout: float | None = None,
    limiter: ServiceLimiter | None = None,
) -> AsyncGenerator[AnswerEvent, None]:
    """Answer ``question`` from what ``retriever`` finds, as a stream of events.

    It runs the steps of the answer graph (:func:`answer_graph`: the same nodes, in the
    same order) without the graph runtime around them.

    Events come in this order: one :class:`SourcesEvent`, then :class:`TokenEvent` s, then
    a :class:`DoneEvent` (answer and sources) or, when retrieval or the chat model fails
    or ``timeout`` expires, an :class:`ErrorEvent` that keeps the partial answer. Failures
    are logged with their traceback, never raised into the stream.

    The run happens in a task owned by the stream: leaving the ``async for`` (then closing
    the stream, e.g. with :func:`contextlib.aclosing`) or cancelling the consumer cancels
    it, the chat model's request included.

    Example:
        .. code-block:: python

            async with aclosing(astream_answer(q, retriever=r, llm=llm)) as events:
                async for event in events:
                    if event.type == "token":
                        print(event.text, end="")

    Args:
        question: The question.
        retriever: Any LangChain retriever (called with ``k=k``).
        llm: The chat model that writes the answer.
        history: Earlier turns, oldest first; a follow-up is rewritten into a standalone
            search query (by ``llm``, or by a heuristic for the extractive model).
        k: The most sources given to the model; ``RetrievalConfig().k`` when ``None``.
        timeout: Seconds for the whole run (retrieval and generation); ``None``: no limit.
        limiter: The one limiter of the chat service, shared with every other caller of
            that service; each model call holds one of its slots. ``None``: no limit.

    Yields:
        The events of the run.

    Raises:
        RetrievalError: The question is empty (at the first iteration, before any work).
        ConfigurationError: ``k`` or ``timeout`` is not positive (idem).
    """
    inputs, context = _prepare(question, retriever, llm, history, k, timeout, limiter)
    events: asyncio.Queue[AnswerEvent | None] = asyncio.Queue()  # one answer's tokens at most
    producer = asyncio.create_task(_produce(inputs, context, timeout, events), name="rag-answer")
    try:
        while (event := await events.get()) is not None:
            yield event
    finally:
        producer.cancel()
        await asyncio.wait([producer])


async def aanswer(
    question: str,
    *,
    retriever: BaseRetriever,
    llm: BaseChatModel,
    history: Sequence[BaseMessage] = (),
    k: int | None = None,
    timeout: float | None = None,
    limiter: ServiceLimiter | None = None,
) -> AnswerResult:
    """Answer ``question`` from what ``retriever`` finds.

    Args are those of :func:`astream_answer`.

    Returns:
        The answer, its sources and the retrieved documents.

    Raises:
        RetrievalError: The question is empty, or the retriever failed.
        GenerationError: The chat model failed.
        GenerationTimeoutError: ``timeout`` expired (the run was cancelled).
        ConfigurationError: ``k`` or ``timeout`` is not positive.
    """
    inputs, context = _prepare(question, retriever, llm, history, k, timeout, limiter)
    deadline = asyncio.timeout(timeout)
    try:
        with span("answer", k=context.k, history=len(history)):
            async with deadline:
                state = await answer_graph().ainvoke(inputs, context=context)
    except TimeoutError as exc:
        if not deadline.expired() or isinstance(exc, RAGTimeoutError):
            raise
        raise GenerationTimeoutError(
            f"no answer within {timeout:g} s; allow more time (timeout=) or check that "
            "the chat model's endpoint responds",
            timeout=timeout,
        ) from exc
    if state.get("error"):
        raise GenerationError(state["error"])
    return AnswerResult(
        answer=state.get("answer", ""),
        sources=tuple(state.get("sources") or ()),
        documents=tuple(state.get("documents") or ()),
    )


def answer(
    question: str,
    *,
    retriever: BaseRetriever,
    llm: BaseChatModel,
    history: Sequence[BaseMessage] = (),
    k: int | None = None,
    timeout: float | None = None,
    limiter: ServiceLimiter | None = None,
) -> AnswerResult:
    """Sync twin of :func:`aanswer` (also callable from inside a running event loop)."""
    return run_sync(
        aanswer(
            question,
            retriever=retriever,
            llm=llm,
            history=history,
            k=k,
            timeout=timeout,
            limiter=limiter,
        )
    )
