"""Every script in examples/ runs as a user would run it, offline and without keys.

The scripts start together (one subprocess each, in a module fixture), so the module costs
about as long as the slowest of them rather than their sum. Each test then checks what
its script printed against the corpus and against LangChain itself, not just its exit
code. They are marked ``slow``: ``make test`` runs them, ``make test-fast`` does not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from langchain_community.vectorstores import FAISS
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async import AsyncFAISS
from langchain_rag_async.testing import FakeOpenAIServer

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = PROJECT_ROOT / "examples"
CORPUS = EXAMPLES / "corpus"
TIMEOUT = 200.0  # seconds per script (a loaded 2-core machine); the module allows 300
OPENAI_REPLY = "Bounded queues make the fast stages wait [1]."


@dataclass
class Run:
    process: subprocess.Popen[str]
    _out: str | None = None
    _err: str = ""

    def output(self) -> str:
        """Wait for the script; fail the test with its stderr when it did not exit 0."""
        if self._out is None:
            try:
                self._out, self._err = self.process.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self._out, self._err = self.process.communicate()
                pytest.fail(f"{self.process.args} ran over {TIMEOUT} s:\n{self._err[-3000:]}")
        if self.process.returncode != 0:
            pytest.fail(f"{self.process.args} exited {self.process.returncode}:\n{self._err}")
        return self._out


def offline_env(**extra: str) -> dict[str, str]:
    """The caller's environment without keys, endpoints or RAG_ settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "RAG_")) and key != "ANTHROPIC_API_KEY"
    }
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore::DeprecationWarning"})
    env.update(extra)
    return env


def start(script: str, *args: str, env: dict[str, str] | None = None) -> Run:
    command = [sys.executable, str(EXAMPLES / script), *args]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env or offline_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Run(process)


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer.run_in_thread(chat_reply=OPENAI_REPLY) as server:
        yield server


@pytest.fixture(scope="module")
def faiss_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faiss-example")


@pytest.fixture(scope="module")
def runs(faiss_dir: Path, openai_server: FakeOpenAIServer) -> Iterator[dict[str, Run]]:
    with_openai = offline_env(
        RAG_LLM="openai", OPENAI_BASE_URL=openai_server.base_url, OPENAI_API_KEY="sk-test"
    )
    started = {
        "quickstart.py": start("quickstart.py"),
        "faiss_drop_in.py": start("faiss_drop_in.py", "--work-dir", str(faiss_dir)),
        "lcel_chain.py": start("lcel_chain.py"),
        "lcel_chain.py+openai": start("lcel_chain.py", env=with_openai),
        "stream_graphs.py": start("stream_graphs.py"),
        "sync_usage.py": start("sync_usage.py"),
        "rate_limited_openai.py": start("rate_limited_openai.py"),
        "custom_embeddings.py": start("custom_embeddings.py"),
    }
    yield started
    for run in started.values():
        if run._out is None:  # a test that never waited for it (-x, -k)
            run.process.kill()
            run.process.communicate()


def normalise(text: str) -> str:
    return " ".join(text.replace("`", "").split())


CORPUS_TEXT = {path.name: normalise(path.read_text()) for path in CORPUS.glob("*.md")}


def check_extractive_answer(lines: list[str], sources: dict[int, str]) -> None:
    """Every answer line quotes the file of the source it cites, word for word."""
    assert lines, "no answer lines"
    for line in lines:
        match = re.fullmatch(r"- (.+?)\s*((?:\[\d+\])+)", line.strip())
        assert match, f"not a cited sentence: {line!r}"
        sentence, citations = match.groups()
        for number in map(int, re.findall(r"\d+", citations)):
            assert number in sources, f"[{number}] cites no listed source: {line!r}"
            assert normalise(sentence) in CORPUS_TEXT[sources[number]], line


def answer_lines(output: str, start: str, end: str) -> list[str]:
    block = output.split(start, 1)[1].split(end, 1)[0]
    return [line for line in block.splitlines() if line.startswith("- ")]


def test_every_example_is_tested() -> None:
    tested = {name.split("+")[0] for name in CHECKED}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quickstart(runs: dict[str, Run]) -> None:
    out = runs["quickstart.py"].output()
    assert "indexed 5 files, 5 chunks" in out
    assert "second run: 5 files skipped, 0 chunks embedded" in out  # incremental
    top = re.search(r"top chunks for .*:\n\s+(\S+) \(fused", out)
    assert top and top.group(1).endswith("tasks-and-cancellation.md")
    sources = {
        int(n): Path(path).name for n, path in re.findall(r"^\s+\[(\d+)\] (\S+)$", out, re.M)
    }
    assert sources[1] == "tasks-and-cancellation.md"
    check_extractive_answer(answer_lines(out, "answer:", "sources:"), sources)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_faiss_drop_in_matches_langchain(runs: dict[str, Run], faiss_dir: Path) -> None:
    out = runs["faiss_drop_in.py"].output()
    found = dict(
        re.findall(
            r"^(AsyncFAISS|after load_local|LangChain FAISS|converted folder) ids: (.+)$", out, re.M
        )
    )
    assert len(found) == 4 and len(set(found.values())) == 1, out
    assert len(found["AsyncFAISS"].split()) == 4
    assert "top source: " in out and out.split("top source: ")[1].split()[0].endswith(
        "tasks-and-cancellation.md"
    )
    assert "saved files: .lock docstore.1.json index.1.faiss manifest.json" in out  # no pickle

    # Independently of the script: the folder it saved, searched by AsyncFAISS and by
    # LangChain's FAISS over the same vectors, gives the same ids for any query vector.
    work = faiss_dir
    assert (work / "langchain-faiss" / "index.pkl").is_file()
    assert not list((work / "converted-faiss").glob("*.pkl"))
    fake = DeterministicFakeEmbedding(size=384)  # searches below go by vector: never called
    ours = AsyncFAISS.load_local(work / "faiss", fake)
    total = ours.index.ntotal
    order = [ours.index_to_docstore_id[i] for i in range(total)]
    docs = {str(doc.id): doc for doc in ours.get_by_ids(order)}
    theirs = FAISS.from_embeddings(
        [
            (docs[i].page_content, v)
            for i, v in zip(order, ours.index.reconstruct_n(0, total).tolist(), strict=True)
        ],
        fake,
        metadatas=[docs[i].metadata for i in order],
        ids=order,
    )
    rng = np.random.default_rng(7)
    for _ in range(5):
        query = rng.normal(size=384).tolist()
        assert [d.id for d in ours.similarity_search_by_vector(query, k=5)] == [
            d.id for d in theirs.similarity_search_by_vector(query, k=5)
        ]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lcel_chain_offline(runs: dict[str, Run]) -> None:
    out = runs["lcel_chain.py"].output()
    assert "chat model: ExtractiveChatModel" in out
    retrieved = out.split("retrieved: ", 1)[1].splitlines()[0].split(", ")
    assert retrieved[0] == "queues-and-backpressure.md" and len(retrieved) == 3
    check_extractive_answer(
        answer_lines(out, "retrieved:", "best chunk scores:"), dict(enumerate(retrieved, 1))
    )
    assert re.search(r"best chunk scores: \{'dense': 0\.\d+, 'sparse': \d", out)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lcel_chain_with_chat_openai(runs: dict[str, Run], openai_server: FakeOpenAIServer) -> None:
    out = runs["lcel_chain.py+openai"].output()
    assert "chat model: ChatOpenAI" in out
    assert OPENAI_REPLY in out  # streamed back through the chain from the HTTP server
    assert openai_server.stats.status_counts[200] >= 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stream_graphs(runs: dict[str, Run]) -> None:
    out = runs["stream_graphs.py"].output()
    assert "custom   plan: 5 files to load" in out
    stages = re.findall(r"^custom   (\w+)\s", out, re.M)
    assert {"load", "split", "embed", "store"} <= set(stages) and stages[-1] == "done"
    assert "values   summary: 5 chunks added" in out
    retrieves = re.findall(r"^updates  retrieve: (.+)$", out, re.M)
    assert len(retrieves) == 2 and retrieves[0].startswith("[1] tasks-and-cancellation.md")
    assert re.search(r"^updates  rewrite: searched '.+'$", out, re.M)  # the follow-up only
    assert len(re.findall(r"^updates  rewrite", out, re.M)) == 1
    streamed = [int(n) for n in re.findall(r"^messages (\d+) chunks streamed$", out, re.M)]
    assert len(streamed) == 2 and min(streamed) > 1  # tokens, not one final message
    generated = [int(n) for n in re.findall(r"^updates  generate: (\d+) characters$", out, re.M)]
    assert len(generated) == 2 and min(generated) > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sync_usage(runs: dict[str, Run]) -> None:
    out = runs["sync_usage.py"].output()
    assert "script: indexed 5 files, 5 chunks" in out
    assert "notebook: asyncio.run fails here: asyncio.run() cannot be called from a running" in out
    assert re.search(r"notebook: answer cites \[1(, \d)*\]", out)
    assert "same top 3 from both: True" in out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rate_limited_openai(runs: dict[str, Run]) -> None:
    out = runs["rate_limited_openai.py"].output()
    runs_out = out.split("run 2:")
    assert len(runs_out) == 2
    first, second = runs_out
    assert "0 files failed" in first  # paced under the limit: nothing spent its retries
    # Told the limit (6 requests/s, 75 % of the server's 8), the client sends at most 6 in
    # any second; the server sees arrival times, which scheduling delays can bunch by up to
    # one more window on a loaded machine (CI once saw 10), so at most 12 arrive in one
    # second and hardly any is refused. How far run 2 goes over the limit, and so how many
    # 429s it meets, depends on the machine's speed: printed, not asserted.
    busiest = [int(n) for n in re.findall(r"at most (\d+) arrived in one second", out)]
    assert len(busiest) == 2 and 0 < busiest[0] <= 12
    refused = [int(n) for n in re.findall(r"(\d+) refused with 429", out)]
    assert refused and refused[0] <= 2, first
    texts = [int(n) for n in re.findall(r"(\d+) texts embedded", out)]
    chunks = [int(n) for n in re.findall(r"(\d+) chunks embedded", first)]
    assert chunks and chunks[0] > 10 and texts[0] >= chunks[0]
    # the last attempt of run 2 ends with every file indexed
    last = re.findall(r"(\d+) files failed", second)
    assert last and last[-1] == "0", second


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_custom_embeddings(runs: dict[str, Run]) -> None:
    out = runs["custom_embeddings.py"].output()
    assert "indexed 5 chunks; the model embedded 5" in out
    assert "second run: 0 embedded (5 files skipped)" in out
    assert "top hit: rate-limits.md" in out
    assert "saved with the index: custom:HashingEmbeddings:hashing-512" in out
    assert (
        "refused: custom:HashingEmbeddings:hashing-512 built it, "
        "custom:HashingEmbeddings:hashing-256 asked"
    ) in out
    sentence = re.sub(r"^- |\s*(\[\d+\])+$", "", out.split("answer: ", 1)[1].splitlines()[0])
    assert any(normalise(sentence) in text for text in CORPUS_TEXT.values()), sentence


CHECKED = {
    "quickstart.py": test_quickstart,
    "faiss_drop_in.py": test_faiss_drop_in_matches_langchain,
    "lcel_chain.py": test_lcel_chain_offline,
    "lcel_chain.py+openai": test_lcel_chain_with_chat_openai,
    "stream_graphs.py": test_stream_graphs,
    "sync_usage.py": test_sync_usage,
    "rate_limited_openai.py": test_rate_limited_openai,
    "custom_embeddings.py": test_custom_embeddings,
}
