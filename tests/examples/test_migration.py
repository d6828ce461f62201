"""docs/migration.md runs: every Python block, in order, in one namespace, offline.

The blocks run in a subprocess (as a notebook would run its cells: top-level ``await``
allowed) in a scratch directory holding ``notes/``, a copy of ``examples/corpus``; the
OpenAI-configured block talks to a local ``FakeOpenAIServer``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_rag_async.testing import FakeOpenAIServer
from tests.examples.test_examples import CORPUS, PROJECT_ROOT, offline_env

GUIDE = PROJECT_ROOT / "docs" / "migration.md"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)

RUNNER = """
import ast, asyncio, json, sys

blocks = json.loads(open(sys.argv[1]).read())
namespace = {"__name__": "__main__"}
loop = asyncio.new_event_loop()
for line, source in blocks:
    code = compile("\\n" * (line - 1) + source, sys.argv[2], "exec",
                   flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        loop.run_until_complete(result)
    print(f"block at line {line}: ok", flush=True)
loop.close()
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Each fenced Python block with the line its code starts on."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_guide_has_blocks_for_every_component() -> None:
    code = "\n".join(source for _, source in python_blocks(GUIDE.read_text()))
    for name in (
        "DirectoryLoader", "RecursiveCharacterTextSplitter", "FAISS.load_local",
        "allow_dangerous_deserialization=True", "BM25Retriever", "EnsembleRetriever",
        "SQLRecordManager", "AsyncDirectoryLoader", "RunnableTextSplitter", "AsyncFAISS",
        "HybridRetriever", "FTS5Retriever", "SQLiteRecordManager", "aindex", "RAGEngine",
        "build_embeddings", "aconvert_langchain_faiss", "index_model_id",
    ):  # fmt: skip
        assert name in code, name


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_python_block_of_the_guide_runs(tmp_path: Path) -> None:
    blocks = python_blocks(GUIDE.read_text())
    shutil.copytree(CORPUS, tmp_path / "notes")
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "runner.py").write_text(RUNNER)
    with FakeOpenAIServer.run_in_thread() as server:
        env = offline_env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
        done = subprocess.run(
            [sys.executable, "runner.py", "blocks.json", str(GUIDE)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        embedded = server.stats.embedded_texts
    assert done.returncode == 0, done.stdout + done.stderr
    ran = re.findall(r"^block at line (\d+): ok$", done.stdout, re.M)
    assert [int(n) for n in ran] == [line for line, _ in blocks]
    assert embedded > 0  # the OpenAI-configured block did go through the HTTP client
