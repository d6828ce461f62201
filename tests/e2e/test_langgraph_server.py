"""The graphs of langgraph.json under ``langgraph dev`` (in-memory), through langgraph_sdk."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_rag_async import RAGConfig, RAGEngine
from tests.unit.server_support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH = shutil.which("langgraph", path=str(Path(sys.executable).parent))
sdk = pytest.importorskip("langgraph_sdk")
if LANGGRAPH is None:
    pytest.skip("langgraph-cli[inmem] is not installed", allow_module_level=True)

DOCS = {
    "cargo.md": "# Cargo\n\nCargo is the Rust build system and package manager. Cargo builds "
    "your code and downloads the libraries your code depends on.\n",
    "traits.md": "# Traits\n\nA trait defines functionality a type has and can share with "
    "other types.\n",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("langgraph")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text, "utf-8")
    with RAGEngine(config=RAGConfig(index_dir=root / "index")) as engine:
        engine.index_directory(root / "docs")
    return root


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(workdir / "index"),
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log = (workdir / "langgraph-dev.log").open("w")
    process = subprocess.Popen(
        [LANGGRAPH, "dev", "--port", str(port), "--no-browser", "--no-reload",
         "--config", str(ROOT / "langgraph.json")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError((workdir / "langgraph-dev.log").read_text()[-4000:])
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("langgraph dev did not start in 120 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def collect(url: str, graph: str, payload: dict[str, Any], modes: list[str]) -> list[Any]:
    client = sdk.get_client(url=url)
    parts = []
    async for part in client.runs.stream(None, graph, input=payload, stream_mode=modes):
        parts.append(part)
    return parts


def test_answer_graph_streams_tokens_and_sources(server: str) -> None:
    parts = asyncio.run(
        collect(server, "answer", {"question": "What is Cargo?"}, ["messages-tuple", "updates"])
    )
    events = {part.event for part in parts}
    assert "error" not in events, [p.data for p in parts if p.event == "error"]
    tokens = [
        part.data[0].get("content", "")
        for part in parts
        if part.event == "messages" and isinstance(part.data, list)
    ]
    answer = "".join(t for t in tokens if isinstance(t, str))
    assert "Cargo" in answer and re.search(r"\[\d\]", answer)
    updates = [part.data for part in parts if part.event == "updates"]
    sources = [u["retrieve"]["sources"] for u in updates if "retrieve" in u]
    assert sources and any(Path(s["source"]).name == "cargo.md" for s in sources[0])


def test_indexing_graph_streams_progress(server: str, workdir: Path) -> None:
    (workdir / "docs" / "lifetimes.md").write_text(
        "# Lifetimes\n\nLifetimes make sure references stay valid.\n", "utf-8"
    )
    payload = {"path": str(workdir / "docs"), "index_dir": str(workdir / "index")}
    parts = asyncio.run(collect(server, "indexing", payload, ["custom", "values"]))
    custom = [part.data for part in parts if part.event == "custom"]
    assert any(event.get("type") == "progress" for event in custom)
    final = [part.data for part in parts if part.event == "values"][-1]
    assert final["summary"]["files_indexed"] == 1 and final["summary"]["files_skipped"] == 2
