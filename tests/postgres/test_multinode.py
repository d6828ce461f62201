"""Many nodes, one PostgreSQL index: 3 indexer processes and 4 query processes at once.

Each indexer indexes its own subfolder of the rust-book through the real CLI; the query
processes query through AsyncRAGEngine in a loop until the indexers are done. At the end:
0 errors anywhere, no duplicate chunk or record, and chunks, records and files agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.reliability import cli_env
from langchain_rag_async.testing.openai_server import FakeOpenAIServer
from tests.conftest import RUST_BOOK
from tests.postgres.test_engine_and_migrate import counts

INDEXERS = 3
QUERIERS = 4

QUERY_LOOP = """
import asyncio, json, sys
from pathlib import Path
from langchain_rag_async import AsyncRAGEngine
from langchain_rag_async.errors import IndexNotFoundError

async def main(stop: Path) -> None:
    done, errors, empty = 0, [], 0
    async with AsyncRAGEngine() as engine:
        while not stop.exists() or done < 5:
            try:
                hits = await engine.aquery("how do ownership and borrowing work?", k=5)
                ids = [h.id for h in hits]
                if len(ids) != len(set(ids)):
                    errors.append(f"duplicate ids {ids}")
                empty += not hits
                done += 1
                await asyncio.sleep(0.1)  # a client's pace; the machine has 2 shared cores
            except IndexNotFoundError:
                await asyncio.sleep(0.05)  # no indexer has committed yet
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                done += 1
    print(json.dumps({"queries": done, "errors": errors, "empty": empty}))

asyncio.run(main(Path(sys.argv[1])))
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "files_per_indexer",
    # make test runs the fast case; the full one is a long run: pytest -m chaos tests/postgres
    [2, pytest.param(12, marks=pytest.mark.chaos)],
    ids=["fast", "full"],
)
def test_three_indexers_and_four_query_processes_share_one_index(
    pg_url: str, tmp_path: Path, files_per_indexer: int
) -> None:
    FILES_PER_INDEXER = files_per_indexer  # noqa: N806
    names = sorted(p.name for p in RUST_BOOK.glob("ch*.md"))[: INDEXERS * FILES_PER_INDEXER]
    folders = []
    for i in range(INDEXERS):
        folder = tmp_path / "book" / f"part{i}"
        folder.mkdir(parents=True)
        for name in names[i * FILES_PER_INDEXER : (i + 1) * FILES_PER_INDEXER]:
            shutil.copy(RUST_BOOK / name, folder / name)
        folders.append(folder)
    stop = tmp_path / "stop"
    with FakeOpenAIServer.run_in_thread() as server:
        env = cli_env(server.base_url, RAG_STORE_URL=pg_url)
        queriers = [
            subprocess.Popen(
                [sys.executable, "-c", QUERY_LOOP, str(stop)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(QUERIERS)
        ]
        indexers = [
            subprocess.Popen(
                [sys.executable, "-m", "langchain_rag_async.cli", "index", str(f), "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for f in folders
        ]
        try:
            summaries = []
            for proc in indexers:
                out, err = proc.communicate(timeout=240)
                assert proc.returncode == 0, err
                summaries.append(json.loads(out))
        finally:
            stop.touch()
            results = []
            for proc in queriers:
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err
                results.append(json.loads(out.strip().splitlines()[-1]))
            for proc in indexers:
                if proc.poll() is None:
                    proc.kill()
        embedded = server.stats.embedded_texts
    assert [s["files_indexed"] for s in summaries] == [FILES_PER_INDEXER] * INDEXERS
    assert all(not s["files_failed"] for s in summaries)
    assert [r["errors"] for r in results] == [[]] * QUERIERS
    assert all(r["queries"] >= 5 for r in results)
    added = sum(s["chunks_added"] for s in summaries)
    import asyncio

    chunks, keys, files = asyncio.run(counts(pg_url))
    assert chunks == keys == added and files == INDEXERS * FILES_PER_INDEXER
    assert embedded >= added  # every chunk embedded once (plus the queries)
