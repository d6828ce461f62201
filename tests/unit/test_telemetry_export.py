"""Telemetry as an operator receives it: OTLP spans on a collector, JSON logs, a scraped /metrics.

Real processes (``rag-async index`` and ``rag-async serve``) export to a local OTLP/HTTP
endpoint started by the test (:mod:`.otlp_collector` decodes the protobuf requests);
their JSON log lines are joined with the spans by ``trace_id`` / ``span_id``.
"""

from __future__ import annotations

import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_rag_async import RAGConfig, index_directory
from langchain_rag_async.config import EmbeddingConfig
from langchain_rag_async.testing import FakeOpenAIServer

from .otlp_collector import OTLPCollector, ReceivedSpan, running_collector
from .server_support import free_port, write_topics
from .test_server_cli import wait_healthy

pytestmark = [pytest.mark.allow_blocking, pytest.mark.timeout(240)]

RAG_ASYNC = str(Path(sys.executable).parent / "rag-async")


def telemetry_env(
    server: FakeOpenAIServer, collector: OTLPCollector, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_", "OTEL_"))}
    env.update(
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        RAG_EMBEDDINGS="openai",
        OPENAI_API_KEY="x",
        OPENAI_BASE_URL=server.base_url,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url,
        OTEL_SERVICE_NAME="rag-under-test",
        **extra,
    )
    return env


def openai_config(server: FakeOpenAIServer, index_dir: Path) -> RAGConfig:
    embeddings = EmbeddingConfig(
        provider="openai", openai_api_key="x", openai_base_url=server.base_url
    )
    return RAGConfig(index_dir=index_dir, embeddings=embeddings)


def write_files(root: Path, count: int) -> Path:
    root.mkdir()
    for i in range(count):
        (root / f"topic-{i}.md").write_text(f"# Topic {i}\n\nNotes number {i} on ownership.\n")
    return root


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


class Scraper:
    """Scrapes ``/metrics`` every 50 ms while a process runs; keeps the last answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last = ""
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as answer:
                    self.last = answer.read().decode()
                    self.scrapes += 1
            except OSError:
                pass
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in the scrape:\n{text}")


def test_an_index_run_exports_one_trace_joins_its_logs_and_serves_metrics(
    tmp_path: Path,
) -> None:
    corpus = write_files(tmp_path / "docs", 6)
    port = free_port()
    with (
        running_collector() as collector,
        FakeOpenAIServer.run_in_thread(latency=0.25) as server,
    ):
        server.fail_next(1, status=429)  # the first request: one 429, one retry
        command = [
            RAG_ASYNC, "index", str(corpus), "--index-dir", str(tmp_path / "idx"),
            "--batch-size", "2", "--concurrency", "1", "--no-progress",
            "--log-format", "json", "--metrics-port", str(port),
        ]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(
            command, env=telemetry_env(server, collector), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        scraper = Scraper(f"http://127.0.0.1:{port}/metrics")
        try:
            out, err = process.communicate(timeout=180)
        finally:
            scraper.stop()
        seconds = time.monotonic() - started
        spans = collector.received()  # exported before the process exited
    assert process.returncode == 0, out + err

    # One trace for the run: a root span with the run's figures, a span per stage.
    (root,) = by_name(spans, "index_directory")
    assert root.parent_span_id == "" and root.service == "rag-under-test"
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert root.attributes["files_indexed"] == 6 and root.attributes["chunks_embedded"] == 6
    assert root.attributes["batch_size"] == 2 and root.attributes["concurrency"] == 1
    names = {s.name for s in spans}
    assert {"plan", "load", "split", "embed_batch", "embed", "store", "checkpoint"} <= names
    stages = {s.name: s for s in spans if s.name.endswith("_stage")}
    assert set(stages) == {"load_stage", "split_stage", "embed_stage", "store_stage"}
    assert all(s.parent_span_id == root.span_id for s in stages.values())
    embed_stage = stages["embed_stage"]
    assert (embed_stage.attributes["batch_size"], embed_stage.attributes["concurrency"]) == (2, 1)
    parents = {s.span_id: s.parent_span_id for s in spans}

    def ancestors(span: ReceivedSpan) -> set[str]:
        found, current = set(), span.parent_span_id
        while current:
            found.add(current)
            current = parents.get(current, "")
        return found

    assert all(embed_stage.span_id in ancestors(b) for b in by_name(spans, "embed_batch"))
    assert by_name(spans, "load")[0].attributes["files"] == 6
    batches = by_name(spans, "embed_batch")
    assert sum(b.attributes["batch_size"] for b in batches) == 6
    assert sorted(b.attributes["retries"] for b in batches) == [0] * (len(batches) - 1) + [1]
    assert all(s.attributes["concurrency"] == 1 for s in by_name(spans, "embed"))

    # Logs: every line has the run's request_id; inside a span, its trace and span ids.
    assert all(line.startswith("{") for line in err.splitlines() if line.strip()), err
    lines = json_lines(err)
    assert lines and {line["request_id"] for line in lines} == {root.attributes["rag.request_id"]}
    (retry,) = [line for line in lines if line["event"] == "embedding request failed; retrying"]
    (retried,) = [b for b in batches if b.attributes["retries"] == 1]
    assert (retry["trace_id"], retry["span_id"]) == (root.trace_id, retried.span_id)
    assert retry["task_id"] == "embed"
    (finished,) = [line for line in lines if line["event"] == "indexing run finished"]
    assert (finished["trace_id"], finished["span_id"]) == (root.trace_id, root.span_id)

    # /metrics was served during the run, with the limiter's and the loop's figures.
    assert scraper.scrapes > 0, f"no scrape answered in {seconds:.1f} s"
    text = scraper.last
    assert sample(text, 'rag_embedding_requests_total{outcome="429",provider="openai"}') == 1
    assert sample(text, 'rag_embedding_requests_total{outcome="retry",provider="openai"}') == 1
    assert sample(text, 'rag_adaptive_concurrency{service="embeddings:openai"}') == 1
    assert sample(text, 'rag_rate_limiter_wait_seconds_count{service="embeddings:openai"}') >= 1
    assert sample(text, "rag_event_loop_lag_seconds_count") >= 1
    assert sample(text, 'rag_documents_processed_total{outcome="indexed"}') >= 1  # as it goes


def test_each_server_request_is_one_trace_with_its_logs(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "docs")
    index_dir = tmp_path / "idx"
    port = free_port()
    with (
        running_collector() as collector,
        FakeOpenAIServer.run_in_thread() as server,
    ):
        index_directory(corpus, config=openai_config(server, index_dir))
        env = telemetry_env(server, collector, OTEL_BSP_SCHEDULE_DELAY="100")
        process = subprocess.Popen(
            [RAG_ASYNC, "serve", "--index-dir", str(index_dir), "--port", str(port),
             "--log-format", "json", "--grace", "0"],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(process, url)  # type: ignore[arg-type]
            for question in ("What is Cargo?", "What are closures?"):
                answer = httpx.post(f"{url}/query", json={"question": question}, timeout=30)
                assert answer.status_code == 200, answer.text
            assert collector.wait_for(lambda s: len(by_name(s, "POST /query")) == 2, 30)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
        spans = collector.received()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), err  # uvicorn's too
    assert any(json.loads(line).get("logger") == "uvicorn.error" for line in lines)
    roots = by_name(spans, "POST /query")
    assert len({r.trace_id for r in roots}) == 2 and all(r.parent_span_id == "" for r in roots)
    for root in roots:
        assert root.attributes["http.response.status_code"] == 200
        assert root.attributes["http.route"] == "/query"  # FastAPI's server span, annotated
        trace = {s.name for s in spans if s.trace_id == root.trace_id}
        assert {"hybrid_search", "dense", "sparse"} <= trace, trace
        request_id = root.attributes["rag.request_id"]
        (logged,) = [
            line for line in json_lines(err)
            if line.get("event") == "request" and line.get("request_id") == request_id
        ]  # fmt: skip
        assert (logged["trace_id"], logged["span_id"]) == (root.trace_id, root.span_id)
        assert logged["endpoint"] == "/query" and logged["status"] == 200


class LangSmithEndpoint:
    """A local LangSmith API: records the runs LangChain's tracer posts (multipart)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                if self.path.startswith("/runs/multipart"):
                    endpoint._receive(self.headers["Content-Type"], body)
                answer = json.dumps({"version": "0.9.0"} if self.path == "/info" else {})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _receive(self, content_type: str, body: bytes) -> None:
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition") or ""
            if re.fullmatch(r"post\.[0-9a-f-]{36}", str(name)):
                self.runs.append(json.loads(part.get_payload(decode=True)))


def test_langsmith_runs_and_otel_spans_do_not_duplicate_each_other(tmp_path: Path) -> None:
    """LANGSMITH_TRACING=true: LangChain's callbacks post each run once to LangSmith, and
    the OTLP export carries the very spans it carries without LangSmith (none of the runs)."""
    corpus = write_files(tmp_path / "docs", 3)
    index_dir = tmp_path / "idx"
    langsmith = LangSmithEndpoint()
    try:
        with running_collector() as collector, FakeOpenAIServer.run_in_thread() as server:
            env = telemetry_env(server, collector)
            command = [RAG_ASYNC, "ask", "What is topic 1?", "--index-dir", str(index_dir)]
            index_directory(corpus, config=openai_config(server, index_dir))
            plain = subprocess.run(command, env=env, capture_output=True, text=True)
            alone = collector.received()
            env.update(
                LANGSMITH_TRACING="true",
                LANGSMITH_ENDPOINT=f"http://127.0.0.1:{langsmith.server.server_port}",
                LANGSMITH_API_KEY="lsv2-test-key",
            )
            traced = subprocess.run(command, env=env, capture_output=True, text=True)
            both = collector.received()[len(alone) :]
    finally:
        langsmith.server.shutdown()
        langsmith.server.server_close()
    assert plain.returncode == traced.returncode == 0, plain.stderr + traced.stderr
    assert plain.stdout == traced.stdout  # the same answer
    assert sorted(s.name for s in both) == sorted(s.name for s in alone)
    # the command is one trace: loading the index, retrieval and generation under its span
    (root,) = [s for s in alone if s.parent_span_id == ""]
    assert root.name == "rag-async ask" and {s.trace_id for s in alone} == {root.trace_id}
    assert {"vectorstore.load", "hybrid_search", "retrieve", "generate"} <= {s.name for s in alone}
    runs = langsmith.runs
    ids = [run["id"] for run in runs]
    assert runs and len(ids) == len(set(ids))  # each run posted once
    assert {run["run_type"] for run in runs} >= {"retriever", "chain", "llm"}
