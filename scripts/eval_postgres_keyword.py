"""nDCG@10 and recall@100 of PostgreSQL full-text rankings on SciFact.

Usage::

    .venv/bin/python scripts/eval_postgres_keyword.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package

from benchmarks.postgres_keyword import run  # noqa: E402

if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
