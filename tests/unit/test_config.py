"""Settings: one frozen object, read from the environment in one place."""

from __future__ import annotations

import dataclasses

import pytest

from langchain_rag_async.config import (
    EmbeddingConfig,
    LLMConfig,
    RAGConfig,
    RateLimitConfig,
    RetrievalConfig,
    SplitterConfig,
)
from langchain_rag_async.embeddings.factory import build_base_embeddings, embedding_model_id
from langchain_rag_async.errors import ConfigurationError


def test_defaults_are_offline() -> None:
    config = RAGConfig.from_env({})
    assert config.embeddings.provider == "local"
    assert config.llm.provider == "extractive"
    assert str(config.index_dir) == ".rag-index"


def test_a_key_alone_never_switches_to_a_paid_api() -> None:
    config = RAGConfig.from_env({"OPENAI_API_KEY": "sk-test"})
    assert config.embeddings.provider == "local" and config.llm.provider == "extractive"
    assert config.embeddings.openai_api_key == "sk-test"
    assert "sk-test" not in repr(config)


def test_openai_when_asked_for() -> None:
    config = RAGConfig.from_env(
        {
            "RAG_EMBEDDINGS": "openai",
            "RAG_EMBEDDING_MODEL": "text-embedding-3-large",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "RAG_EMBEDDING_RPM": "600",
            "RAG_EMBEDDING_TPM": "100000",
            "RAG_LLM": "openai",
            "RAG_CHAT_MODEL": "my-model",
        }
    )
    assert config.embeddings.provider == "openai"
    assert embedding_model_id(config.embeddings) == "openai:text-embedding-3-large"
    assert config.embeddings.rate_limit == RateLimitConfig(
        requests_per_minute=600, tokens_per_minute=100000
    )
    assert config.llm.provider == "openai" and config.llm.model_name == "my-model"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAG_EMBEDDINGS": "cohere"}, "RAG_EMBEDDINGS"),
        ({"RAG_LLM": "gpt"}, "RAG_LLM"),
        ({"RAG_EMBEDDING_BATCH_SIZE": "many"}, "RAG_EMBEDDING_BATCH_SIZE"),
        ({"RAG_EMBEDDING_RPM": "fast"}, "RAG_EMBEDDING_RPM"),
        ({"RAG_EMBEDDING_CONCURRENCY": "0"}, "concurrency"),
        ({"RAG_CHAT_CONCURRENCY": "0"}, "concurrency"),
        ({"RAG_CHAT_CONCURRENCY": "lots"}, "RAG_CHAT_CONCURRENCY"),
        ({"RAG_CHAT_RPM": "fast"}, "RAG_CHAT_RPM"),
        ({"RAG_CHAT_TPM": "-5"}, "tokens_per_minute"),
        ({"RAG_CHUNK_SIZE": "100", "RAG_CHUNK_OVERLAP": "100"}, "chunk_overlap"),
        ({"RAG_FREEZE_GC": "maybe"}, "RAG_FREEZE_GC"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RAGConfig.from_env(env)


def test_chat_service_limits_default_to_unlimited_with_four_in_flight() -> None:
    llm = RAGConfig.from_env({}).llm
    assert llm == LLMConfig()
    assert llm.rate_limit == RateLimitConfig() and llm.concurrency == 4


def test_chat_service_limits_are_read_from_the_env() -> None:
    llm = RAGConfig.from_env(
        {"RAG_CHAT_RPM": "30", "RAG_CHAT_TPM": "40000", "RAG_CHAT_CONCURRENCY": "2"}
    ).llm
    assert llm.rate_limit == RateLimitConfig(requests_per_minute=30, tokens_per_minute=40000)
    assert llm.concurrency == 2
    embeddings = RAGConfig.from_env({"RAG_CHAT_RPM": "30"}).embeddings
    assert embeddings.rate_limit == RateLimitConfig()  # each service has its own limits


def test_configs_are_frozen_and_validated() -> None:
    config = RAGConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.index_dir = "x"  # type: ignore[misc]
    with pytest.raises(ConfigurationError):
        SplitterConfig(chunk_size=0)
    with pytest.raises(ConfigurationError):
        RateLimitConfig(requests_per_minute=-1)
    with pytest.raises(ConfigurationError):
        RetrievalConfig(fusion="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LLMConfig(provider="other")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        EmbeddingConfig(provider="other")  # type: ignore[arg-type]


def test_overrides_keep_the_rest() -> None:
    base = RAGConfig.from_env({"RAG_EMBEDDING_RPM": "60"})
    changed = base.with_overrides(batch_size=32, concurrency=2, tokens_per_minute=5000)
    assert changed.embeddings.batch_size == 32 and changed.embeddings.concurrency == 2
    assert changed.embeddings.rate_limit.requests_per_minute == 60
    assert changed.embeddings.rate_limit.tokens_per_minute == 5000
    assert base.embeddings.batch_size == 16


def test_openai_embeddings_need_a_key_or_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        build_base_embeddings(EmbeddingConfig(provider="openai"))


def test_openai_embeddings_are_built_for_our_retry_layer() -> None:
    from langchain_openai import OpenAIEmbeddings

    emb = build_base_embeddings(
        EmbeddingConfig(provider="openai", openai_api_key="k", batch_size=8)
    )
    assert isinstance(emb, OpenAIEmbeddings)
    assert emb.max_retries == 0  # RateLimitedEmbeddings is the only retry layer
    assert emb.check_embedding_ctx_length is False  # no tiktoken download
    assert emb.chunk_size == 8


def test_gc_freeze_is_on_by_default_and_can_be_turned_off() -> None:
    assert RAGConfig().freeze_gc and RAGConfig.from_env({}).freeze_gc
    assert not RAGConfig.from_env({"RAG_FREEZE_GC": "0"}).freeze_gc
    assert RAGConfig.from_env({"RAG_FREEZE_GC": " Yes "}).freeze_gc


def test_openai_clients_share_one_tls_context() -> None:
    # Loading a certificate store costs ~0.1 s: the sync and async clients of every model
    # built in a process use one context instead of loading one each.
    import ssl

    from langchain_rag_async.embeddings.factory import shared_ssl_context

    config = EmbeddingConfig(provider="openai", openai_api_key="k")
    first, second = build_base_embeddings(config), build_base_embeddings(config)
    context = shared_ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    for emb in (first, second):
        for client in (emb.http_client, emb.http_async_client):  # type: ignore[attr-defined]
            assert client._transport._pool._ssl_context is context
