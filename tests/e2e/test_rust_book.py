"""End to end, offline: index the shared rust-book corpus with the bundled local model.

The corpus is read in place for the first run; the incremental runs work on a copy in a
temporary directory (never inside the project), since they modify and delete files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from langchain_rag_async import IndexingSummary, RAGConfig, RAGEngine, index_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Path, IndexingSummary]]:
    from tests.conftest import RUST_BOOK

    if not RUST_BOOK.is_dir():
        pytest.skip(f"shared corpus missing: {RUST_BOOK}")
    base = tmp_path_factory.mktemp("rust-book-e2e")
    corpus = base / "rust-book"
    shutil.copytree(RUST_BOOK, corpus)
    for path in corpus.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    index_dir = base / "index"
    summary = index_directory(corpus, config=RAGConfig(index_dir=index_dir))
    yield corpus, index_dir, summary


def test_first_run_indexes_the_whole_book(indexed: tuple[Path, Path, IndexingSummary]) -> None:
    corpus, _, summary = indexed
    files = [p for p in corpus.rglob("*") if p.is_file()]
    assert summary.files_indexed == len(files) == 113
    assert summary.files_failed == []
    assert summary.chunks_added > 1000
    assert summary.chunks_embedded == summary.chunks_added


def test_search_finds_the_right_chapter(indexed: tuple[Path, Path, IndexingSummary]) -> None:
    _, index_dir, _ = indexed
    with RAGEngine(index_dir=index_dir) as engine:
        hits = engine.query("What are the ownership rules in Rust?", k=5)
    names = [Path(str(h.metadata["source"])).name for h in hits]
    assert any(name.startswith("ch04") for name in names), names
    assert all(set(h.metadata["scores"]) == {"dense", "sparse", "fused"} for h in hits)


def test_ask_offline_cites_the_relevant_chapter(
    indexed: tuple[Path, Path, IndexingSummary],
) -> None:
    _, index_dir, _ = indexed
    with RAGEngine(index_dir=index_dir) as engine:
        result = engine.answer("What are the ownership rules?")
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
    assert cited, result.answer
    cited_files = {Path(str(result.sources[n - 1]["source"])).name for n in cited}
    assert any(name.startswith("ch04") for name in cited_files), (cited_files, result.answer)


def test_rerun_modify_delete(indexed: tuple[Path, Path, IndexingSummary]) -> None:
    corpus, index_dir, first = indexed
    config = RAGConfig(index_dir=index_dir)
    again = index_directory(corpus, config=config)
    assert again.chunks_embedded == 0 and again.files_skipped == 113 and again.files_indexed == 0

    target = corpus / "ch10-03-lifetime-syntax.md"
    target.write_text(
        target.read_text("utf-8") + "\n\n## A new closing section\n\nLifetimes, revisited.\n",
        "utf-8",
    )
    changed = index_directory(corpus, config=config)
    assert changed.files_indexed == 1 and changed.files_skipped == 112
    assert 1 <= changed.chunks_embedded <= 3  # only the new tail chunk(s)
    assert changed.chunks_added == changed.chunks_embedded

    victim = corpus / "appendix-06-translation.md"
    victim.unlink()
    deleted = index_directory(corpus, config=config)
    assert deleted.files_deleted == 1 and deleted.chunks_deleted >= 1
    assert deleted.chunks_embedded == 0

    # The saved index reloads in a new process, without the deleted file's chunks.
    code = (
        "import json, sys\n"
        "from langchain_rag_async import AsyncFAISS, LocalMiniLMEmbeddings\n"
        "store = AsyncFAISS.load_local(sys.argv[1], LocalMiniLMEmbeddings())\n"
        "sources = {d.metadata['source'] for d in store.docstore._dict.values()}\n"
        "print(json.dumps({'count': store.index.ntotal, 'sources': sorted(sources)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(index_dir)], capture_output=True, text=True, check=True
    )
    reloaded = json.loads(out.stdout)
    expected = first.chunks_added + changed.chunks_added - changed.chunks_deleted
    assert reloaded["count"] == expected - deleted.chunks_deleted
    assert str(victim.resolve()) not in reloaded["sources"]
    assert len(reloaded["sources"]) == 112
