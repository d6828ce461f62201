"""The answer LangGraph: ``rewrite`` (follow-ups only) → ``retrieve`` → ``generate``.

Retrieved sources show up in ``stream_mode="updates"``, answer tokens in
``stream_mode="messages"``. Runtime objects (retriever, chat model) travel in the run's
``context`` (:class:`AnswerContext`), never in the checkpointable state.
"""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, convert_to_messages
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from langgraph.constants import TAG_NOSTREAM
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime, get_runtime
from opentelemetry.trace import Status, StatusCode

from langchain_rag_async._checks import check_question
from langchain_rag_async._text import estimate_tokens
from langchain_rag_async.chat_models._sentences import content_terms
from langchain_rag_async.chat_models.extractive import ExtractiveChatModel
from langchain_rag_async.config import RetrievalConfig
from langchain_rag_async.errors import ConfigurationError, RAGError, RetrievalError
from langchain_rag_async.limits import ServiceLimiter
from langchain_rag_async.metrics import QUERY_LATENCY
from langchain_rag_async.observability import get_logger, span
from langchain_rag_async.prompts import (
    HISTORY_TOKEN_BUDGET,
    build_answer_messages,
    source_location,
)

__all__ = (
    "REWRITE_PROMPT",
    "AnswerContext",
    "AnswerInput",
    "AnswerState",
    "RunContext",
    "SourceInfo",
    "agenerate",
    "build_answer_graph",
    "can_rewrite",
    "condense_question",
    "default_k",
    "model_slot",
    "retrieve_node",
    "rewrite_node",
    "run_context",
    "source_previews",
    "validate_question",
)

logger = get_logger(__name__)

REWRITE_SYSTEM_PROMPT = (
    "Rewrite the user's follow-up question as one standalone search query that can be "
    "understood without the conversation: resolve pronouns and references to earlier turns. "
    "Reply with the query only, on one line, without quotes or explanation."
)
REWRITE_PROMPT: ChatPromptTemplate = ChatPromptTemplate.from_messages(
    [
        ("system", REWRITE_SYSTEM_PROMPT),
        MessagesPlaceholder("history"),
        ("human", "Follow-up question: {question}"),
    ]
)
"""Chat prompt that condenses a follow-up (inputs ``history`` and ``question``) into a query."""

REWRITE_HISTORY_MESSAGES = 6
"""Only the last messages of the history are shown to the rewriting model."""
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def default_k() -> int:
    """How many sources an answer gets when the caller says nothing: ``RetrievalConfig().k``."""
    return RetrievalConfig().k


@dataclass(frozen=True, kw_only=True, slots=True)
class AnswerContext:
    """What an answer run needs besides its input.

    ``retriever`` and ``llm`` may be left out only when the graph was built with a
    ``default_context`` (a deployment: the LangGraph server builds an empty context for
    runs that pass none); the default then supplies both.

    Attributes:
        retriever: Any LangChain retriever; called as ``ainvoke(query, k=k)``.
        llm: The chat model that writes the answer (and condenses follow-ups when able).
        k: The most retrieved chunks given to the model as sources
            (``RetrievalConfig().k`` by default).
        max_history_tokens: Chat history kept in the answer prompt, latest turns first
            (approximate tokens); ``None`` keeps all of it.
        limiter: The one limiter of the chat service; every model call (the answer, a
            follow-up rewrite) holds one of its slots. ``None``: no limit.
    """

    retriever: BaseRetriever | None = None
    llm: BaseChatModel | None = None
    k: int = field(default_factory=default_k)
    max_history_tokens: int | None = HISTORY_TOKEN_BUDGET
    limiter: ServiceLimiter | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigurationError(f"k must be a positive number of sources; got {self.k}")
        if self.max_history_tokens is not None and self.max_history_tokens < 0:
            raise ConfigurationError(
                f"max_history_tokens must not be negative; got {self.max_history_tokens}"
            )


class SourceInfo(TypedDict):
    """A preview of one retrieved chunk, numbered as cited in the answer (``[n]``)."""

    n: int
    source: str
    chunk_id: str | None
    score: float | None
    start_index: int | None


class AnswerInput(TypedDict, total=False):
    """Input of the answer graph."""

    question: str
    history: list[BaseMessage]


class AnswerState(TypedDict, total=False):
    """State of the answer graph.

    ``search_query`` is what was searched (the question, or a standalone rewrite of a
    follow-up); ``error`` is set, and ``answer`` holds the partial text, when the chat
    model failed.
    """

    question: str
    history: list[BaseMessage]
    search_query: str
    documents: list[Document]
    answer: str
    sources: list[SourceInfo]
    error: str | None


# -- pure helpers ---------------------------------------------------------------------------


def validate_question(question: object) -> str:
    """Return ``question`` stripped, or raise when there is nothing to ask.

    Raises:
        RetrievalError: The question is missing, not text, empty or whitespace.
    """
    return check_question("" if question is None else question).strip()


def model_slot(
    limiter: ServiceLimiter | None, messages: Sequence[BaseMessage]
) -> AbstractAsyncContextManager[None]:
    """A slot of the chat service's limiter for one model call on ``messages`` (or none).

    Args:
        limiter: The chat service's limiter; ``None`` means no limit.
        messages: The prompt, whose estimated tokens are spent from the token budget.
    """
    if limiter is None:
        return contextlib.nullcontext()
    return limiter.slot(tokens=estimate_tokens(message.text for message in messages))


def can_rewrite(llm: BaseChatModel) -> bool:
    """Whether ``llm`` can condense a follow-up into a search query.

    The offline :class:`ExtractiveChatModel` only quotes sources, so follow-ups are
    condensed by :func:`condense_question` instead.
    """
    return not isinstance(llm, ExtractiveChatModel)


def condense_question(question: str, history: Sequence[BaseMessage]) -> str:
    """Make a follow-up searchable without a model: add the last human turn's content words.

    Words of the previous question that are not stopwords and whose stem the follow-up
    lacks are appended, in their order, each once.

    Args:
        question: The follow-up question.
        history: Earlier turns, oldest first.

    Returns:
        The question, followed by the added words (the question alone when none).
    """
    last_turn = next((m.text for m in reversed(history) if isinstance(m, HumanMessage)), "")
    seen = set(content_terms(question))
    added: list[str] = []
    for word in _WORD.findall(last_turn):
        terms = content_terms(word)
        if not terms or terms[0] in seen:
            continue
        seen.add(terms[0])
        added.append(word)
    return " ".join([question.strip(), *added])


def source_previews(documents: Sequence[Document]) -> list[SourceInfo]:
    """Describe documents as numbered sources, in the order they are cited (``[1]``...).

    ``score`` is the fused score of hybrid retrieval (``metadata["scores"]["fused"]``)
    when present, else ``None``; ``chunk_id`` is the document id.
    """
    return [
        SourceInfo(
            n=number,
            source=source_location(doc),
            chunk_id=doc.id or _optional_str(doc.metadata.get("chunk_id")),
            score=_fused_score(doc.metadata.get("scores")),
            start_index=_optional_int(doc.metadata.get("start_index")),
        )
        for number, doc in enumerate(documents, start=1)
    ]


def _fused_score(scores: object) -> float | None:
    if isinstance(scores, Mapping):
        fused = scores.get("fused")
        if isinstance(fused, int | float):
            return float(fused)
    return None


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: object) -> str | None:
    return str(value) if value is not None else None


def _first_line(text: str) -> str:
    line = next((line for line in text.splitlines() if line.strip()), "")
    return line.strip().strip("\"'“”`").strip()


def _history(state: AnswerState) -> list[BaseMessage]:
    """The history as messages (deployments may send plain dicts or tuples)."""
    return convert_to_messages(state.get("history") or [])


def _generation_error_message(exc: BaseException) -> str:
    return (
        f"the answer model failed ({type(exc).__name__}: {exc}); check the chat model "
        "settings and its endpoint (RAG_LLM, RAG_CHAT_MODEL, OPENAI_BASE_URL), then retry"
    )


async def alog_exception(log: Any, event: str, exc: BaseException, **fields: Any) -> None:
    """Log ``exc`` with its traceback, formatted in an executor (formatting reads source files).

    Args:
        log: The structlog logger.
        event: The event name.
        exc: The exception.
        **fields: More key-value pairs for the log line.
    """
    text = await run_in_executor(None, _format_traceback, exc)
    log.error(event, exception=text, **fields)


def _format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


# -- context --------------------------------------------------------------------------------


ContextFactory = Callable[[], Awaitable[AnswerContext]]
"""Builds the context of runs that pass none (e.g. a deployment configured from the env)."""

_NO_CONTEXT = (
    "the answer graph takes its retriever and chat model from the run context: "
    "pass context=AnswerContext(retriever=..., llm=...) to ainvoke/astream"
)


@dataclass(frozen=True, slots=True)
class RunContext:
    """A complete context: what the nodes use."""

    retriever: BaseRetriever
    llm: BaseChatModel
    k: int
    max_history_tokens: int | None
    limiter: ServiceLimiter | None


def _is_complete(context: AnswerContext | None) -> bool:
    return context is not None and context.retriever is not None and context.llm is not None


def run_context(context: AnswerContext | None) -> RunContext:
    """The complete context of a run (what the steps use).

    Raises:
        ConfigurationError: ``context`` lacks the retriever or the chat model.
    """
    if context is None or context.retriever is None or context.llm is None:
        raise ConfigurationError(_NO_CONTEXT)
    return RunContext(
        context.retriever, context.llm, context.k, context.max_history_tokens, context.limiter
    )


def _with_default_context(
    node: Callable[[AnswerState, Runtime[AnswerContext]], Awaitable[AnswerState]],
    default: ContextFactory,
) -> Callable[[AnswerState, Runtime[AnswerContext]], Awaitable[AnswerState]]:
    """Run ``node`` with ``default()``'s context when the run passed none."""

    async def run(state: AnswerState, runtime: Runtime[AnswerContext]) -> AnswerState:
        if not _is_complete(runtime.context):
            runtime = runtime.override(context=await default())
        return await node(state, runtime)

    run.__name__ = getattr(node, "__name__", "node")
    return run


# -- nodes ----------------------------------------------------------------------------------


def route_start(state: AnswerState) -> Literal["rewrite", "retrieve"]:
    """Check the input before any work; follow-ups (with history) are rewritten first."""
    validate_question(state.get("question"))
    run_context(get_runtime(AnswerContext).context)
    return _route(state)


def _route(state: AnswerState) -> Literal["rewrite", "retrieve"]:
    return "rewrite" if state.get("history") else "retrieve"


def _route_with_default(state: AnswerState) -> Literal["rewrite", "retrieve"]:
    validate_question(state.get("question"))
    return _route(state)


async def rewrite_node(state: AnswerState, runtime: Runtime[AnswerContext]) -> AnswerState:
    """Condense the follow-up and the history into a standalone search query."""
    ctx = run_context(runtime.context)
    question = validate_question(state.get("question"))
    history = _history(state)
    query = ""
    with span("rewrite", history=len(history), model=type(ctx.llm).__name__) as current:
        if can_rewrite(ctx.llm):
            query = await _model_rewrite(ctx, question, history)
        current.set_attribute("heuristic", not query)
        query = query or condense_question(question, history)
    return {"search_query": query}


async def _model_rewrite(ctx: RunContext, question: str, history: list[BaseMessage]) -> str:
    """Ask the model for a standalone query; "" when it fails or says nothing usable."""
    messages = REWRITE_PROMPT.format_messages(
        history=history[-REWRITE_HISTORY_MESSAGES:], question=question
    )
    # Tagged "nostream": rewrite tokens stay out of stream_mode="messages".
    model = ctx.llm.with_config(tags=[TAG_NOSTREAM], run_name="rewrite")
    try:
        async with model_slot(ctx.limiter, messages):
            reply = await model.ainvoke(messages)
    except GraphBubbleUp:
        raise
    except Exception as exc:  # the rewrite is an optimisation: fall back, don't fail
        logger.warning("answer.rewrite_failed", error=f"{type(exc).__name__}: {exc}")
        return ""
    return _first_line(reply.text)


async def retrieve_node(state: AnswerState, runtime: Runtime[AnswerContext]) -> AnswerState:
    """Search for the (rewritten) question; write the documents and their previews."""
    ctx = run_context(runtime.context)
    query = state.get("search_query") or validate_question(state.get("question"))
    with span("retrieve", k=ctx.k, retriever=type(ctx.retriever).__name__) as current:
        try:
            found = await ctx.retriever.ainvoke(query, k=ctx.k)
        except (GraphBubbleUp, RAGError):
            raise
        except Exception as exc:
            raise RetrievalError(
                f"the retriever failed for query {query!r} ({type(exc).__name__}: {exc}); "
                "check that the index exists and its embedding service is reachable"
            ) from exc
        # Retrievers that take no ``k`` ignore it; never hand the model more than k sources.
        documents = list(found[: ctx.k])
        current.set_attribute("documents", len(documents))
    return {"search_query": query, "documents": documents, "sources": source_previews(documents)}


async def generate_node(state: AnswerState, runtime: Runtime[AnswerContext]) -> AnswerState:
    """Answer from the numbered sources; tokens stream to ``stream_mode="messages"``.

    A failing chat model does not fail the run: the text streamed so far is kept in
    ``answer`` and the failure is described in ``error`` (and logged with its traceback).
    """
    return await agenerate(state, run_context(runtime.context))


async def agenerate(
    state: AnswerState, ctx: RunContext, on_token: Callable[[str], None] | None = None
) -> AnswerState:
    """What :func:`generate_node` does, with ``on_token`` called for each piece of text.

    The one implementation of the ``generate`` step: the graph's node, and the streaming
    API that runs the same steps without the graph (``astream_answer``), both call it.
    """
    documents = state.get("documents") or []
    messages = build_answer_messages(
        validate_question(state.get("question")),
        documents,
        _history(state),
        max_history_tokens=ctx.max_history_tokens,
    )
    parts: list[str] = []
    generating = QUERY_LATENCY.labels(stage="generate").time()
    with (
        span("generate", model=type(ctx.llm).__name__, documents=len(documents)) as current,
        generating,
    ):
        try:
            async with model_slot(ctx.limiter, messages):
                # astream, not ainvoke: the text received before a failure is still at hand.
                async for chunk in ctx.llm.astream(messages):
                    text = chunk.text
                    parts.append(text)
                    if on_token is not None and text:
                        on_token(text)
        except GraphBubbleUp:
            raise
        except Exception as exc:
            answer = "".join(parts)
            await alog_exception(logger, "answer.generation_failed", exc, answer_chars=len(answer))
            current.record_exception(exc)
            current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            return {"answer": answer, "error": _generation_error_message(exc)}
        answer = "".join(parts)
        current.set_attribute("answer_chars", len(answer))
    return {"answer": answer, "error": None}


def build_answer_graph(
    *, default_context: ContextFactory | None = None
) -> CompiledStateGraph[AnswerState, AnswerContext, AnswerInput, Any]:
    """Compile the answer graph (``rewrite`` when there is history → ``retrieve`` → ``generate``).

    Use it with ``await graph.ainvoke({"question": q}, context=AnswerContext(...))``, or
    ``graph.astream(..., stream_mode=["updates", "messages"])`` for sources and tokens.

    A run raises :class:`RetrievalError` for an empty question (before any work) or a
    failing retriever, and :class:`ConfigurationError` when no ``context`` is passed and no
    ``default_context`` was given. A failing chat model ends the run normally with
    ``error`` set and the partial ``answer``.

    Args:
        default_context: Awaited for runs that pass no context (deployments); cache
            what it builds, it is called by every node of such a run.
    """
    builder = StateGraph(AnswerState, context_schema=AnswerContext, input_schema=AnswerInput)
    nodes = {"rewrite": rewrite_node, "retrieve": retrieve_node, "generate": generate_node}
    for name, node in nodes.items():
        action: Any = (
            node if default_context is None else _with_default_context(node, default_context)
        )
        builder.add_node(name, action)
    router = route_start if default_context is None else _route_with_default
    builder.add_conditional_edges(START, router, ["rewrite", "retrieve"])
    builder.add_edge("rewrite", "retrieve")
    builder.add_edge("retrieve", "generate")
    builder.add_edge("generate", END)
    return builder.compile(name="answer")
