"""The offline default answer model: an extractive chat model that quotes its sources.

:class:`ExtractiveChatModel` is a LangChain ``BaseChatModel``: it reads the prompt built by
:mod:`langchain_rag_async.prompts`, picks the source sentences most relevant to the question
and streams them a few words at a time, each with its ``[n]`` citation. Chains, LangGraph graphs,
callbacks and ``astream_events`` treat it exactly like a hosted chat model.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field

from langchain_rag_async.chat_models._sentences import (
    extract_sentences,
    score_sentences,
    select_sentences,
)
from langchain_rag_async.errors import GenerationError
from langchain_rag_async.observability import span
from langchain_rag_async.prompts import NumberedSource, parse_answer_request

__all__ = (
    "DEFAULT_PREAMBLE",
    "NOT_IN_SOURCES_ANSWER",
    "NO_SOURCES_ANSWER",
    "ExtractiveChatModel",
    "compose_answer",
)

DEFAULT_PREAMBLE = "Extractive answer (offline, composed from the retrieved sources):"
NO_SOURCES_ANSWER = "No indexed source covers this question."
NOT_IN_SOURCES_ANSWER = "The indexed sources do not answer this question."

_EXECUTOR_THRESHOLD = 8_000
"""Prompts longer than this many characters (about 2 ms of scoring) are composed in an
executor, off the event loop; shorter ones cost less than the thread hop."""
_TOKEN = re.compile(r"\s*\S+\s*")


def compose_answer(
    question: str,
    sources: Sequence[NumberedSource],
    *,
    max_sentences: int = 4,
    preamble: str = DEFAULT_PREAMBLE,
) -> str:
    """Compose an extractive answer to ``question`` from numbered sources (pure function).

    Args:
        question: The question.
        sources: The numbered sources, best first.
        max_sentences: The most source sentences to quote.
        preamble: First line of a non-empty answer ("" for none).

    Returns:
        The preamble, then one ``- sentence [n]`` line per chosen sentence; or a plain
        refusal without citations when there are no sources or none is relevant.
    """
    if not sources:
        return NO_SOURCES_ANSWER
    candidates = extract_sentences((source.number, source.text) for source in sources)
    chosen = select_sentences(score_sentences(question, candidates), max_sentences)
    if not chosen:
        return NOT_IN_SOURCES_ANSWER
    lines = [f"- {item.sentence.text} [{item.sentence.source}]" for item in chosen]
    return "\n".join([preamble, "", *lines] if preamble else lines)


@dataclass(frozen=True, slots=True)
class _Reply:
    """A finished answer: its text, its stream tokens and its metadata."""

    text: str
    tokens: tuple[str, ...]
    finish_reason: str
    usage: UsageMetadata


class ExtractiveChatModel(BaseChatModel):
    """Answer from the retrieved sources alone, offline, by quoting their best sentences.

    The model reads the last human message; in the shape of
    :data:`~langchain_rag_async.prompts.ANSWER_PROMPT` it holds numbered sources and a
    question. Source sentences are scored against the question (BM25 over the candidate
    sentences, light stemming, bonus for better-ranked sources, near-duplicates skipped);
    the best ``max_sentences`` are quoted with their ``[n]`` citation. Nothing is invented:
    without sources, or when no sentence shares a term with the question, the answer is a
    plain refusal without citations.

    Example:
        .. code-block:: python

            from langchain_core.output_parsers import StrOutputParser
            from langchain_rag_async.prompts import ANSWER_PROMPT, format_sources

            chain = ANSWER_PROMPT | ExtractiveChatModel() | StrOutputParser()
            answer = await chain.ainvoke({"sources": format_sources(docs), "question": q})

    Attributes:
        model_name: Name reported in metadata and traces (alias ``model``).
        max_sentences: The most source sentences quoted in one answer.
        token_delay: Seconds to wait between streamed tokens (pacing for demos).
        preamble: First line of every answer that quotes sources ("" for none).
        max_tokens: Cut the answer after this many words (``None``: no limit).
        stop: Cut the answer before the first of these strings.
        streaming: Route ``invoke`` through the streaming path (callbacks see tokens).
    """

    model_config = ConfigDict(populate_by_name=True)

    model_name: str = Field(default="extractive", alias="model")
    max_sentences: int = Field(default=4, ge=1)
    token_delay: float = Field(default=0.0, ge=0.0)
    preamble: str = DEFAULT_PREAMBLE
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    streaming: bool = False

    @property
    def _llm_type(self) -> str:
        return "extractive"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "max_sentences": self.max_sentences,
            "max_tokens": self.max_tokens,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="langchain_rag_async",
            ls_model_name=str(kwargs.get("model") or self.model_name),
            ls_model_type="chat",
        )
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or ())
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Refuse: the extractive model quotes sources and cannot call tools.

        Raises:
            NotImplementedError: Always; use a tool-calling model such as ``ChatOpenAI``.
        """
        raise _no_tools()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _result(self._reply(messages, stop), self.model_name)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _result(await self._areply(messages, stop), self.model_name)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for index, chunk in enumerate(_chunks(self._reply(messages, stop), self.model_name)):
            if index and self.token_delay:
                time.sleep(self.token_delay)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        reply = await self._areply(messages, stop)
        for index, chunk in enumerate(_chunks(reply, self.model_name)):
            if index and self.token_delay:
                await asyncio.sleep(self.token_delay)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _reply(self, messages: Sequence[BaseMessage], stop: list[str] | None) -> _Reply:
        question, sources = parse_answer_request(_last_human_text(messages))
        with span("answer.extract", model=self.model_name, sources=len(sources)):
            text = compose_answer(
                question, sources, max_sentences=self.max_sentences, preamble=self.preamble
            )
        return _finish(text, messages, stop or self.stop, self.max_tokens)

    async def _areply(self, messages: Sequence[BaseMessage], stop: list[str] | None) -> _Reply:
        """Compose the reply; off the event loop when the prompt is large."""
        if sum(len(message.text) for message in messages) <= _EXECUTOR_THRESHOLD:
            return self._reply(messages, stop)
        return await run_in_executor(None, self._reply, messages, stop)


def _no_tools() -> NotImplementedError:
    return NotImplementedError(
        "ExtractiveChatModel cannot call tools or produce structured output: it only quotes "
        "the retrieved sources. Use a tool-calling chat model (for example ChatOpenAI) instead."
    )


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    raise GenerationError(
        "ExtractiveChatModel needs a human message holding the question (and the sources, "
        "as built by langchain_rag_async.prompts.build_answer_messages); "
        f"got {len(messages)} message(s) without one."
    )


def _finish(
    text: str,
    messages: Sequence[BaseMessage],
    stop: Sequence[str] | None,
    max_tokens: int | None,
) -> _Reply:
    """Apply stop strings and the token limit, split into tokens and count usage."""
    finish_reason = "stop"
    cuts = [index for index in (text.find(s) for s in stop or () if s) if index >= 0]
    if cuts:
        text = text[: min(cuts)]
    tokens = tuple(_TOKEN.findall(text))
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        text = "".join(tokens)
        finish_reason = "length"
    input_tokens = sum(len(message.text.split()) for message in messages)
    usage = UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=len(tokens),
        total_tokens=input_tokens + len(tokens),
    )
    return _Reply(text=text, tokens=tokens, finish_reason=finish_reason, usage=usage)


def _response_metadata(reply: _Reply, model_name: str) -> dict[str, Any]:
    return {"model_name": model_name, "finish_reason": reply.finish_reason}


def _result(reply: _Reply, model_name: str) -> ChatResult:
    message = AIMessage(
        content=reply.text,
        response_metadata=_response_metadata(reply, model_name),
        usage_metadata=reply.usage,
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


STREAM_WORDS = 4
"""Words per streamed chunk. Every chunk costs LangChain's and LangGraph's per-token
machinery (a message object, callbacks, a stream event): at one word a chunk that
machinery took more time than composing the answer (docs/benchmarks.md, serving)."""


def _chunks(reply: _Reply, model_name: str) -> Iterator[ChatGenerationChunk]:
    """Yield the answer a few words per chunk; the last one carries usage and metadata."""
    words = reply.tokens or ("",)
    tokens = ["".join(words[i : i + STREAM_WORDS]) for i in range(0, len(words), STREAM_WORDS)]
    for token in tokens[:-1]:
        yield ChatGenerationChunk(message=AIMessageChunk(content=token))
    yield ChatGenerationChunk(
        message=AIMessageChunk(
            content=tokens[-1],
            response_metadata=_response_metadata(reply, model_name),
            usage_metadata=reply.usage,
            chunk_position="last",
        )
    )
