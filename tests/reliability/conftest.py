"""The chaos suite: scenarios from ``benchmarks.reliability`` with a few trials each.

Tests marked ``chaos`` are the long ones (``make chaos``); the others are the fast subset
that ``make test`` runs. The CLI runs in subprocesses, so the blocking-call guard (which
watches this process's event loop) does not apply to them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.corpus import RUST_BOOK


@pytest.fixture(scope="session")
def rust_book() -> Path:
    """The whole rust-book corpus (read in place)."""
    if not RUST_BOOK.is_dir():
        pytest.skip(f"the shared rust-book corpus is not at {RUST_BOOK}")
    return RUST_BOOK


@pytest.fixture(scope="session")
def small_book(rust_book: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of 25 rust-book files in a temp dir: runs of a few seconds."""
    target = tmp_path_factory.mktemp("small-book")
    for path in sorted(rust_book.rglob("*.md"))[:25]:
        shutil.copy2(path, target / path.name)
    return target
