"""Build the embedding stack from configuration: base model, rate limits, cache."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.config import EmbeddingConfig
from langchain_rag_async.embeddings.cache import CachedEmbeddings, SQLiteEmbeddingCache
from langchain_rag_async.embeddings.rate_limited import RateLimitedEmbeddings
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.limits import ServiceLimiter

if TYPE_CHECKING:
    import ssl

__all__ = (
    "EMBEDDING_CACHE_FILE",
    "LOCAL_MAX_CONCURRENCY",
    "aclose_base_embeddings",
    "build_base_embeddings",
    "build_embeddings",
    "embedding_limiter",
    "embedding_model_id",
)

EMBEDDING_CACHE_FILE = "embedding_cache.sqlite"
# A local model runs on the CPU cores of this machine: more requests in flight than one
# only oversubscribe them (onnxruntime already uses every core for one batch).
LOCAL_MAX_CONCURRENCY = 1


def embedding_model_id(config: EmbeddingConfig) -> str:
    """Identity of the configured model, stored with the index (``provider:model``)."""
    return f"{config.provider}:{config.model_name}"


def embedding_limiter(config: EmbeddingConfig, *, base: Embeddings | None = None) -> ServiceLimiter:
    """The one limiter of the configured embedding service (create it once, then share it).

    The bundled local model runs on this machine's cores, so it gets one request in flight
    (:data:`LOCAL_MAX_CONCURRENCY`) and no rate limits; any other service (or a ``base``
    model of your own) gets the configured ``rate_limit`` and ``concurrency``.

    Args:
        config: Embedding settings.
        base: Your own base model, when one replaces the configured provider.
    """
    if config.provider == "local" and base is None:
        return ServiceLimiter("embeddings:local", max_concurrency=LOCAL_MAX_CONCURRENCY)
    return ServiceLimiter.from_config(f"embeddings:{config.provider}", config)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The one TLS context of every OpenAI client this process builds (httpx's defaults).

    Loading the certificate store takes about 0.1 s per context; the sync and async
    clients of every model share this one instead of loading it each. Importing
    ``langchain_openai`` has already loaded one equivalent to httpx's default (certifi's
    store): that one is reused, unless ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` names another
    store, which is then loaded as httpx loads it.
    """
    import os
    import ssl

    # What httpx (and openai's httpx2) make of these, without importing httpx: its __init__
    # also imports its command line's click, rich and pygments (3-11 MiB of RSS).
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    if capath:
        return ssl.create_default_context(capath=capath)
    from langchain_openai.chat_models import base

    loaded = getattr(base, "global_ssl_context", None)
    if isinstance(loaded, ssl.SSLContext):
        return loaded
    import httpx

    return httpx.create_ssl_context()


def build_base_embeddings(config: EmbeddingConfig) -> Embeddings:
    """Create the provider's own LangChain ``Embeddings`` (no limits, no cache).

    Raises:
        ConfigurationError: OpenAI was asked for without a key or endpoint.
    """
    if config.provider == "local":
        from langchain_rag_async.embeddings.local import LocalMiniLMEmbeddings

        # The model name picks the file (the static int8 default, or the earlier one
        # that indexes of earlier versions were built with); an unknown one is refused.
        return LocalMiniLMEmbeddings(model=config.model_name)
    if not config.openai_api_key and not config.openai_base_url:
        raise ConfigurationError(
            "--embeddings openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for an "
            "OpenAI-compatible server); set it, or use the offline default --embeddings local"
        )
    import openai
    from langchain_openai import OpenAIEmbeddings
    from pydantic import SecretStr

    return OpenAIEmbeddings(
        # Our own HTTP clients (openai's defaults), so that we can close them: the model
        # never closes the ones it would make itself. See aclose_base_embeddings.
        # One TLS context for both, loaded once per process (shared_ssl_context).
        http_client=openai.DefaultHttpxClient(verify=shared_ssl_context()),
        http_async_client=openai.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
        model=config.model_name,
        api_key=SecretStr(config.openai_api_key or "not-needed"),
        base_url=config.openai_base_url,
        # Retries, limits and concurrency belong to RateLimitedEmbeddings, and the
        # token-length check would download a tiktoken table: both off here.
        max_retries=0,
        check_embedding_ctx_length=False,
        chunk_size=config.batch_size,
        timeout=config.request_timeout,
    )


def build_embeddings(
    config: EmbeddingConfig,
    *,
    limiter: ServiceLimiter | None = None,
    cache_dir: Path | None = None,
    base: Embeddings | None = None,
    model_id: str | None = None,
) -> Embeddings:
    """Create the full stack: ``CachedEmbeddings(RateLimitedEmbeddings(base))``.

    Args:
        config: Embedding settings.
        limiter: The one limiter of the embedding service; created from ``config`` when
            not given (pass it in to share it between components).
        cache_dir: Directory of the SQLite embedding cache; no cache when ``None``.
        base: A ready base model to wrap instead of building one from ``config``.
        model_id: The model identity the cache is keyed by; from ``config`` by default
            (pass it when ``base`` is your own model).

    Returns:
        A LangChain ``Embeddings`` that batches, limits, retries and caches.
    """
    if limiter is None:
        limiter = embedding_limiter(config, base=base)
    inner = base if base is not None else build_base_embeddings(config)
    limited = RateLimitedEmbeddings(
        inner,
        limiter=limiter,
        batch_size=config.batch_size,
        retry=config.retry,
        request_timeout=config.request_timeout,
    )
    if cache_dir is None:
        return limited
    cache = SQLiteEmbeddingCache(Path(cache_dir) / EMBEDDING_CACHE_FILE)
    return CachedEmbeddings(limited, cache, model_id=model_id or embedding_model_id(config))


async def aclose_base_embeddings(embeddings: Embeddings) -> None:
    """Close the HTTP clients of a model built by :func:`build_base_embeddings`.

    ``OpenAIEmbeddings`` never closes its HTTP clients; left to the garbage collector, the
    close lands on whatever event loop runs then (or a closed one). The factory hands it
    clients of ours (its public ``http_client`` / ``http_async_client`` fields), closed
    here. Models without such clients are left alone.
    """
    async_client = getattr(embeddings, "http_async_client", None)
    if async_client is not None and hasattr(async_client, "aclose"):
        await async_client.aclose()
    client = getattr(embeddings, "http_client", None)
    if client is not None and hasattr(client, "close"):
        await run_in_executor(None, client.close)
