"""Keep scripts/bench_async.py (and benchmarks/indexing.py) from rotting: a tiny run completes.

It asserts no speed: the figures are measurements, and their targets live in benchmarks/indexing.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks.corpus import langchain_glob, our_include, select_files

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_async.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_async", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.allow_blocking
def test_bench_script_quick_run_prints_every_figure(
    rust_book: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _load_script()

    status = bench.main(
        [
            "--corpus",
            str(rust_book),
            "--files",
            "3",
            "--latency",
            "0.01",
            "--skip-langchain",
            "--rate",
            "50",
            "--json",
        ]
    )

    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {
        "machine",
        "settings",
        "scenarios",
        "checks",
        "llamaindex_skipped",
        "profile",
    }
    # The `bench` extra is not installed by `dev`: the LlamaIndex row says why it is missing.
    assert report["llamaindex_skipped"] is None or "pip install" in report["llamaindex_skipped"]
    # With the `bench` extra installed (LlamaIndex), its scenario is there too.
    expected = {"ours", "ours_same_chunks", "rate_paced", "rate_unpaced"}
    assert set(report["scenarios"]) - expected <= {"llamaindex"}
    assert expected <= set(report["scenarios"])
    for scenario in (report["scenarios"][name] for name in expected):
        assert {
            "seconds",
            "files",
            "chunks",
            "chunks_embedded",
            "requests",
            "peak_in_flight",
            "loop_stall_ms",
            "files_failed",
        } <= set(scenario)
        assert scenario["files"] == 3
        assert scenario["files_failed"] == []
        assert scenario["chunks_embedded"] == scenario["chunks"] > 0
    assert report["checks"]
    assert all({"check", "measured", "target", "passed"} == set(c) for c in report["checks"])


def test_bench_selects_the_first_files_by_name(rust_book: Path) -> None:
    files = select_files(rust_book, 2)

    assert files == sorted(rust_book.glob("*.md"))[:2]
    assert langchain_glob(rust_book, files) == [p.name for p in files]
    assert our_include(rust_book, files) == tuple("/" + p.name for p in files)
    assert langchain_glob(rust_book, None) == "**/*.md"
    assert our_include(rust_book, None) == ("*.md",)


@pytest.mark.slow
@pytest.mark.allow_blocking
def test_memory_bench_measures_both_sides_on_a_small_corpus(
    rust_book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "book"
    corpus.mkdir()
    for path in sorted(rust_book.glob("*.md"))[:2]:
        (corpus / path.name).write_bytes(path.read_bytes())
    spec = importlib.util.spec_from_file_location(
        "bench_memory", SCRIPT.with_name("bench_memory.py")
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    args = ["--corpus", str(corpus), "--repeat", "1", "--dimension", "64", "--json"]
    assert bench.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    peaks = report["peak_rss_mb"]
    assert 0 < peaks["python"] < peaks["ours"] and 0 < peaks["python"] < peaks["langchain_sync"]
    ours, langchain = report["runs"]["ours"][0], report["runs"]["langchain"][0]
    assert ours["returncode"] == 0 and langchain["returncode"] == 0
    assert ours["output"]["files_indexed"] == langchain["output"]["files"] == 2
    assert report["overhead"] == round(peaks["ours"] / peaks["langchain_sync"] - 1, 3)
