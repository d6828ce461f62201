"""Across processes (two indexers; queries during a re-index) and a soak of many cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability import concurrency, soak


def test_concurrency_across_processes_fast(rust_book: Path, tmp_path: Path) -> None:
    for result in concurrency.run(1, tmp_path, source=rust_book, files=20):
        assert result.all_survived, f"{result.name}: {result.failures}"


def test_soak_fast(rust_book: Path, tmp_path: Path) -> None:
    # 40 cycles end inside the warm-up (caches still filling): file descriptors, threads
    # and tasks must stay flat; memory gets the warm-up's allowance.
    result = soak.run(1, tmp_path, source=rust_book, cycles=40, rss_growth_mb=60.0)
    assert result.all_survived, f"{result.name}: {result.failures} {result.figures}"


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_concurrency_across_processes_full(rust_book: Path, tmp_path: Path) -> None:
    for result in concurrency.run(5, tmp_path, source=rust_book):
        assert result.all_survived, f"{result.name}: {result.failures}"


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_soak_full(rust_book: Path, tmp_path: Path) -> None:
    result = soak.run(1, tmp_path, source=rust_book, cycles=200)
    assert result.all_survived, f"{result.name}: {result.failures} {result.figures}"
