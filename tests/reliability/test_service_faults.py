"""Service faults against the real CLI: transient mixes lose nothing; persistent ones fail files.

The unmarked tests index a small slice of the rust book (one trial each); the ``chaos``
ones run the whole book with several trials.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.reliability import service_faults
from benchmarks.reliability.service_faults import (
    EVERY_KIND_MIX,
    ISSUE_MIX,
    RUST_BOOK,
    run_persistent,
    run_transient,
)
from langchain_rag_async.testing import FaultMix

pytestmark = pytest.mark.skipif(not RUST_BOOK.is_dir(), reason="needs ../shared/data/rust-book")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve chapters of the rust book (about 200 chunks)."""
    corpus = tmp_path_factory.mktemp("corpus")
    for path in sorted(RUST_BOOK.glob("ch0*.md"))[:12]:
        shutil.copy(path, corpus / path.name)
    return corpus


def test_transient_mixes_lose_nothing(small_corpus: Path, tmp_path: Path) -> None:
    """The issue's mix and a mix of every kind: exit 0, every chunk, right vectors."""
    fault_free = service_faults._fault_free(small_corpus, tmp_path)
    for name, mix in (("issue-mix", ISSUE_MIX), ("every-kind", EVERY_KIND_MIX)):
        result = run_transient(name, mix, 1, tmp_path, corpus=small_corpus, fault_free=fault_free)
        assert result.all_survived, result.failures
        assert sum(result.figures["faults_injected"].values()) > 0


def test_persistent_faults_fail_exactly_their_files_and_a_rerun_retries_them(
    small_corpus: Path, tmp_path: Path
) -> None:
    """Exit 3 with exactly the marked files failed (each with its reason), even where their
    chunks shared a request with other files'; a rerun without the fault exits 0, complete."""
    light = FaultMix(rate_limited=0.1, server_error=0.02)  # keeps the fast subset fast
    result = run_persistent(1, tmp_path, corpus=small_corpus, mix=light)
    assert result.all_survived, result.failures


@pytest.mark.chaos
def test_service_faults_full(tmp_path: Path) -> None:
    """The whole rust book, three trials per transient mix."""
    results = service_faults.run(3, tmp_path)
    for result in results:
        assert result.all_survived, (result.name, result.failures, result.figures)
