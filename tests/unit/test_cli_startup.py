"""What each ``rag-async`` command imports, and that it exits promptly, pinned.

Start-up time follows from the import graph: ``--help`` imports argparse and the parser
only, and each command imports what it uses (a query loads no LangGraph, the local model
no ``openai``, nothing but ``serve``/``mcp`` the web stack). The graph is checked in fresh
interpreters, not timed: timings on shared machines are noise. The measured numbers are in
``docs/benchmarks.md`` ("Start-up and teardown").
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from langchain_rag_async.testing import FakeOpenAIServer

pytestmark = pytest.mark.timeout(300)

WEB_STACK = ("fastapi", "starlette", "uvicorn", "mcp", "sse_starlette")
"""Imported by ``serve`` and ``mcp`` only."""

HEAVY = (
    "aiohttp",
    "aiosqlite",
    "faiss",
    "httpx",
    "langchain_community",
    "langchain_core",
    "langchain_openai",
    "langgraph",
    "numpy",
    "onnxruntime",
    "openai",
    "openvino",
    "opentelemetry",
    "pydantic",
    "rich",
    "structlog",
    "tenacity",
    "tokenizers",
    *WEB_STACK,
)
"""Packages that take from tens to hundreds of milliseconds to import."""

SUBCOMMANDS = ("index", "query", "ask", "doctor", "serve", "mcp", "migrate")

TRACE_EXPORT = {
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
}
"""Loaded only when trace export is on (LangSmith, which LangChain imports, may load the
SDK's core itself; see tests/unit/test_tracing.py)."""

PROBE = """
import atexit, gc, json, sys, threading

out_path, argv = sys.argv[1], json.loads(sys.argv[2])
report = {}


def dump():  # registered first, so it runs after the command's own exit handlers
    report["frozen_at_exit"] = gc.get_freeze_count()
    report["modules"] = sorted(sys.modules)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(report, f)


atexit.register(dump)
from langchain_rag_async.cli import main

try:
    code = main(argv)
finally:
    report["threads_left"] = [
        t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
sys.exit(code)
"""
"""Runs ``main(argv)`` and records the modules loaded, the threads that would delay the
exit, and how many objects were frozen when the interpreter started tearing down."""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_", "OTEL_"))}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def openai_env(server: FakeOpenAIServer) -> dict[str, str]:
    return clean_env(
        RAG_EMBEDDINGS="openai",
        RAG_EMBEDDING_MODEL="text-embedding-3-small",
        OPENAI_API_KEY="x",
        OPENAI_BASE_URL=server.base_url,
    )


def run_probe(tmp_path: Path, *argv: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``rag-async ARGV`` in a fresh interpreter; its report (see :data:`PROBE`)."""
    report_path = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report_path), json.dumps(argv)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(report_path.read_text("utf-8"))
    report["packages"] = {name.split(".")[0] for name in report["modules"]}
    return report


def write_corpus(root: Path) -> Path:
    root.mkdir()
    (root / "lifetimes.md").write_text(
        "# Lifetimes\n\nLifetimes ensure that references are valid as long as we need them.\n",
        "utf-8",
    )
    (root / "closures.md").write_text(
        "# Closures\n\nClosures are anonymous functions that capture their environment.\n",
        "utf-8",
    )
    return root


def test_building_the_parser_imports_nothing_heavy() -> None:
    code = (
        "import sys; import langchain_rag_async.cli as c; c.build_parser(); "
        "print(sorted(sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env()
    )
    modules: list[str] = eval(done.stdout)  # a printed list of module names
    packages = {name.split(".")[0] for name in modules}
    assert packages.isdisjoint(HEAVY), sorted(packages & set(HEAVY))
    ours = {name for name in modules if name.split(".")[0] == "langchain_rag_async"}
    assert ours == {"langchain_rag_async", "langchain_rag_async.cli"}
    assert "asyncio" not in modules  # started by a command, not by the parser


@pytest.mark.parametrize(
    "argv", [("--help",), *((sub, "--help") for sub in SUBCOMMANDS)], ids=" ".join
)
def test_help_imports_nothing_heavy(tmp_path: Path, argv: tuple[str, ...]) -> None:
    report = run_probe(tmp_path, *argv, env=clean_env())
    assert report["packages"].isdisjoint(HEAVY), sorted(report["packages"] & set(HEAVY))
    ours = {name for name in report["modules"] if name.startswith("langchain_rag_async.")}
    assert ours == {"langchain_rag_async.cli"}


def test_openai_commands_load_no_local_model_and_a_query_no_graph(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    index_dir = str(tmp_path / "idx")
    with FakeOpenAIServer.run_in_thread() as server:
        env = openai_env(server)
        index = run_probe(tmp_path, "index", str(corpus), "--index-dir", index_dir, env=env)
        query = run_probe(tmp_path, "query", "lifetimes", "--index-dir", index_dir, env=env)
    for report in (index, query):
        assert {"openai", "faiss"} <= report["packages"]  # what they use...
        unused = report["packages"] & {"onnxruntime", "openvino", "tokenizers", *WEB_STACK}
        assert not unused, unused  # ...and nothing they do not
        assert TRACE_EXPORT.isdisjoint(report["modules"])  # tracing is off (no OTEL_*)
    # The run calls the indexing graph's steps directly: no LangGraph, nor the SDK client it
    # pulls in (~10 MiB of peak RSS; docs/benchmarks.md, "Indexing memory against LangChain").
    assert index["packages"].isdisjoint({"langgraph", "langgraph_sdk"})
    assert "langgraph" not in query["packages"]  # retrieval needs no graph


def test_index_into_a_pipe_loads_no_terminal_renderer_and_no_unused_logging(
    tmp_path: Path,
) -> None:
    """``index --json`` as a script runs it: rich is imported only to print rich text, and
    structlog only for a record that a level lets through (none here, without ``-v``).

    structlog brings rich's traceback renderer, pygments and greenlet along, and ``import
    httpx`` its command line's click, rich and pygments: 9-11 MiB of peak RSS
    (docs/benchmarks.md, "Indexing memory against LangChain").
    """
    corpus = write_corpus(tmp_path / "docs")
    index_dir = str(tmp_path / "idx")
    with FakeOpenAIServer.run_in_thread() as server:
        env = openai_env(server)
        quiet = run_probe(
            tmp_path, "index", str(corpus), "--index-dir", index_dir, "--json", env=env
        )
        shown = run_probe(tmp_path, "index", str(corpus), "--index-dir", index_dir, "-v", env=env)
    unused = {"rich", "structlog", "pygments", "greenlet", "click", "httpx"}
    assert quiet["packages"].isdisjoint(unused), sorted(quiet["packages"] & unused)
    assert {"openai", "faiss", "prometheus_client"} <= quiet["packages"]  # the run did run
    assert "langchain_rag_async.embeddings.local" not in quiet["modules"]  # OpenAI's run
    # Asked for: the summary in rich text, and the debug log lines (-v) through structlog.
    assert {"rich", "structlog"} <= shown["packages"]


def test_local_commands_load_no_http_client_and_no_web_stack(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "docs")
    index_dir = str(tmp_path / "idx")
    env = clean_env()
    index = run_probe(tmp_path, "index", str(corpus), "--index-dir", index_dir, env=env)
    query = run_probe(tmp_path, "query", "lifetimes", "--index-dir", index_dir, env=env)
    doctor = run_probe(tmp_path, "doctor", "--index-dir", index_dir, env=env)
    for report in (index, query, doctor):
        unused = report["packages"] & {"openai", "langchain_openai", "aiohttp", *WEB_STACK}
        assert not unused, unused
    # The local model embeds the question (OpenVINO where installed, else onnxruntime).
    assert {"onnxruntime", "openvino"} & query["packages"]
    assert "langgraph" not in query["packages"]
    assert "langgraph" not in index["packages"]  # the graph's steps, called directly
    assert doctor["packages"].isdisjoint({"langgraph", "onnxruntime", "openvino"})  # reads files


def test_a_command_leaves_nothing_that_delays_its_exit(tmp_path: Path) -> None:
    """No thread left to join, and the heap frozen before the interpreter's last collections.

    Those collections would otherwise walk the 200k objects of the imported libraries
    several times: 0.4-0.6 s from an ``index`` command's last line to its exit.
    """
    corpus = write_corpus(tmp_path / "docs")
    with FakeOpenAIServer.run_in_thread() as server:
        report = run_probe(
            tmp_path, "index", str(corpus), "--index-dir", str(tmp_path / "idx"),
            env=openai_env(server),
        )  # fmt: skip
    assert report["threads_left"] == []
    assert report["frozen_at_exit"] > 10_000


def test_main_restores_the_collector_thresholds(tmp_path: Path) -> None:
    """A one-shot command collects fully less often, only while it runs (tests call main)."""
    from langchain_rag_async.cli import main

    before = gc.get_threshold()
    assert main(["query", "anything", "--index-dir", str(tmp_path / "none")]) == 2
    assert gc.get_threshold() == before
