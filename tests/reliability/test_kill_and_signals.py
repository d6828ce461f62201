"""kill -9, SIGINT and SIGTERM during ``rag-async index``: consistent, quick, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability import ScenarioResult, kill, signals


def _assert_survived(result: ScenarioResult) -> None:
    assert result.all_survived, f"{result.name}: {result.failures}"


def test_kill_9_then_rerun_fast(small_book: Path, tmp_path: Path) -> None:
    _assert_survived(kill.run(3, tmp_path, corpus=small_book, checkpoint_every=100))


def test_signals_fast(small_book: Path, tmp_path: Path) -> None:
    for result in signals.run(2, tmp_path, corpus=small_book, checkpoint_every=100):
        _assert_survived(result)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_kill_9_then_rerun_full(rust_book: Path, tmp_path: Path) -> None:
    _assert_survived(kill.run(50, tmp_path, corpus=rust_book))


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_signals_full(rust_book: Path, tmp_path: Path) -> None:
    for result in signals.run(20, tmp_path, corpus=rust_book):
        _assert_survived(result)
