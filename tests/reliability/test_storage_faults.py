"""Storage faults against the real CLI: a full disk, a read-only directory, damaged files.

The fast subset damages two files and fills the disk once; ``chaos`` runs every index
file × every fault and every disk-full kind (see ``benchmarks/reliability/storage.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.reliability import ScenarioResult, cli_env, storage
from langchain_rag_async.testing.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[storage.Bench]:
    with FakeOpenAIServer.run_in_thread() as server:
        workdir = tmp_path_factory.mktemp("storage")
        yield storage.prepare(workdir, cli_env(server.base_url))


def survived(result: ScenarioResult) -> None:
    assert result.all_survived, f"{result.name}: {result.failures}\n{result.figures}"


def test_a_lost_faiss_file_or_sparse_index_never_gives_a_wrong_answer(
    bench: storage.Bench, tmp_path: Path
) -> None:
    result = storage.run_file_faults(
        bench, 1, tmp_path, files=["index.faiss", "sparse.sqlite"], faults=["delete"], rerun=False
    )
    survived(result)
    outcomes = result.figures["first query after the fault, per case"]
    assert outcomes["index.faiss delete"] == ["clear error naming index.1.faiss"]


def test_a_file_size_limit_mid_index_keeps_the_previous_generation(
    bench: storage.Bench, tmp_path: Path
) -> None:
    fsize = ScenarioResult("disk full")
    stopped: dict[str, int] = {}
    failure = storage._disk_full_trial(
        bench,
        storage._copy_baseline(bench, tmp_path / "index"),
        {"preexec_fn": storage._fsize_limit(20_000)},
        stopped,
    )
    fsize.record(not failure, failure)
    survived(fsize)
    assert "(not stopped: enough room)" not in stopped


def test_queries_on_a_read_only_directory_answer_as_before(
    bench: storage.Bench, tmp_path: Path
) -> None:
    result = storage.run_read_only(bench, 1, tmp_path)
    if "not run" in result.figures:
        pytest.skip(result.figures["not run"])
    survived(result)


@pytest.mark.chaos
def test_every_index_file_and_fault(bench: storage.Bench, tmp_path: Path) -> None:
    survived(storage.run_file_faults(bench, 2, tmp_path))


@pytest.mark.chaos
def test_disk_full_at_every_stage(bench: storage.Bench, tmp_path: Path) -> None:
    for result in storage.run_disk_full(bench, 6, tmp_path):
        if result.trials:
            survived(result)
