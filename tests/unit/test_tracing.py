"""configure_tracing: the standard OTEL_* environment, and no SDK loaded while tracing is off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from langchain_rag_async.config import ObservabilityConfig, RAGConfig
from langchain_rag_async.errors import ConfigurationError
from langchain_rag_async.testing import FakeOpenAIServer
from langchain_rag_async.tracing import configure_tracing

from .otlp_collector import running_collector
from .test_cli_startup import TRACE_EXPORT, openai_env, run_probe, write_corpus


def observability(**env: str) -> ObservabilityConfig:
    return RAGConfig.from_env(env).observability


def test_tracing_is_off_without_any_otel_variable() -> None:
    assert observability() == ObservabilityConfig()
    assert observability().traces_exporter == "none"


def test_an_otlp_endpoint_turns_otlp_export_on() -> None:
    settings = observability(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318/", OTEL_SERVICE_NAME="indexer"
    )
    assert settings.traces_exporter == "otlp"
    assert settings.otlp_endpoint == "http://collector:4318/v1/traces"
    assert settings.service_name == "indexer"
    traces_only = observability(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://c:4318/custom")
    assert traces_only.otlp_endpoint == "http://c:4318/custom"


@pytest.mark.parametrize(
    ("env", "exporter"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "none"),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, "none"),
    ],
)
def test_the_exporter_variable_decides(env: dict[str, str], exporter: str) -> None:
    assert observability(**env).traces_exporter == exporter


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAG_LOG_FORMAT": "xml"}, "'console' or 'json'"),
        ({"RAG_METRICS_PORT": "http"}, "RAG_METRICS_PORT"),
        ({"RAG_METRICS_PORT": "70000"}, "between 0 and 65535"),
    ],
)
def test_bad_settings_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        observability(**env)


def test_another_applications_exporter_loads_with_a_warning_and_exports_nothing() -> None:
    # OTEL_* belongs to the whole process: a zipkin setting must not break the library.
    with pytest.warns(RuntimeWarning, match="zipkin"):
        assert observability(OTEL_TRACES_EXPORTER="zipkin").traces_exporter == "none"
    assert observability(OTEL_TRACES_EXPORTER="zipkin,console").traces_exporter == "console"


def test_metrics_and_log_settings_come_from_the_environment() -> None:
    settings = observability(RAG_METRICS_PORT="9464", RAG_LOG_FORMAT="JSON")
    assert (settings.metrics_port, settings.log_format) == (9464, "json")


def test_tracing_off_installs_nothing() -> None:
    assert configure_tracing(ObservabilityConfig()) is None


def test_an_application_provider_is_left_in_place(spans: Any) -> None:
    from opentelemetry import trace

    installed = trace.get_tracer_provider()
    assert configure_tracing(ObservabilityConfig(traces_exporter="console")) is None
    assert trace.get_tracer_provider() is installed


@pytest.mark.timeout(300)
def test_a_command_with_tracing_on_exports_and_exits_promptly(tmp_path: Path) -> None:
    """The exporter is loaded (with tracing off it is not: ``test_cli_startup``), its
    thread is a daemon that nothing waits for at exit, and the run is one trace."""
    corpus = write_corpus(tmp_path / "docs")
    with FakeOpenAIServer.run_in_thread() as server, running_collector() as collector:
        env = {**openai_env(server), "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url}
        on = run_probe(tmp_path, "index", str(corpus), "--index-dir", str(tmp_path / "b"), env=env)
        indexed = collector.received()
    assert TRACE_EXPORT <= set(on["modules"])
    assert on["threads_left"] == []
    assert len({s.trace_id for s in indexed}) == 1
    assert any(s.name == "index_directory" for s in indexed)
