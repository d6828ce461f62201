"""Settings: frozen, kw-only dataclasses, read from the environment in one place (`from_env`)."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from langchain_rag_async.errors import ConfigurationError

__all__ = (
    "ChatProvider",
    "DebugAsyncConfig",
    "EmbeddingConfig",
    "EmbeddingProvider",
    "FusionMethod",
    "LLMConfig",
    "LoaderConfig",
    "ObservabilityConfig",
    "PipelineConfig",
    "PoolSettings",
    "RAGConfig",
    "RateLimitConfig",
    "RetrievalConfig",
    "RetryConfig",
    "ServerConfig",
    "SplitterConfig",
    "check_store_url",
)

EmbeddingProvider = Literal["local", "openai"]
ChatProvider = Literal["extractive", "openai", "local"]
FusionMethod = Literal["rrf", "weighted"]
TracesExporter = Literal["none", "otlp", "console"]
LogFormat = Literal["console", "json"]

T = TypeVar("T")

DEFAULT_OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_LOCAL_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2@onnx-int8-static"
"""Identity of the bundled offline model's vectors (stored with every index it builds)."""
DEFAULT_OPENAI_CHAT_MODEL = "gpt-4o-mini"
DEFAULT_LOCAL_CHAT_MODEL = "SmolLM2-135M-Instruct"
DEFAULT_INDEX_DIR = Path(".rag-index")
_MB = 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class LoaderConfig:
    """How `AsyncDirectoryLoader` walks and reads a directory.

    Attributes:
        include: Glob patterns (relative to the root, ``**`` allowed) a file must match;
            empty means every supported text format.
        exclude: Glob patterns that drop a file even when included.
        max_file_size: Files larger than this many bytes are reported and skipped.
        max_open_files: At most this many files are read at once.
        respect_gitignore: Skip paths ignored by ``.gitignore`` files under the root.
        include_hidden: Also read dot-files and dot-directories.
        confine_to: When set, a file whose real path (symbolic links followed) lies
            outside all of these directories is reported and not read (the server sets
            its ``--root`` directories here).
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_size: int = 10 * 1024 * 1024
    max_open_files: int = 16
    respect_gitignore: bool = True
    include_hidden: bool = False
    confine_to: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        _require_positive("max_file_size", self.max_file_size)
        _require_positive("max_open_files", self.max_open_files)


@dataclass(frozen=True, kw_only=True, slots=True)
class SplitterConfig:
    """How documents are cut into chunks.

    Attributes:
        chunk_size: Maximum characters per chunk.
        chunk_overlap: Characters shared by consecutive chunks.
        markdown_aware: Split Markdown on headings and code fences first.
    """

    chunk_size: int = 1000
    chunk_overlap: int = 150
    markdown_aware: bool = True

    def __post_init__(self) -> None:
        _require_positive("chunk_size", self.chunk_size)
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigurationError(
                f"chunk_overlap must be >= 0 and smaller than chunk_size "
                f"({self.chunk_size}); got {self.chunk_overlap}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitConfig:
    """Limits of one external service; ``None`` means unlimited.

    A stated request rate is paced as a sliding window of one second's share (1200 per
    minute: at most 20 requests in any 1.03 s), since many services enforce their
    per-minute limits over a second or ten. Limits the service states in its answers
    (OpenAI's ``x-ratelimit-*`` headers, ``Retry-After``) are learnt and paced the same
    way, also when nothing is configured here.

    Attributes:
        requests_per_minute: Requests allowed per minute.
        tokens_per_minute: Tokens (estimated) allowed per minute.
        window_margin: Pacing windows are this much longer than the service's (a fraction),
            so that a request that reaches the service sooner than an earlier one did
            (network jitter, a connection already open) still finds the window clear.
            Doubled (up to 0.25) after each 429 met while paced.
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    window_margin: float = 0.03

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} must be positive or unset; got {value}")
        if not 0.0 <= self.window_margin <= 1.0:
            raise ConfigurationError(
                f"window_margin must be between 0 and 1; got {self.window_margin}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryConfig:
    """Retry policy for calls to an external service.

    A failed attempt is retried while all of these hold (see
    :class:`~langchain_rag_async.embeddings.rate_limited.RateLimitedEmbeddings`):

    - the error is transient (429, 408, 409, 5xx, a timeout, a transport error, a broken
      or invalid response);
    - the request has made fewer than ``max_attempts`` attempts and spent less than
      ``max_total_seconds``;
    - the retry budget of the run has a retry left: retries so far are fewer than
      ``retry_budget_min + retry_budget_ratio * first attempts so far`` (as gRPC and
      Finagle retry budgets: a transient fault mix never runs out, a dead service stops
      being retried after a bounded number of requests);
    - the request's latest streak of failures of one kind (say ``k`` times 500) is still
      plausible for random faults: with ``r`` the share of the other requests' attempts
      that failed that way in this run, ``r ** k`` is at least ``persistent_probability``.
      A request that always fails while others pass gives up after a few attempts (5 at
      most for a kind that hits 5 % of attempts); one caught in a random mix keeps trying.

    Each attempt also gets an adaptive deadline, learnt from the latencies observed:
    ``attempt_timeout_multiplier`` times the ``attempt_timeout_quantile`` of recent
    successful attempts, at least ``min_attempt_timeout``, at most the request timeout,
    doubled for each earlier timed-out attempt of the same request.

    Attributes:
        max_attempts: Attempts per request at most, the first included.
        initial_backoff: Seconds before the first retry (grows exponentially, with jitter).
        max_backoff: Longest single wait in seconds.
        max_total_seconds: Give up on a request after this many seconds in all.
        retry_budget_ratio: Retries the run earns per first attempt.
        retry_budget_min: Retries the run may always make (its floor).
        persistent_probability: Give up on a request once its streak of same-kind failures
            is less likely than this at the rate the rest of the run meets that kind.
        attempt_timeout_multiplier: Adaptive deadline: multiple of the latency quantile.
        attempt_timeout_quantile: Adaptive deadline: quantile of recent latencies (0-1).
        min_attempt_timeout: Adaptive deadline: floor in seconds.
    """

    max_attempts: int = 12
    initial_backoff: float = 0.5
    max_backoff: float = 20.0
    max_total_seconds: float = 120.0
    retry_budget_ratio: float = 1.0
    retry_budget_min: int = 20
    persistent_probability: float = 1e-6
    attempt_timeout_multiplier: float = 4.0
    attempt_timeout_quantile: float = 0.95
    min_attempt_timeout: float = 1.0

    def __post_init__(self) -> None:
        _require_positive("max_attempts", self.max_attempts)
        _require_positive("max_total_seconds", self.max_total_seconds)
        _require_positive("attempt_timeout_multiplier", self.attempt_timeout_multiplier)
        _require_positive("min_attempt_timeout", self.min_attempt_timeout)
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ConfigurationError("backoff times must not be negative")
        if self.retry_budget_ratio < 0 or self.retry_budget_min < 0:
            raise ConfigurationError("the retry budget (ratio and minimum) must not be negative")
        for name in ("persistent_probability", "attempt_timeout_quantile"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigurationError(f"{name} must be within [0, 1]; got {value}")


@dataclass(frozen=True, kw_only=True, slots=True)
class EmbeddingConfig:
    """Which embedding model to use and how to call it.

    Attributes:
        provider: ``"local"`` (bundled ONNX MiniLM, offline) or ``"openai"``
            (any OpenAI-compatible endpoint). A key in the environment alone never
            switches to ``"openai"``.
        model: Model name; ``None`` picks the provider's default.
        batch_size: Texts per embedding request.
        concurrency: Requests in flight at most.
        rate_limit: Limits of the embedding service.
        retry: Retry policy for the embedding service.
        openai_api_key: Key for the OpenAI-compatible endpoint.
        openai_base_url: Base URL of the OpenAI-compatible endpoint.
        request_timeout: Seconds before one embedding request is abandoned.
    """

    provider: EmbeddingProvider = "local"
    model: str | None = None
    batch_size: int = 16
    concurrency: int = 8
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    request_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.provider not in ("local", "openai"):
            raise ConfigurationError(
                f"unknown embeddings provider {self.provider!r}; use 'local' or 'openai'"
            )
        _require_positive("batch_size", self.batch_size)
        _require_positive("concurrency", self.concurrency)
        _require_positive("request_timeout", self.request_timeout)

    @property
    def model_name(self) -> str:
        """The model name with the provider default filled in."""
        if self.model:
            return self.model
        if self.provider == "openai":
            return DEFAULT_OPENAI_EMBEDDING_MODEL
        return DEFAULT_LOCAL_EMBEDDING_MODEL


@dataclass(frozen=True, kw_only=True, slots=True)
class RetrievalConfig:
    """How the hybrid retriever searches and fuses.

    Attributes:
        k: Chunks returned.
        fetch_k: Candidates fetched from each side (dense, sparse) before fusion.
        fusion: ``"weighted"`` (min-max normalised scores, weighted sum; the default, as it
            measured best on SciFact: see docs/benchmarks.md) or ``"rrf"`` (reciprocal
            rank fusion).
        dense_weight: Weight of the dense side in the fusion.
        sparse_weight: Weight of the sparse side in the fusion.
        rrf_c: The constant of reciprocal rank fusion.
        refresh_interval: Seconds between checks (one ``stat``) for a newer saved index,
            written by an indexing run of another process; the engine then loads it for
            the next query. 0: check before every query.
    """

    k: int = 6
    fetch_k: int = 30
    fusion: FusionMethod = "weighted"
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    rrf_c: int = 60
    refresh_interval: float = 1.0

    def __post_init__(self) -> None:
        _require_positive("k", self.k)
        _require_positive("fetch_k", self.fetch_k)
        if self.fusion not in ("rrf", "weighted"):
            raise ConfigurationError(f"fusion must be 'rrf' or 'weighted'; got {self.fusion!r}")
        for weight in (self.dense_weight, self.sparse_weight):
            if not math.isfinite(weight) or weight < 0:
                raise ConfigurationError(f"fusion weights must be finite and >= 0; got {weight}")
        if self.dense_weight + self.sparse_weight == 0:
            raise ConfigurationError("at least one fusion weight must be positive")
        if self.rrf_c < 0:
            raise ConfigurationError(f"rrf_c must not be negative; got {self.rrf_c}")
        if not math.isfinite(self.refresh_interval) or self.refresh_interval < 0:
            raise ConfigurationError(
                f"refresh_interval must be finite and >= 0; got {self.refresh_interval}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMConfig:
    """Which chat model writes answers.

    Attributes:
        provider: ``"extractive"`` (offline, composes the answer from retrieved
            sentences), ``"openai"`` (any OpenAI-compatible server) or ``"local"``
            (SmolLM2-135M-Instruct through llama.cpp, offline; needs the ``local-llm``
            extra). A key in the environment alone never switches to ``"openai"``.
        model: Model name; ``None`` picks the provider's default. For ``"local"``, a
            path to another GGUF chat model.
        temperature: Sampling temperature for generative models.
        openai_api_key: Key for the OpenAI-compatible endpoint.
        openai_base_url: Base URL of the OpenAI-compatible endpoint.
        request_timeout: Seconds before one generation request is abandoned.
        rate_limit: Limits of the chat service (requests and estimated prompt tokens per
            minute); unlimited by default.
        concurrency: Chat requests in flight at most (answers and follow-up rewrites).
    """

    provider: ChatProvider = "extractive"
    model: str | None = None
    temperature: float = 0.0
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    request_timeout: float = 120.0
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    concurrency: int = 4

    def __post_init__(self) -> None:
        if self.provider not in ("extractive", "openai", "local"):
            raise ConfigurationError(
                f"unknown chat provider {self.provider!r}; use 'extractive', 'openai' or 'local'"
            )
        _require_positive("request_timeout", self.request_timeout)
        _require_positive("concurrency", self.concurrency)

    @property
    def model_name(self) -> str:
        """The model name with the provider default filled in."""
        if self.model:
            return self.model
        defaults = {"openai": DEFAULT_OPENAI_CHAT_MODEL, "local": DEFAULT_LOCAL_CHAT_MODEL}
        return defaults.get(self.provider, "extractive")


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineConfig:
    """Shape of the overlapped indexing pipeline.

    Attributes:
        queue_size: Capacity of each bounded queue between stages (back-pressure).
        split_workers: Concurrent splitting tasks (each runs in an executor).
        store_batch_size: Chunks written to the vector store per store call.
        checkpoint_every: Save the index after this many stored chunks (0: only at the end).
        low_memory_bytes: When the system's available memory falls under this, the embed
            batch size and the queue depth are halved, and grow back once it recovers
            (``indexing/memory.py``); 0 turns this off.
        memory_check_interval: Seconds between two readings of the available memory.
    """

    queue_size: int = 64
    split_workers: int = 2
    store_batch_size: int = 256
    checkpoint_every: int = 0
    low_memory_bytes: int = 512 * 1024 * 1024
    memory_check_interval: float = 1.0

    def __post_init__(self) -> None:
        _require_positive("queue_size", self.queue_size)
        _require_positive("split_workers", self.split_workers)
        _require_positive("store_batch_size", self.store_batch_size)
        if self.checkpoint_every < 0:
            raise ConfigurationError("checkpoint_every must not be negative")
        if self.low_memory_bytes < 0:
            raise ConfigurationError("low_memory_bytes must not be negative (0: off)")
        if not math.isfinite(self.memory_check_interval) or self.memory_check_interval <= 0:
            raise ConfigurationError(
                f"memory_check_interval must be positive seconds; got {self.memory_check_interval}"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class DebugAsyncConfig:
    """``--debug-async``: periodic task dumps and warnings on a blocked event loop.

    Attributes:
        enabled: Turn the monitor on (``rag-async index|ask|serve --debug-async``).
        interval: Seconds between two dumps of the loop's tasks and what each awaits.
        slow_callback: Warn when one callback holds the loop longer than this (seconds).
    """

    enabled: bool = False
    interval: float = 5.0
    slow_callback: float = 0.1

    def __post_init__(self) -> None:
        for name in ("interval", "slow_callback"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"{name} must be positive seconds; got {value}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """How ``rag-async serve`` exposes an index over HTTP (and what it refuses).

    Attributes:
        host: Interface to bind; anything but loopback needs ``api_key`` or ``insecure``.
        port: TCP port.
        roots: Directories ``POST /index`` may index (nothing outside them, symlinks
            included); empty means indexing over HTTP is refused.
        api_key: When set, every endpoint but ``/healthz`` requires
            ``Authorization: Bearer <api_key>``.
        insecure: Allow a non-loopback ``host`` without ``api_key``.
        cors_origins: Origins allowed by CORS; empty turns CORS off.
        allowed_hosts: ``Host`` header names served (``"*.example.com"`` patterns, ``"*"``
            for any); others get 400. ``None``, the default: when ``host`` is loopback,
            only ``127.0.0.1`` and ``localhost`` (against DNS rebinding: a web page whose
            name is made to resolve to 127.0.0.1 cannot reach the index through a
            browser), else any. Set it when the app is reached under another name (a
            reverse proxy, an app that mounts ``create_app()``).
        model_name: The one model name ``/v1/models`` lists and chat requests must use.
        max_body_bytes: Largest request body accepted (413 above).
        max_question_chars: Longest question accepted (400 above).
        max_messages: Most chat messages in one request (400 above).
        max_k: Largest ``k`` a request may ask for.
        max_concurrent_generations: Answers generated at once; more wait in a queue.
        queue_timeout: Seconds a request waits for a generation slot before a 429.
        grace: Seconds running streams get to finish after SIGTERM before they are cancelled.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    roots: tuple[Path, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    insecure: bool = False
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None
    model_name: str = "rag-async"
    max_body_bytes: int = 1_000_000
    max_question_chars: int = 4_000
    max_messages: int = 200
    max_k: int = 50
    max_concurrent_generations: int = 32
    queue_timeout: float = 5.0
    grace: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be between 0 and 65535; got {self.port}")
        for name in (
            "max_body_bytes",
            "max_question_chars",
            "max_messages",
            "max_k",
            "max_concurrent_generations",
        ):
            _require_positive(name, getattr(self, name))
        if self.queue_timeout < 0 or self.grace < 0:
            raise ConfigurationError("queue_timeout and grace must not be negative")
        if not self.model_name.strip():
            raise ConfigurationError("model_name must not be empty")
        if self.allowed_hosts is not None and not self.allowed_hosts:
            raise ConfigurationError(
                "allowed_hosts must name at least one host ('*' for any), or be None for "
                "the default (loopback names on a loopback host)"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class ObservabilityConfig:
    """Where traces, metrics and logs go (applications only: the library installs nothing).

    Attributes:
        traces_exporter: ``otlp`` (OTLP over HTTP), ``console`` (stderr) or ``none``.
        otlp_endpoint: Full URL of the OTLP/HTTP traces endpoint (``.../v1/traces``);
            ``None``: the exporter's default (``http://localhost:4318/v1/traces``).
        service_name: The ``service.name`` resource attribute of exported spans.
        flush_timeout: Seconds a command may spend exporting its last spans at exit.
        metrics_port: ``rag-async index`` serves ``/metrics`` on this port while it runs.
        metrics_host: Interface of that endpoint (loopback by default).
        log_format: ``console`` (human-readable) or ``json`` (one object per line).
    """

    traces_exporter: TracesExporter = "none"
    otlp_endpoint: str | None = None
    service_name: str = "rag-async"
    flush_timeout: float = 2.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: LogFormat = "console"

    def __post_init__(self) -> None:
        if self.traces_exporter not in ("none", "otlp", "console"):
            raise ConfigurationError(
                f"traces exporter {self.traces_exporter!r} is not supported; "
                "use 'otlp', 'console' or 'none' (OTEL_TRACES_EXPORTER)"
            )
        if self.log_format not in ("console", "json"):
            raise ConfigurationError(
                f"log format {self.log_format!r} is not supported; use 'console' or 'json'"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigurationError(
                f"metrics port must be between 0 and 65535; got {self.metrics_port}"
            )
        if self.flush_timeout < 0:
            raise ConfigurationError("flush_timeout must not be negative")


@dataclass(frozen=True, kw_only=True, slots=True)
class PoolSettings:
    """Connection pool to PostgreSQL of one process (per event loop), for ``store_url``.

    Environment: ``RAG_STORE_POOL_SIZE``, ``RAG_STORE_POOL_MAX_OVERFLOW``,
    ``RAG_STORE_POOL_TIMEOUT``, ``RAG_STORE_POOL_RECYCLE``.

    Attributes:
        pool_size: Connections kept open (the pool's minimum once warmed).
        max_overflow: Extra connections opened under load, closed when idle: at most
            ``pool_size + max_overflow`` at once.
        pool_timeout: Seconds a caller waits for a free connection before an error.
        pool_recycle: Seconds after which a connection is replaced (load balancers and
            PgBouncer close idle ones).
    """

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: float = 1800.0

    def __post_init__(self) -> None:
        if self.pool_size < 1 or self.max_overflow < 0:
            raise ConfigurationError(
                f"the store pool needs pool_size >= 1 and max_overflow >= 0; got "
                f"{self.pool_size} and {self.max_overflow} (RAG_STORE_POOL_SIZE, "
                "RAG_STORE_POOL_MAX_OVERFLOW)"
            )
        if not self.pool_timeout > 0 or not self.pool_recycle > 0:
            raise ConfigurationError(
                "the store pool's timeout and recycle must be positive seconds "
                "(RAG_STORE_POOL_TIMEOUT, RAG_STORE_POOL_RECYCLE)"
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class RAGConfig:
    """All settings of langchain-rag-async in one object.

    Build it directly, or with :meth:`from_env`, and derive variants with
    :func:`dataclasses.replace` (or :meth:`with_overrides`).
    """

    index_dir: Path = DEFAULT_INDEX_DIR
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    splitter: SplitterConfig = field(default_factory=SplitterConfig)
    embeddings: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    debug_async: DebugAsyncConfig = field(default_factory=DebugAsyncConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    freeze_gc: bool = True
    """After the engine loads an index, freeze what is alive (:mod:`.gc_tuning`)."""
    store_url: str | None = field(default=None, repr=False)
    """``postgresql://...``: the whole index (vectors, keyword index, records, embedding
    cache, run lock) lives in that PostgreSQL + pgvector database (:mod:`.postgres`)
    instead of ``index_dir``; ``None`` (the default): the local directory."""
    store_pool: PoolSettings = field(default_factory=PoolSettings)
    """Connection pool to ``store_url``'s database, per process and event loop."""

    def __post_init__(self) -> None:
        if self.store_url is not None:
            check_store_url(self.store_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RAGConfig:
        """Read settings from environment variables.

        Recognised: ``RAG_INDEX_DIR``, ``RAG_EMBEDDINGS`` (``local``/``openai``),
        ``RAG_EMBEDDING_MODEL``, ``RAG_EMBEDDING_BATCH_SIZE``, ``RAG_EMBEDDING_CONCURRENCY``,
        ``RAG_EMBEDDING_RPM``, ``RAG_EMBEDDING_TPM``, ``RAG_CHUNK_SIZE``, ``RAG_CHUNK_OVERLAP``,
        ``RAG_MAX_FILE_SIZE``, ``RAG_CHECKPOINT_EVERY`` (save the index after this many stored
        chunks; 0, the default: only at the end of a run), ``RAG_LOW_MEMORY_MB`` (halve the
        embed batches and queues under this much available memory; 0: off; default 512),
        ``RAG_LLM`` (``extractive``/``openai``/``local``),
        ``RAG_CHAT_MODEL``, ``RAG_CHAT_CONCURRENCY`` (chat requests in flight at most,
        default 4), ``RAG_CHAT_RPM`` and ``RAG_CHAT_TPM`` (requests and estimated prompt
        tokens per minute of the chat service; unset: unlimited), ``OPENAI_API_KEY``,
        ``OPENAI_BASE_URL``, ``RAG_FREEZE_GC`` (``1``/``0``), and for ``serve``:
        ``RAG_SERVE_HOST``, ``RAG_SERVE_PORT``, ``RAG_SERVE_ROOTS`` (directories separated
        by ``os.pathsep``), ``RAG_API_KEY``, ``RAG_CORS_ORIGINS`` and
        ``RAG_SERVE_ALLOWED_HOSTS`` (comma-separated),
        ``RAG_SERVE_MAX_CONCURRENT_GENERATIONS``, ``RAG_SERVE_GRACE``; for debugging:
        ``RAG_DEBUG_ASYNC`` (``1``/``0``), ``RAG_DEBUG_ASYNC_INTERVAL``,
        ``RAG_DEBUG_ASYNC_SLOW_CALLBACK`` (seconds); for observability:
        ``RAG_METRICS_PORT``, ``RAG_METRICS_HOST``, ``RAG_LOG_FORMAT`` and OpenTelemetry's
        standard ``OTEL_TRACES_EXPORTER``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
        ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_SDK_DISABLED``
        (see :func:`_observability_from_env`); ``RAG_STORE_URL`` (``postgresql://...``: the
        index lives in PostgreSQL) with ``RAG_STORE_POOL_SIZE``,
        ``RAG_STORE_POOL_MAX_OVERFLOW``, ``RAG_STORE_POOL_TIMEOUT`` and
        ``RAG_STORE_POOL_RECYCLE`` (:class:`PoolSettings`). Unset variables keep the
        defaults of the config classes.

        Args:
            environ: The mapping to read; ``os.environ`` by default.

        Raises:
            ConfigurationError: A variable holds a value of the wrong kind.
        """
        env = os.environ if environ is None else environ
        provider = env.get("RAG_EMBEDDINGS", "local").strip().lower() or "local"
        if provider not in ("local", "openai"):
            raise ConfigurationError(
                f"RAG_EMBEDDINGS={provider!r} is not supported; use 'local' or 'openai'"
            )
        defaults_e = EmbeddingConfig()
        defaults_s = SplitterConfig()
        defaults_l = LLMConfig()
        embeddings = EmbeddingConfig(
            provider=provider,  # type: ignore[arg-type]
            model=env.get("RAG_EMBEDDING_MODEL") or None,
            batch_size=_int(env, "RAG_EMBEDDING_BATCH_SIZE", defaults_e.batch_size),
            concurrency=_int(env, "RAG_EMBEDDING_CONCURRENCY", defaults_e.concurrency),
            rate_limit=_rate_limit(env, "RAG_EMBEDDING"),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
        )
        splitter = SplitterConfig(
            chunk_size=_int(env, "RAG_CHUNK_SIZE", defaults_s.chunk_size),
            chunk_overlap=_int(env, "RAG_CHUNK_OVERLAP", defaults_s.chunk_overlap),
        )
        loader = LoaderConfig(
            max_file_size=_int(env, "RAG_MAX_FILE_SIZE", LoaderConfig().max_file_size)
        )
        llm_provider = env.get("RAG_LLM", "extractive").strip().lower() or "extractive"
        if llm_provider not in ("extractive", "openai", "local"):
            raise ConfigurationError(
                f"RAG_LLM={llm_provider!r} is not supported; use 'extractive', 'openai' or 'local'"
            )
        llm = LLMConfig(
            provider=llm_provider,  # type: ignore[arg-type]
            model=env.get("RAG_CHAT_MODEL") or None,
            rate_limit=_rate_limit(env, "RAG_CHAT"),
            concurrency=_int(env, "RAG_CHAT_CONCURRENCY", defaults_l.concurrency),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
        )
        index_dir = Path(env.get("RAG_INDEX_DIR") or DEFAULT_INDEX_DIR)
        server = _server_from_env(env)
        defaults_p = PipelineConfig()
        pipeline = PipelineConfig(
            checkpoint_every=_int(env, "RAG_CHECKPOINT_EVERY", defaults_p.checkpoint_every),
            low_memory_bytes=_int(env, "RAG_LOW_MEMORY_MB", defaults_p.low_memory_bytes // _MB)
            * _MB,
        )
        return cls(
            index_dir=index_dir,
            loader=loader,
            splitter=splitter,
            embeddings=embeddings,
            llm=llm,
            server=server,
            pipeline=pipeline,
            observability=_observability_from_env(env),
            freeze_gc=_bool(env, "RAG_FREEZE_GC", default=True),
            debug_async=_debug_async_from_env(env),
            store_url=env.get("RAG_STORE_URL") or None,
            store_pool=_pool_from_env(env),
        )

    def with_overrides(
        self,
        *,
        index_dir: Path | None = None,
        provider: EmbeddingProvider | None = None,
        batch_size: int | None = None,
        concurrency: int | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        store_url: str | None = None,
        low_memory_mb: int | None = None,
    ) -> RAGConfig:
        """Return a copy with the given values (``None`` keeps the current one).

        ``low_memory_mb`` sets ``pipeline.low_memory_bytes`` (MiB; 0 turns adaptation off).
        """
        emb = self.embeddings
        rate = emb.rate_limit
        rate = replace(
            rate,
            requests_per_minute=_pick(requests_per_minute, rate.requests_per_minute),
            tokens_per_minute=_pick(tokens_per_minute, rate.tokens_per_minute),
        )
        emb = replace(
            emb,
            provider=_pick(provider, emb.provider),
            batch_size=_pick(batch_size, emb.batch_size),
            concurrency=_pick(concurrency, emb.concurrency),
            rate_limit=rate,
        )
        pipeline = self.pipeline
        if low_memory_mb is not None:
            if low_memory_mb < 0:
                raise ConfigurationError(
                    f"low_memory_mb must not be negative (0: off); got {low_memory_mb}"
                )
            pipeline = replace(pipeline, low_memory_bytes=low_memory_mb * _MB)
        return replace(
            self,
            index_dir=_pick(index_dir, self.index_dir),
            embeddings=emb,
            store_url=_pick(store_url, self.store_url),
            pipeline=pipeline,
        )


STORE_URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def check_store_url(url: str) -> str:
    """Return ``url`` if it names a PostgreSQL database (no I/O).

    Raises:
        ConfigurationError: Another scheme, or no scheme at all.
    """
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in STORE_URL_SCHEMES:
        shown = scheme if sep else url[:20]
        raise ConfigurationError(
            f"store URL must start with postgresql:// (got {shown!r}...); e.g. "
            "RAG_STORE_URL=postgresql://user:password@host:5432/dbname, or leave it unset "
            "to keep the index in the local directory"
        )
    return url


def _debug_async_from_env(env: Mapping[str, str]) -> DebugAsyncConfig:
    defaults = DebugAsyncConfig()
    interval = _float_or_none(env, "RAG_DEBUG_ASYNC_INTERVAL")
    slow = _float_or_none(env, "RAG_DEBUG_ASYNC_SLOW_CALLBACK")
    return DebugAsyncConfig(
        enabled=_bool(env, "RAG_DEBUG_ASYNC", default=False),
        interval=defaults.interval if interval is None else interval,
        slow_callback=defaults.slow_callback if slow is None else slow,
    )


def _server_from_env(env: Mapping[str, str]) -> ServerConfig:
    defaults = ServerConfig()
    roots = tuple(Path(p) for p in env.get("RAG_SERVE_ROOTS", "").split(os.pathsep) if p.strip())
    origins = tuple(o.strip() for o in env.get("RAG_CORS_ORIGINS", "").split(",") if o.strip())
    hosts = tuple(h.strip() for h in env.get("RAG_SERVE_ALLOWED_HOSTS", "").split(",") if h.strip())
    grace = _float_or_none(env, "RAG_SERVE_GRACE")
    return ServerConfig(
        host=env.get("RAG_SERVE_HOST") or defaults.host,
        port=_int(env, "RAG_SERVE_PORT", defaults.port),
        roots=roots,
        api_key=env.get("RAG_API_KEY") or None,
        cors_origins=origins,
        allowed_hosts=hosts or None,
        max_concurrent_generations=_int(
            env, "RAG_SERVE_MAX_CONCURRENT_GENERATIONS", defaults.max_concurrent_generations
        ),
        grace=defaults.grace if grace is None else grace,
    )


def _observability_from_env(env: Mapping[str, str]) -> ObservabilityConfig:
    """OpenTelemetry's standard variables, then ours.

    Traces are exported when ``OTEL_TRACES_EXPORTER`` says so, or, when it is unset, as
    soon as an OTLP endpoint is given (OpenTelemetry's own default exporter is ``otlp``;
    a command run without any of these variables exports nothing and loads no SDK).
    ``OTEL_SDK_DISABLED=true`` turns tracing off whatever the rest says.
    """
    defaults = ObservabilityConfig()
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or None
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    endpoint = traces or (f"{base.rstrip('/')}/v1/traces" if base else None)
    exporter = _traces_exporter(env.get("OTEL_TRACES_EXPORTER", ""), endpoint)
    if _bool(env, "OTEL_SDK_DISABLED", default=False):
        exporter = "none"
    port = env.get("RAG_METRICS_PORT", "").strip()
    return ObservabilityConfig(
        traces_exporter=exporter,  # type: ignore[arg-type]  # checked by the class
        otlp_endpoint=endpoint,
        service_name=env.get("OTEL_SERVICE_NAME", "").strip() or defaults.service_name,
        metrics_port=_int(env, "RAG_METRICS_PORT", 0) if port else None,
        metrics_host=env.get("RAG_METRICS_HOST", "").strip() or defaults.metrics_host,
        log_format=(env.get("RAG_LOG_FORMAT", "").strip().lower() or defaults.log_format),  # type: ignore[arg-type]
    )


def _traces_exporter(raw: str, endpoint: str | None) -> str:
    """The first exporter of ``OTEL_TRACES_EXPORTER`` (a comma-separated list) we support.

    Another application's value in the environment (``zipkin``, ``jaeger``) must not stop
    the library from loading: it means no export here, with a warning.
    """
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not names:
        return "otlp" if endpoint else "none"
    for name in names:
        if name in ("otlp", "console", "none"):
            return name
    warnings.warn(
        f"OTEL_TRACES_EXPORTER={raw!r} names no exporter langchain-rag-async supports "
        "(otlp, console, none); its traces are not exported",
        RuntimeWarning,
        stacklevel=3,
    )
    return "none"


def _pick(value: T | None, current: T) -> T:
    """``value`` when given (0 included: validation then rejects it), else ``current``."""
    return current if value is None else value


def _require_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive; got {value}")


def _bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be 1/0, true/false, yes/no or on/off; got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a whole number; got {raw!r}") from exc


def _rate_limit(env: Mapping[str, str], prefix: str) -> RateLimitConfig:
    """``{prefix}_RPM`` and ``{prefix}_TPM`` as a service's limits (unset: unlimited)."""
    return RateLimitConfig(
        requests_per_minute=_float_or_none(env, f"{prefix}_RPM"),
        tokens_per_minute=_float_or_none(env, f"{prefix}_TPM"),
    )


def _float_or_none(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be a number; got {raw!r}") from exc


def _pool_from_env(env: Mapping[str, str]) -> PoolSettings:
    defaults = PoolSettings()
    timeout = _float_or_none(env, "RAG_STORE_POOL_TIMEOUT")
    recycle = _float_or_none(env, "RAG_STORE_POOL_RECYCLE")
    return PoolSettings(
        pool_size=_int(env, "RAG_STORE_POOL_SIZE", defaults.pool_size),
        max_overflow=_int(env, "RAG_STORE_POOL_MAX_OVERFLOW", defaults.max_overflow),
        pool_timeout=defaults.pool_timeout if timeout is None else timeout,
        pool_recycle=defaults.pool_recycle if recycle is None else recycle,
    )
