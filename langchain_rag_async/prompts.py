"""The answer prompt shared by every answer model, and its numbered-sources block.

The sources block has one fixed, parseable shape, written by :func:`format_sources` and read
back by :func:`parse_sources` (the offline extractive model answers from it)::

    [1] (path/to/file.md) First retrieved chunk, possibly
    spanning several lines.

    [2] (other/file.md) Second retrieved chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.messages.utils import trim_messages
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from langchain_rag_async._text import estimate_message_tokens
from langchain_rag_async.errors import ConfigurationError

__all__ = (
    "ANSWER_PROMPT",
    "ANSWER_SYSTEM_PROMPT",
    "NO_SOURCES_TEXT",
    "NumberedSource",
    "build_answer_messages",
    "format_sources",
    "parse_answer_request",
    "parse_sources",
    "source_location",
)

ANSWER_SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources given with the question. "
    "Cite the sources that support each statement by their number in square brackets, "
    "like [1] or [2][3]. Do not use outside knowledge and do not invent citations. "
    "If the sources do not contain the answer, say so plainly instead of guessing."
)

SOURCES_HEADER = "Sources:\n"
QUESTION_SEPARATOR = "\n\nQuestion: "
NO_SOURCES_TEXT = "(no sources were retrieved)"
UNKNOWN_LOCATION = "unknown source"

ANSWER_PROMPT: ChatPromptTemplate = ChatPromptTemplate.from_messages(
    [
        ("system", ANSWER_SYSTEM_PROMPT),
        MessagesPlaceholder("history", optional=True),
        ("human", SOURCES_HEADER + "{sources}" + QUESTION_SEPARATOR + "{question}"),
    ]
)
"""Chat prompt with inputs ``sources`` (from :func:`format_sources`), ``question`` and an
optional ``history`` list of earlier messages."""

_LOCATION_KEYS = ("source", "file_path", "path")
# "[n] (location)" at the start of a line, followed by a space or the end of the line.
_SOURCE_HEADER = re.compile(r"^\[(\d+)\] \((.*?)\)(?: |$)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class NumberedSource:
    """One entry of a sources block.

    Attributes:
        number: The citation number ``n`` of ``[n]``, starting at 1.
        location: Where the text comes from (usually a file path).
        text: The source text.
    """

    number: int
    location: str
    text: str


def source_location(document: Document) -> str:
    """Return the one-line location shown for ``document`` (its ``source`` metadata)."""
    for key in _LOCATION_KEYS:
        value = document.metadata.get(key)
        if value:
            return " ".join(str(value).split())
    return UNKNOWN_LOCATION


def format_sources(documents: Sequence[Document]) -> str:
    """Number documents as a sources block: ``[1] (path/to/file.md) text...``.

    Entries are separated by a blank line; the numbers follow the order of ``documents``
    (best first). An empty sequence gives :data:`NO_SOURCES_TEXT`.

    Args:
        documents: The retrieved documents, best first.

    Returns:
        The sources block, parseable with :func:`parse_sources`.
    """
    if not documents:
        return NO_SOURCES_TEXT
    return "\n\n".join(
        f"[{number}] ({source_location(doc)}) {doc.page_content.strip()}".rstrip()
        for number, doc in enumerate(documents, start=1)
    )


def parse_sources(block: str) -> list[NumberedSource]:
    """Read a sources block written by :func:`format_sources` back into its entries.

    Only headers numbered in sequence (``[1]``, ``[2]``, ...) start an entry, so a line of
    source text that happens to look like a header does not split that source.

    Args:
        block: The sources block.

    Returns:
        The entries in order; empty when the block holds no numbered source.
    """
    headers: list[re.Match[str]] = []
    for match in _SOURCE_HEADER.finditer(block):
        if int(match.group(1)) == len(headers) + 1:
            headers.append(match)
    sources = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(block)
        sources.append(
            NumberedSource(
                number=index + 1,
                location=header.group(2),
                text=block[header.end() : end].strip(),
            )
        )
    return sources


def parse_answer_request(text: str) -> tuple[str, list[NumberedSource]]:
    """Split the human message of :data:`ANSWER_PROMPT` into the question and its sources.

    A message in another shape is taken as a bare question without sources.

    Args:
        text: The text of the human message.

    Returns:
        The question and the numbered sources.
    """
    if text.startswith(SOURCES_HEADER) and QUESTION_SEPARATOR in text:
        block, _, question = text[len(SOURCES_HEADER) :].rpartition(QUESTION_SEPARATOR)
        return question.strip(), parse_sources(block)
    return text.strip(), []


HISTORY_TOKEN_BUDGET = 2000
"""Approximate tokens of chat history kept in the answer prompt (the latest turns)."""


def trim_history(
    history: Sequence[BaseMessage], max_tokens: int | None = HISTORY_TOKEN_BUDGET
) -> list[BaseMessage]:
    """The latest whole turns of ``history`` that fit in ``max_tokens`` (approximate count).

    A long conversation would otherwise grow every prompt until the model's context
    overflows. The kept part starts on a human message, so no answer is shown without its
    question; ``None`` keeps everything. Tokens are estimated as everywhere in the package
    (:func:`~langchain_rag_async._text.estimate_message_tokens`, about 4 characters each),
    which needs no tokenizer download.

    Raises:
        ConfigurationError: ``max_tokens`` is negative.
    """
    if max_tokens is None or not history:
        return list(history)
    if max_tokens < 0:
        raise ConfigurationError(f"max_tokens must not be negative; got {max_tokens}")
    return trim_messages(
        list(history),
        max_tokens=max_tokens,
        token_counter=estimate_message_tokens,
        strategy="last",
        start_on="human",
        allow_partial=False,
    )


def build_answer_messages(
    question: str,
    documents: Sequence[Document],
    history: Sequence[BaseMessage] = (),
    *,
    max_history_tokens: int | None = HISTORY_TOKEN_BUDGET,
) -> list[BaseMessage]:
    """Build the messages that ask an answer model to answer ``question`` from ``documents``.

    Args:
        question: The user's question.
        documents: The retrieved documents, best first; they become sources ``[1]``, ``[2]``...
        history: Earlier turns of the conversation, placed before the question.
        max_history_tokens: Keep only the latest turns of ``history`` within this many
            (approximate) tokens; ``None`` keeps all (see :func:`trim_history`).

    Returns:
        System message, the (trimmed) history, then the human message with sources and
        question.
    """
    return ANSWER_PROMPT.format_messages(
        sources=format_sources(documents),
        question=question,
        history=trim_history(history, max_history_tokens),
    )
