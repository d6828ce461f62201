"""Export the library's spans: an OpenTelemetry SDK provider set up from the standard environment.

For applications (the ``rag-async`` commands, the server): the library itself only uses
OpenTelemetry's API and never installs a provider. :func:`configure_tracing` reads
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``), ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``..._TRACES_ENDPOINT``) and ``OTEL_SERVICE_NAME`` through :class:`ObservabilityConfig`;
the OTLP exporter reads its other standard variables (headers, timeout, compression)
itself. With tracing off, nothing of the SDK is imported.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from opentelemetry import trace

from langchain_rag_async.config import ObservabilityConfig, RAGConfig
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.observability import get_logger

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ("Tracing", "configure_tracing")


class Tracing:
    """The provider :func:`configure_tracing` installed; :meth:`shutdown` flushes it, bounded."""

    __slots__ = ("_provider", "_timeout")

    def __init__(self, provider: TracerProvider, timeout: float) -> None:
        self._provider = provider
        self._timeout = timeout

    @property
    def provider(self) -> TracerProvider:
        """The SDK tracer provider (add your own span processors to it if you like)."""
        return self._provider

    def shutdown(self) -> None:
        """Export the spans still queued, for at most the configured ``flush_timeout``.

        A collector that is down or slow cannot hold the process longer: what is not sent
        by then is dropped. (The SDK's own shutdown may wait 30 s, and its ``force_flush``
        ignores its timeout: it runs in a daemon thread that the process does not wait for.)
        """
        flush = threading.Thread(
            target=self._provider.shutdown, name="rag-trace-flush", daemon=True
        )
        flush.start()
        flush.join(self._timeout)


def configure_tracing(config: ObservabilityConfig | None = None) -> Tracing | None:
    """Install a tracer provider that exports the library's spans, if tracing is on.

    Args:
        config: Where spans go; ``RAGConfig.from_env().observability`` by default.

    Returns:
        The installed tracing (call :meth:`Tracing.shutdown` before exiting), or ``None``
        when tracing is off or the application installed a provider of its own (which
        then receives the spans).

    Raises:
        ConfigurationError: OTLP export is asked for but the exporter is not installed.
    """
    config = config or RAGConfig.from_env().observability
    if config.traces_exporter == "none":
        return None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        get_logger(__name__).info("a tracer provider is already installed; spans go there")
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Our own bounded flush at exit instead of the SDK's (which may wait 30 s).
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: config.service_name}), shutdown_on_exit=False
    )
    processor = BatchSpanProcessor(_exporter(config))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return Tracing(provider, config.flush_timeout)


def _exporter(config: ObservabilityConfig) -> SpanExporter:
    if config.traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)  # stdout is the command's output
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter "
            f"({exc.name} is missing): pip install 'langchain-rag-async[otel]', "
            "or set OTEL_TRACES_EXPORTER=console or none"
        ) from exc
    return OTLPSpanExporter(endpoint=config.otlp_endpoint)
