"""The chaos suite with its published trial counts; writes docs/reliability.md.

Every scenario of ``benchmarks/reliability`` (service faults, kill -9, signals, concurrency
across processes, storage faults, hostile corpus, soak) runs the real CLI in subprocesses
against the local fake OpenAI-compatible server. The page gets a row per scenario (trials,
survived, figures) and lists every trial that failed. Exits 1 if one did.

Usage:
    .venv/bin/python scripts/chaos.py [--quick] [--only NAME ...] [--out PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reliability.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
