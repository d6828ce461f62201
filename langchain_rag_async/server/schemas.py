"""Request bodies the server accepts (pydantic), and the conversion of chat messages."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ConfigDict, Field

from langchain_rag_async.config import ServerConfig
from langchain_rag_async.errors import RequestError

__all__ = (
    "AnswerRequest",
    "ChatCompletionRequest",
    "ChatMessage",
    "HistoryTurn",
    "IndexRequest",
    "QueryRequest",
    "check_k",
    "check_question_length",
    "history_messages",
    "split_chat",
)


class ContentPart(BaseModel):
    """One part of a multi-part message; only text parts are read."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of an OpenAI chat request."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text (text parts joined; other parts ignored)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``: ``include_usage`` adds a last chunk with token counts."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``; sampling options are accepted and ignored.

    ``k`` (an extension) sets how many chunks the answer may draw on.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    k: int | None = None


class QueryRequest(BaseModel):
    """``POST /query``: the chunks most relevant to ``question``."""

    model_config = ConfigDict(extra="forbid")

    question: str
    k: int | None = None
    filter: dict[str, Any] | None = None


class HistoryTurn(BaseModel):
    """One earlier turn of a conversation (``POST /answer``)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str


class AnswerRequest(BaseModel):
    """``POST /answer``: a streamed, cited answer to ``question``."""

    model_config = ConfigDict(extra="forbid")

    question: str
    history: list[HistoryTurn] = Field(default_factory=list)
    k: int | None = None


class IndexRequest(BaseModel):
    """``POST /index``: index ``path`` (under one of the server's roots)."""

    model_config = ConfigDict(extra="forbid")

    path: str


def check_question_length(question: str, settings: ServerConfig, param: str) -> None:
    """400 for an empty question or one longer than the server accepts."""
    if not question.strip():
        raise RequestError(400, "the question is empty; ask something", param=param)
    if len(question) > settings.max_question_chars:
        raise RequestError(
            400,
            f"the question has {len(question)} characters; this server accepts at most "
            f"{settings.max_question_chars}",
            param=param,
            code="question_too_long",
        )


def check_k(k: int | None, settings: ServerConfig) -> int | None:
    """``k`` if it lies in 1..max_k (``None`` keeps the server's default), else a 400."""
    if k is not None and not 1 <= k <= settings.max_k:
        raise RequestError(
            400, f"k must be between 1 and {settings.max_k}; got {k}", param="k", code="k_range"
        )
    return k


def _as_message(role: str, text: str) -> BaseMessage | None:
    if role == "user":
        return HumanMessage(text)
    if role == "assistant":
        return AIMessage(text)
    return None  # system / developer / tool turns: the server's own prompt governs


def split_chat(
    messages: list[ChatMessage], settings: ServerConfig
) -> tuple[str, list[BaseMessage]]:
    """The question (the last user message) and the history before it.

    System, developer and tool messages are ignored: answers follow the server's own
    grounded prompt.

    Raises:
        RequestError: Too many messages, no user message last, or a bad question.
    """
    if len(messages) > settings.max_messages:
        raise RequestError(
            400,
            f"{len(messages)} messages; this server accepts at most {settings.max_messages}",
            param="messages",
            code="too_many_messages",
        )
    last = messages[-1]
    if last.role != "user":
        raise RequestError(400, "the last message must be the user's question", param="messages")
    question = last.text()
    check_question_length(question, settings, "messages")
    history = [
        message for m in messages[:-1] if (message := _as_message(m.role, m.text())) is not None
    ]
    return question, history


def history_messages(turns: list[HistoryTurn]) -> list[BaseMessage]:
    """``POST /answer`` history as LangChain messages."""
    return [m for t in turns if (m := _as_message(t.role, t.content)) is not None]
