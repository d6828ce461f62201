"""Tests of the shared answer prompt and its parseable sources block."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_rag_async.prompts import (
    ANSWER_PROMPT,
    ANSWER_SYSTEM_PROMPT,
    NO_SOURCES_TEXT,
    NumberedSource,
    build_answer_messages,
    format_sources,
    parse_answer_request,
    parse_sources,
)

BREAD = Document(
    page_content="Sourdough needs a lively starter.\n\nFeed it the day before baking.",
    metadata={"source": "recipes/sourdough.md"},
)
PODS = Document(
    page_content="A Pod is the smallest deployable unit in Kubernetes.",
    metadata={"source": "k8s/pods.md"},
)


def test_format_sources_numbers_documents_in_order() -> None:
    assert format_sources([BREAD, PODS]) == (
        "[1] (recipes/sourdough.md) Sourdough needs a lively starter.\n\n"
        "Feed it the day before baking.\n\n"
        "[2] (k8s/pods.md) A Pod is the smallest deployable unit in Kubernetes."
    )


def test_format_sources_location_fallbacks() -> None:
    no_source = Document(page_content="text", metadata={"file_path": "a/b.txt"})
    nothing = Document(page_content="text")
    multiline = Document(page_content="text", metadata={"source": "odd\nname.md"})
    block = format_sources([no_source, nothing, multiline])
    assert [s.location for s in parse_sources(block)] == [
        "a/b.txt",
        "unknown source",
        "odd name.md",
    ]


def test_empty_documents_give_no_sources_text() -> None:
    assert format_sources([]) == NO_SOURCES_TEXT
    assert parse_sources(NO_SOURCES_TEXT) == []


def test_parse_sources_round_trips_tricky_texts() -> None:
    documents = [
        BREAD,
        Document(
            page_content="(Parenthesised start.)\n[1] (not/a/header.md) looks like a header",
            metadata={"source": "notes (draft).md"},
        ),
        Document(page_content="", metadata={"source": "empty.md"}),
        Document(page_content="[4] (fake.md) out of sequence", metadata={"source": "x.md"}),
    ]
    parsed = parse_sources(format_sources(documents))
    assert parsed == [
        NumberedSource(number=1, location="recipes/sourdough.md", text=BREAD.page_content),
        NumberedSource(
            number=2,
            location="notes (draft).md",
            text="(Parenthesised start.)\n[1] (not/a/header.md) looks like a header",
        ),
        NumberedSource(number=3, location="empty.md", text=""),
        NumberedSource(number=4, location="x.md", text="[4] (fake.md) out of sequence"),
    ]


def test_answer_prompt_inputs_and_optional_history() -> None:
    assert set(ANSWER_PROMPT.input_variables) == {"sources", "question"}
    messages = ANSWER_PROMPT.invoke({"sources": "S", "question": "Q?"}).to_messages()
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage]
    assert messages[0].content == ANSWER_SYSTEM_PROMPT
    assert messages[1].content == "Sources:\nS\n\nQuestion: Q?"


def test_system_prompt_demands_citations_and_refusal() -> None:
    text = ANSWER_SYSTEM_PROMPT.lower()
    assert "only" in text and "[1]" in text and "do not contain the answer" in text


def test_build_answer_messages_places_history_between_system_and_question() -> None:
    history = [HumanMessage("What is a Pod?"), AIMessage("A deployable unit [1].")]
    messages = build_answer_messages("And sourdough?", [BREAD, PODS], history)
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    assert messages[1:3] == history
    question, sources = parse_answer_request(messages[-1].text)
    assert question == "And sourdough?"
    assert [s.location for s in sources] == ["recipes/sourdough.md", "k8s/pods.md"]


def test_parse_answer_request_ignores_question_markers_inside_sources() -> None:
    faq = Document(
        page_content="FAQ\n\nQuestion: Is it free?\n\nAnswer: Yes.", metadata={"source": "faq.md"}
    )
    messages = build_answer_messages("Multi-line\nquestion?", [faq])
    question, sources = parse_answer_request(messages[-1].text)
    assert question == "Multi-line\nquestion?"
    assert sources == [NumberedSource(number=1, location="faq.md", text=faq.page_content)]


@pytest.mark.parametrize("text", ["What is ownership?", "Sources:\nno question marker"])
def test_parse_answer_request_other_shapes_are_bare_questions(text: str) -> None:
    assert parse_answer_request(text) == (text.strip(), [])


def test_no_documents_round_trip_to_no_sources() -> None:
    messages = build_answer_messages("Anything?", [])
    assert parse_answer_request(messages[-1].text) == ("Anything?", [])


def _conversation(turns: int, words: int = 150) -> list[BaseMessage]:
    messages: list[BaseMessage] = []
    for turn in range(turns):
        messages.append(HumanMessage(f"question {turn}: " + "why " * words))
        messages.append(AIMessage(f"answer {turn}: " + "because " * words))
    return messages


def test_long_history_keeps_the_latest_whole_turns_within_the_budget() -> None:
    from langchain_rag_async._text import estimate_message_tokens
    from langchain_rag_async.errors import ConfigurationError
    from langchain_rag_async.prompts import HISTORY_TOKEN_BUDGET, trim_history

    history = _conversation(60)  # about 18k tokens
    kept = trim_history(history)
    assert 0 < len(kept) < len(history)
    assert estimate_message_tokens(kept) <= HISTORY_TOKEN_BUDGET
    assert estimate_message_tokens(history[-len(kept) - 2 :]) > HISTORY_TOKEN_BUDGET  # full
    assert kept == history[-len(kept) :]  # the latest ones, in order
    assert isinstance(kept[0], HumanMessage)  # never an answer without its question
    assert trim_history(history, None) == history
    assert trim_history(history[:2]) == history[:2]  # short: untouched
    messages = build_answer_messages("And now?", [BREAD], history, max_history_tokens=500)
    assert messages[0].type == "system" and messages[-1].text.endswith("Question: And now?")
    assert 1 <= len(messages) - 2 <= 4 and "answer 59" in messages[-2].text
    with pytest.raises(ValueError, match="must not be negative") as negative:
        trim_history(history, -1)
    assert isinstance(negative.value, ConfigurationError)
