"""Hostile corpus: ``rag-async index`` on binary, huge, undecodable, oddly named, looping and
changing files finishes, reports each bad file with its reason and indexes the good ones.

The fast subset uses small sizes (a 3 MB "huge" file over a 2 MB ``RAG_MAX_FILE_SIZE``, a
1 MB single line, 300 tiny files); the ``chaos`` run uses the full ones (200 MB, 10 MB,
10,000 files) and the CLI's own size limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability import hostile
from benchmarks.reliability.hostile import CorpusSizes, Mutator, make_corpus


def test_generator_writes_every_kind_of_hostile_file(tmp_path: Path) -> None:
    sizes = CorpusSizes(big_bytes=2 * hostile.MB, line_bytes=300_000, tiny_files=20, depth=40)
    corpus = make_corpus(tmp_path, sizes)
    root = corpus.root

    assert (root / corpus.big).stat().st_size == sizes.big_bytes
    line = (root / "longline/one-line.txt").read_bytes()
    assert len(line) == sizes.line_bytes and b"\n" not in line
    assert len(list((root / "tiny").iterdir())) == 20
    assert (root / next(rel for rel in corpus.good if rel.startswith("deep/"))).is_file()
    assert len(next(rel for rel in corpus.good if rel.startswith("deep/")).split("/")) == 42
    assert (root / "links/ping.md").is_symlink() and (root / "links/escape-dir").is_symlink()
    assert (root / "names/new\nline.md").is_file()
    raw_names = {entry.name for entry in (root / "names").iterdir()}
    assert any(not name.isprintable() or "\udcff" in name for name in raw_names)
    assert (root / "encoding/utf16-nobom.md").read_bytes()[1:2] == b"\x00"
    assert (root / "empty/zero.md").stat().st_size == 0
    # Same seed, same files.
    again = make_corpus(tmp_path / "again", sizes)
    assert (again.root / "good/guide-0.md").read_bytes() == (root / "good/guide-0.md").read_bytes()


def test_mutator_ends_in_its_documented_final_state(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path, CorpusSizes(big_bytes=1000, line_bytes=1000, tiny_files=1))
    mutator = Mutator(corpus, pause=0.0).start()
    while mutator.rounds < 5:
        pass
    mutator.finish()

    for number, rel in enumerate(corpus.volatile):
        path = corpus.root / rel
        if rel in mutator.final_files():
            assert path.read_text() == Mutator.content(number, Mutator.FINAL)
        else:
            assert not path.exists()
    assert not list((corpus.root / "volatile").glob(".*"))  # no temporary file left


def test_hostile_corpus_small(tmp_path: Path) -> None:
    result = hostile.run(
        1,
        tmp_path,
        sizes=CorpusSizes.small(),
        max_file_size=2 * hostile.MB,
        rss_limit_mb=600,
        timeout=120,
        query_all=False,
    )

    assert result.all_survived, result.failures
    figures = result.figures
    assert figures["failure_reasons"]["exceeds max_file_size"] == 1
    assert figures["failure_reasons"]["its name is not valid UTF-8"] == 2
    assert figures["failure_reasons"]["symbolic link loop (the link leads back to itself)"] == 2


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_hostile_corpus_full_size(tmp_path: Path) -> None:
    result = hostile.run(2, tmp_path, rss_limit_mb=1024, timeout=1200)

    print(result.figures)
    assert result.all_survived, result.failures
