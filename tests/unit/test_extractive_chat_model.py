"""Tests of the offline extractive answer model and its sentence helpers."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, PrivateAttr, ValidationError

from langchain_rag_async.chat_models import ExtractiveChatModel, compose_answer
from langchain_rag_async.chat_models._sentences import (
    content_terms,
    extract_sentences,
    score_sentences,
    select_sentences,
    split_sentences,
    stem,
)
from langchain_rag_async.chat_models.extractive import (
    DEFAULT_PREAMBLE,
    NO_SOURCES_ANSWER,
    NOT_IN_SOURCES_ANSWER,
)
from langchain_rag_async.errors import GenerationError
from langchain_rag_async.prompts import ANSWER_PROMPT, build_answer_messages, format_sources

OWNERSHIP_FILE = "ch04-01-what-is-ownership.md"
CITATION = re.compile(r"\[(\d+)\]")

BREAD = Document(
    page_content=(
        "## Feeding the starter\n\n"
        "A sourdough starter is a culture of wild yeast and lactic acid bacteria. "
        "Feed the starter with equal weights of flour and water every day. "
        "Bake when the starter has doubled in size and smells pleasantly sour."
    ),
    metadata={"source": "recipes/sourdough.md"},
)
PODS = Document(
    page_content=(
        "# Pods\n\n"
        "A Pod is the smallest deployable unit that Kubernetes schedules onto a node. "
        "Containers in one Pod share a network namespace and can talk over localhost.\n\n"
        "```yaml\napiVersion: v1\nkind: Pod  # Pods are declared in YAML manifests here.\n```\n"
    ),
    metadata={"source": "k8s/pods.md"},
)


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)]


@pytest.fixture
def ownership_text(rust_book: Path) -> str:
    return (rust_book / OWNERSHIP_FILE).read_text(encoding="utf-8")


@pytest.fixture
def ownership_rules(ownership_text: str) -> Document:
    return Document(
        page_content=_section(ownership_text, "### Ownership Rules", "### Variable Scope"),
        metadata={"source": f"rust-book/{OWNERSHIP_FILE}"},
    )


@pytest.fixture
def ownership_intro(ownership_text: str) -> Document:
    return Document(
        page_content=_section(ownership_text, "## What Is Ownership?", "> ### The Stack"),
        metadata={"source": f"rust-book/{OWNERSHIP_FILE}"},
    )


@pytest.fixture
def mixed_sources(ownership_rules: Document, ownership_intro: Document) -> list[Document]:
    return [BREAD, ownership_rules, PODS, ownership_intro]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _answer_lines(answer: str) -> list[tuple[str, int]]:
    """Return ``(sentence, cited number)`` for each quoted line of an answer."""
    lines = []
    for line in answer.splitlines():
        if match := re.fullmatch(r"- (.*) \[(\d+)\]", line):
            lines.append((match.group(1), int(match.group(2))))
    return lines


# --- the answer -------------------------------------------------------------------------------


def test_ownership_question_quotes_and_cites_the_ownership_source(
    mixed_sources: list[Document],
) -> None:
    answer = ExtractiveChatModel().invoke(
        build_answer_messages("What are the ownership rules?", mixed_sources)
    )
    assert isinstance(answer, AIMessage)
    text = answer.text
    assert text.splitlines()[0] == DEFAULT_PREAMBLE
    lines = _answer_lines(text)
    assert lines, text
    assert {number for _, number in lines} <= {2, 4}
    assert 2 in {number for _, number in lines}
    assert "First, let’s take a look at the ownership rules. [2]" in text
    assert "sourdough" not in text.lower() and "pod" not in text.lower()


@pytest.mark.parametrize(
    "question",
    [
        "What are the ownership rules?",
        "When is a value dropped?",
        "How should I feed a sourdough starter?",
        "What do containers in a Pod share?",
        "Does ownership slow down my program?",
    ],
)
def test_every_quoted_sentence_is_verbatim_from_its_cited_source(
    mixed_sources: list[Document], question: str
) -> None:
    answer = ExtractiveChatModel(max_sentences=6).invoke(
        build_answer_messages(question, mixed_sources)
    )
    lines = _answer_lines(answer.text)
    assert lines, answer.text
    # Every line of the answer but the preamble and the blank one is a cited quote.
    assert len(lines) == len(answer.text.splitlines()) - 2
    for sentence, number in lines:
        assert 1 <= number <= len(mixed_sources)
        source = _normalise(mixed_sources[number - 1].page_content)
        assert _normalise(sentence) in source


def test_answers_follow_the_topic_of_the_question(mixed_sources: list[Document]) -> None:
    model = ExtractiveChatModel()
    bread = model.invoke(build_answer_messages("How often do I feed the starter?", mixed_sources))
    pods = model.invoke(build_answer_messages("What is a Kubernetes Pod?", mixed_sources))
    assert set(CITATION.findall(bread.text)) == {"1"}
    assert "every day" in bread.text
    assert set(CITATION.findall(pods.text)) == {"3"}
    assert "apiVersion" not in pods.text and "YAML manifests" not in pods.text


def test_no_sources_gives_plain_refusal() -> None:
    answer = ExtractiveChatModel().invoke(build_answer_messages("What is ownership?", []))
    assert answer.text == NO_SOURCES_ANSWER
    assert not CITATION.search(answer.text)


def test_bare_message_without_sources_gives_plain_refusal() -> None:
    assert ExtractiveChatModel().invoke("What is ownership?").text == NO_SOURCES_ANSWER


@pytest.mark.parametrize("question", ["What is the capital of France?", "What is it?"])
def test_unrelated_question_gives_plain_refusal(
    mixed_sources: list[Document], question: str
) -> None:
    answer = ExtractiveChatModel().invoke(build_answer_messages(question, mixed_sources))
    assert answer.text == NOT_IN_SOURCES_ANSWER


def test_max_sentences_and_empty_preamble(mixed_sources: list[Document]) -> None:
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    answer = ExtractiveChatModel(max_sentences=2, preamble="").invoke(messages).text
    assert len(answer.splitlines()) == 2
    assert all(line.startswith("- ") for line in answer.splitlines())


def test_duplicate_sentences_from_overlapping_chunks_are_quoted_once() -> None:
    shared = "The borrow checker rejects two mutable references to the same value."
    first = Document(page_content=f"Intro text here. {shared}", metadata={"source": "a.md"})
    second = Document(page_content=f"{shared} Later text here.", metadata={"source": "a.md"})
    answer = compose_answer(
        "Why are two mutable references rejected?",
        [*_numbered([first, second])],
    )
    assert answer.count(shared) == 1
    assert f"{shared} [1]" in answer


def _numbered(documents: list[Document]) -> Any:
    from langchain_rag_async.prompts import parse_sources

    return parse_sources(format_sources(documents))


def test_no_human_message_is_a_generation_error() -> None:
    with pytest.raises(GenerationError, match="needs a human message"):
        ExtractiveChatModel().invoke([SystemMessage("only a system prompt")])


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        ExtractiveChatModel(max_sentences=0)
    with pytest.raises(ValidationError):
        ExtractiveChatModel(token_delay=-1.0)


def test_tools_and_structured_output_are_refused_clearly() -> None:
    class Answer(BaseModel):
        text: str

    model = ExtractiveChatModel()
    with pytest.raises(NotImplementedError, match="cannot call tools"):
        model.bind_tools([Answer])
    with pytest.raises(NotImplementedError, match="cannot call tools"):
        model.with_structured_output(Answer)


def test_metadata_and_usage(mixed_sources: list[Document]) -> None:
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    answer = ExtractiveChatModel().invoke(messages)
    assert answer.response_metadata["model_name"] == "extractive"
    assert answer.response_metadata["finish_reason"] == "stop"
    usage = answer.usage_metadata
    assert usage is not None
    assert usage["output_tokens"] == len(answer.text.split())
    assert usage["input_tokens"] == sum(len(m.text.split()) for m in messages)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_max_tokens_and_stop_cut_the_answer(mixed_sources: list[Document]) -> None:
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    full = ExtractiveChatModel().invoke(messages).text
    short = ExtractiveChatModel(max_tokens=5)
    cut = short.invoke(messages)
    assert cut.text == "".join(re.findall(r"\s*\S+\s*", full)[:5])
    assert cut.response_metadata["finish_reason"] == "length"
    assert "".join(c.text for c in short.stream(messages)) == cut.text
    stopped = ExtractiveChatModel().invoke(messages, stop=["[2]"])
    assert stopped.text == full[: full.index("[2]")]


# --- streaming, async and integration ---------------------------------------------------------


def test_stream_joins_to_exactly_the_invoke_text(mixed_sources: list[Document]) -> None:
    model = ExtractiveChatModel()
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    chunks = list(model.stream(messages))
    assert len(chunks) > 20
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == model.invoke(messages).text
    last = chunks[-1]
    assert last.chunk_position == "last"
    assert last.usage_metadata is not None
    assert last.response_metadata["model_name"] == "extractive"
    assert all(c.usage_metadata is None for c in chunks[:-1])


async def test_astream_and_ainvoke_agree_with_sync(mixed_sources: list[Document]) -> None:
    model = ExtractiveChatModel()
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    chunks = [chunk async for chunk in model.astream(messages)]
    full = await model.ainvoke(messages)
    assert len(chunks) > 20
    assert "".join(c.text for c in chunks) == full.text == model.invoke(messages).text
    aggregated = chunks[0]
    for chunk in chunks[1:]:
        aggregated += chunk
    assert aggregated.usage_metadata == full.usage_metadata


async def test_large_prompt_is_answered_off_the_loop(ownership_text: str) -> None:
    big = Document(page_content=ownership_text, metadata={"source": OWNERSHIP_FILE})
    messages = build_answer_messages("What are the ownership rules?", [BREAD, big])
    model = ExtractiveChatModel()
    streamed = "".join([c.text async for c in model.astream(messages)])
    assert streamed == (await model.ainvoke(messages)).text
    assert set(CITATION.findall(streamed)) == {"2"}


class _ThreadRecordingModel(ExtractiveChatModel):
    _threads: list[int] = PrivateAttr(default_factory=list)

    def _reply(self, messages: Any, stop: list[str] | None) -> Any:
        self._threads.append(threading.get_ident())
        return super()._reply(messages, stop)


async def test_only_large_prompts_leave_the_event_loop_thread(ownership_text: str) -> None:
    big = Document(page_content=ownership_text, metadata={"source": OWNERSHIP_FILE})
    model = _ThreadRecordingModel()
    await model.ainvoke(build_answer_messages("What is sourdough?", [BREAD]))
    await model.ainvoke(build_answer_messages("What are the ownership rules?", [big]))
    loop_thread = threading.get_ident()
    assert model._threads[0] == loop_thread
    assert model._threads[1] != loop_thread


async def test_lcel_chain_with_the_shared_prompt(mixed_sources: list[Document]) -> None:
    chain = ANSWER_PROMPT | ExtractiveChatModel() | StrOutputParser()
    inputs = {"sources": format_sources(mixed_sources), "question": "What are the ownership rules?"}
    answer = await chain.ainvoke(inputs)
    assert isinstance(answer, str)
    assert answer.startswith(DEFAULT_PREAMBLE)
    assert "[2]" in answer
    parts = [part async for part in chain.astream(inputs)]
    assert len(parts) > 20
    assert "".join(parts) == answer == chain.invoke(inputs)


class _TokenCounter(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], **kwargs: Any) -> None:
        self.tokens.append(str(token))


class _AsyncTokenCounter(AsyncCallbackHandler):
    def __init__(self, first_token: asyncio.Event | None = None) -> None:
        self.tokens: list[str] = []
        self.first_token = first_token

    async def on_llm_new_token(
        self, token: str | list[str | dict[str, Any]], **kwargs: Any
    ) -> None:
        self.tokens.append(str(token))
        if self.first_token is not None:
            self.first_token.set()


def test_sync_callbacks_see_every_token_once(mixed_sources: list[Document]) -> None:
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    counter = _TokenCounter()
    chunks = list(ExtractiveChatModel().stream(messages, config={"callbacks": [counter]}))
    assert counter.tokens == [c.text for c in chunks]
    streaming_counter = _TokenCounter()
    answer = ExtractiveChatModel(streaming=True).invoke(
        messages, config={"callbacks": [streaming_counter]}
    )
    assert len(streaming_counter.tokens) > 20
    assert "".join(streaming_counter.tokens) == answer.text


async def test_async_callbacks_see_every_token_once(mixed_sources: list[Document]) -> None:
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    counter = _AsyncTokenCounter()
    chunks = [c async for c in ExtractiveChatModel().astream(messages, {"callbacks": [counter]})]
    assert len(counter.tokens) > 20
    assert counter.tokens == [c.text for c in chunks]


async def test_astream_events_report_tokens(mixed_sources: list[Document]) -> None:
    model = ExtractiveChatModel()
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    tokens = [
        event["data"]["chunk"].text
        async for event in model.astream_events(messages, version="v2")
        if event["event"] == "on_chat_model_stream"
    ]
    assert len(tokens) > 20
    assert "".join(tokens) == (await model.ainvoke(messages)).text


class _AnswerState(TypedDict):
    messages: list[BaseMessage]
    answer: str


async def test_langgraph_messages_stream_sees_tokens(mixed_sources: list[Document]) -> None:
    model = ExtractiveChatModel()

    async def answer(state: _AnswerState) -> dict[str, str]:
        return {"answer": (await model.ainvoke(state["messages"])).text}

    builder = StateGraph(_AnswerState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    graph = builder.compile()
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    tokens = [
        chunk.text
        async for chunk, _meta in graph.astream(
            {"messages": messages, "answer": ""}, stream_mode="messages"
        )
        if isinstance(chunk, AIMessageChunk)
    ]
    final = await graph.ainvoke({"messages": messages, "answer": ""})
    assert len(tokens) > 20
    assert "".join(tokens) == final["answer"]


async def test_consumer_stopping_closes_the_stream(mixed_sources: list[Document]) -> None:
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    counter = _AsyncTokenCounter()
    stream = ExtractiveChatModel().astream(messages, {"callbacks": [counter]})
    assert isinstance(stream, AsyncGenerator)
    received = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert [c.text for c in received] == counter.tokens
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_cancelling_a_paced_stream_stops_it(mixed_sources: list[Document]) -> None:
    messages = build_answer_messages("What are the ownership rules?", mixed_sources)
    first_token = asyncio.Event()
    counter = _AsyncTokenCounter(first_token)
    model = ExtractiveChatModel(token_delay=60.0)

    async def consume() -> str:
        return "".join([c.text async for c in model.astream(messages, {"callbacks": [counter]})])

    task = asyncio.create_task(consume())
    async with asyncio.timeout(30):  # safety net only: a hung stream fails, not stalls
        await first_token.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()
    assert len(counter.tokens) == 1


# --- sentence helpers -------------------------------------------------------------------------


def test_split_sentences_handles_markdown() -> None:
    markdown = (
        "# Title Here\n\n"
        "Rust has a `String::from` function. It allocates memory, e.g. on the heap.\n"
        "Short bit.\n\n"
        '```rust\nlet s = String::from("Never quote code blocks please");\n```\n\n'
        "> ### Quoted Heading\n> A quoted sentence about the stack and heap.\n\n"
        "- Each value in Rust has an _owner_.\n"
        "- Read [the guide](https://example.com/guide) before you start.\n"
        '<Listing number="4-1">\n\n'
        "| Column | Meaning of the column |\n|---|---|\n"
    )
    assert split_sentences(markdown) == [
        ("Rust has a `String::from` function.", "Title Here"),
        ("It allocates memory, e.g. on the heap.", "Title Here"),
        ("A quoted sentence about the stack and heap.", "Quoted Heading"),
        ("Each value in Rust has an _owner_.", "Quoted Heading"),
        ("Read the guide before you start.", "Quoted Heading"),
        ("Column; Meaning of the column", "Quoted Heading"),
    ]


def test_chunk_cut_inside_a_code_fence_skips_the_code() -> None:
    chunk = 'let hidden = "inside the cut code block";\n```\n\nProse after the code block ends.'
    assert split_sentences(chunk) == [("Prose after the code block ends.", "")]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["owners", "owner", "Owner"], "owner"),
        (["rules", "rule"], "rule"),
        (["dropped", "dropping", "drops"], "drop"),
        (["concatenation", "concatenate"], "concaten"),
        (["memories", "memory"], "memori"),
    ],
)
def test_stem_conflates_word_forms(words: list[str], expected: str) -> None:
    assert {stem(word) for word in words} == {expected}


def test_content_terms_drop_stopwords_and_markup() -> None:
    assert content_terms("What are the _ownership_ rules of `String`?") == [
        "ownership",
        "rule",
        "string",
    ]
    question = "Please explain how the café's drops work"
    assert content_terms(question) == ["cafe", "s", "drop", "work"]


def test_scoring_prefers_matching_and_better_ranked_sentences() -> None:
    sentences = extract_sentences(
        [
            (1, "The heap stores data of unknown size. Bread rises in a warm oven."),
            (2, "The heap stores data of unknown size and grows."),
        ]
    )
    scored = score_sentences("Where is data of unknown size stored?", sentences)
    assert [s.sentence.text for s in scored] == [
        "The heap stores data of unknown size.",
        "The heap stores data of unknown size and grows.",
    ]
    chosen = select_sentences(scored, limit=4)
    assert [s.sentence.source for s in chosen] == [1]
    assert select_sentences(scored, limit=0) == []
    assert score_sentences("What is it?", sentences) == []


# --- the langchain-tests standard suite -------------------------------------------------------


class TestExtractiveChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ExtractiveChatModel]:
        return ExtractiveChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"max_sentences": 3}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False


class TestExtractiveChatModelStandardBehaviour(ChatModelIntegrationTests):
    """The integration suite runs offline here: the model needs no service."""

    @property
    def chat_model_class(self) -> type[ExtractiveChatModel]:
        return ExtractiveChatModel

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False
