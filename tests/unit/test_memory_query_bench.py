"""Keep the memory-scaling and concurrent-query benchmarks from rotting: tiny runs complete.

They assert no speed and no memory bound: the figures are measurements, printed side by side
by scripts/bench_memory.py --scaling and scripts/bench_engine_query.py --concurrent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks.memory_scaling import multiply_corpus, parse_factors

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small_book(rust_book: Path, root: Path, files: int = 2) -> Path:
    """The first ``files`` chapters, in a temporary directory."""
    root.mkdir()
    for path in sorted(rust_book.glob("*.md"))[:files]:
        (root / path.name).write_bytes(path.read_bytes())
    return root


def test_multiplied_copies_are_renamed_and_share_no_line(rust_book: Path, tmp_path: Path) -> None:
    source = _small_book(rust_book, tmp_path / "book", files=3)
    (source / "nested").mkdir()
    (source / "nested" / "deep.md").write_text("# Deep\n\ntext\n\nmore text\n", "utf-8")
    out = tmp_path / "x4"
    assert multiply_corpus(source, 4, out) == 16
    originals = sorted(p.relative_to(source) for p in source.rglob("*.md"))
    for relative in originals:
        copies = [out / relative.parent / f"{relative.stem}.r{i}.md" for i in range(4)]
        texts = [c.read_text("utf-8") for c in copies]
        assert texts[0] == (source / relative).read_text("utf-8")  # copy 0: the file itself
        lines = [{line for line in t.splitlines() if line.strip()} for t in texts]
        for i in range(4):
            for j in range(i + 1, 4):
                assert lines[i].isdisjoint(lines[j]), (relative, i, j)
    assert (out / "nested" / "deep.r3.md").read_text("utf-8") == (
        "# Deep r3\n\ntext r3\n\nmore text r3\n"
    )
    assert parse_factors("16,1,4,4") == [1, 4, 16]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_factors("0,2")


@pytest.mark.slow
@pytest.mark.allow_blocking
def test_memory_scaling_measures_both_sides_at_each_size(
    rust_book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _small_book(rust_book, tmp_path / "book")
    plot = tmp_path / "img" / "scaling.png"
    bench = _load("bench_memory")
    argv = ["--corpus", str(corpus), "--repeat", "1", "--dimension", "64", "--json"]
    status = bench.main([*argv, "--scaling", "1,2", "--plot", str(plot)])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [(r["factor"], r["files"], r["ok"]) for r in report["rows"]] == [
        (1, 2, True),
        (2, 4, True),
    ]
    one, two = report["rows"]
    assert 0 < one["ours_chunks"] < two["ours_chunks"]  # the copies were embedded too
    assert 0 < one["langchain_chunks"] < two["langchain_chunks"]
    assert all(r["ours_mb"] > 0 and r["langchain_mb"] > 0 for r in report["rows"])
    if importlib.util.find_spec("matplotlib") is None:  # CI installs .[dev], not .[bench]
        assert status == 1 and "matplotlib is missing" in captured.err and not plot.exists()
    else:
        assert status == 0 and plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
@pytest.mark.allow_blocking
def test_concurrent_query_bench_runs_both_sides(
    rust_book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _small_book(rust_book, tmp_path / "book")
    bench = _load("bench_engine_query")
    argv = ["--corpus", str(corpus), "--concurrent", "--concurrency", "6", "--rounds", "2"]
    assert bench.main([*argv, "--dimension", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for side in ("ours", "langchain_sync"):
        figures = report[side]
        assert figures["queries"] == 12 and len(figures["round_seconds"]) == 2
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert figures["chunks"] > 0 and figures["peak_rss_mb"] > 0
    assert report["p50_ratio"] == round(
        report["ours"]["p50_ms"] / report["langchain_sync"]["p50_ms"], 3
    )


def test_the_langchain_child_imports_langchain_only() -> None:
    """Its peak RSS is the side we are compared with: none of our modules may add to it."""
    import subprocess
    import sys

    from benchmarks.langchain_child import CHUNK_OVERLAP, CHUNK_SIZE
    from langchain_rag_async.config import SplitterConfig

    assert (CHUNK_SIZE, CHUNK_OVERLAP) == (
        SplitterConfig().chunk_size,
        SplitterConfig().chunk_overlap,
    )
    code = (
        "import sys, benchmarks.langchain_child; "
        "print(sorted(m for m in sys.modules if m.startswith('langchain_rag_async')))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
