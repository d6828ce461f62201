"""``rag-async serve`` as a user runs it: safe binds, and SIGTERM with an index job running."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from langchain_rag_async import RAGConfig, RAGEngine
from langchain_rag_async.config import SplitterConfig
from langchain_rag_async.testing.openai_server import FakeOpenAIServer

from .server_support import free_port, write_topics

GRACE = "20"
RAG_ASYNC = str(Path(sys.executable).parent / "rag-async")
pytestmark = pytest.mark.allow_blocking


def test_serving_beyond_loopback_without_a_key_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAG_API_KEY"}
    done = subprocess.run(
        [RAG_ASYNC, "serve", "--index-dir", str(tmp_path), "--host", "0.0.0.0", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "RAG_API_KEY" in done.stderr and "--insecure" in done.stderr


@pytest.mark.slow
def test_sigterm_cancels_a_running_index_job_and_leaves_the_index_usable(
    tmp_path: Path, rust_book: Path
) -> None:
    index_dir = tmp_path / "idx"
    config = RAGConfig(
        index_dir=index_dir, splitter=SplitterConfig(chunk_size=400, chunk_overlap=0)
    )
    with RAGEngine(config=config) as engine:  # a first generation, with the bundled model
        engine.index_directory(write_topics(tmp_path / "docs"))
    port = free_port()
    env = {**os.environ, "RAG_CHUNK_SIZE": "400", "RAG_CHUNK_OVERLAP": "0"}
    server = subprocess.Popen(
        [RAG_ASYNC, "serve", "--index-dir", str(index_dir), "--port", str(port),
         "--root", str(rust_book), "--grace", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(server, url)
        rebound = httpx.get(f"{url}/v1/models", headers={"Host": "evil.example"}, timeout=10)
        assert rebound.status_code == 400  # DNS rebinding: only loopback names are served
        chat = {"model": "rag-async", "messages": [{"role": "user", "content": "What is Cargo?"}]}
        answer = httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60).json()
        assert "Cargo" in answer["choices"][0]["message"]["content"]
        job = httpx.post(f"{url}/index", json={"path": str(rust_book)}, timeout=30).json()
        while httpx.get(f"{url}/index/{job['job_id']}", timeout=10).json()["progress"] is None:
            time.sleep(0.1)  # the job is under way (it takes far longer than this test waits)
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    # uvicorn drains, runs the app's shutdown, then re-raises the signal: a clean SIGTERM exit
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Traceback" not in output, output
    with RAGEngine(config=config) as engine:  # consistent: it loads and answers
        hits = engine.query("What is Cargo?", k=3)
    assert hits and all(hit.metadata["scores"] for hit in hits)


@pytest.mark.slow
def test_sigterm_lets_a_running_stream_finish(tmp_path: Path) -> None:
    index_dir = tmp_path / "idx"
    config = RAGConfig(
        index_dir=index_dir, splitter=SplitterConfig(chunk_size=400, chunk_overlap=0)
    )
    with RAGEngine(config=config) as engine:
        engine.index_directory(write_topics(tmp_path / "docs"))
    reply = "Cargo is the Rust build system and package manager [1]. " * 3
    with FakeOpenAIServer.run_in_thread(chat_reply=reply, chat_token_delay=0.1) as fake:
        port = free_port()
        env = {
            **os.environ,
            "RAG_CHUNK_SIZE": "400",
            "RAG_CHUNK_OVERLAP": "0",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "test",
        }
        server = subprocess.Popen(
            [RAG_ASYNC, "serve", "--index-dir", str(index_dir), "--port", str(port),
             "--llm", "openai", "--grace", GRACE],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(server, url)
            chat = {
                "model": "rag-async",
                "messages": [{"role": "user", "content": "What is Cargo?"}],
                "stream": True,
            }
            lines: list[str] = []
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat, timeout=60) as r:
                for line in r.iter_lines():
                    if line:
                        lines.append(line)
                    if len(lines) == 3:  # the answer is streaming: stop the server now
                        server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
    assert lines[-1] == "data: [DONE]", lines[-3:]
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in lines[:-1]
        if json.loads(line[6:])["choices"]
    )
    assert text == reply  # the whole answer arrived after SIGTERM
    assert server.returncode in (0, -signal.SIGTERM), output
    # on uvloop when installed, as under uvicorn.run (and the serving benchmark)
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    assert f"Event loop: {loop}." in output, output


def wait_healthy(server: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)
