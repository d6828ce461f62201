"""The verdicts printed by scripts/eval_retrieval.py (the figures themselves need SciFact)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import eval_retrieval  # noqa: E402


def report(median: float, mean: float, stalls: list[float], ndcg: float) -> dict[str, Any]:
    return {
        "quality": [
            {"method": "dense", "ndcg@10": 0.5, "recall@100": 0.9},
            {"method": "hybrid-rrf", "ndcg@10": ndcg, "recall@100": 0.9},
        ],
        "latency": {
            "model": {
                "median_ratios": {"retrievers": median},
                "mean_ratios": {"retrievers": mean},
            }
        },
        "stall": [{"max_stall_ms": 80.0, "gc_frozen": False}]
        + [{"max_stall_ms": ms, "gc_frozen": True} for ms in stalls],
    }


def verdicts(rows: list[tuple[str, str, str, bool]]) -> list[bool]:
    return [met for _check, _measured, _target, met in rows]


def test_targets_judge_median_latency_frozen_stalls_and_hybrid_quality() -> None:
    rows = eval_retrieval.targets(report(1.09, 1.12, [20.0, 49.9], 0.71))
    assert verdicts(rows) == [True, True, True]  # the unfrozen 80 ms round is not judged
    assert rows[1][1] == "1.090x; 1.120x"
    assert verdicts(eval_retrieval.targets(report(1.11, 1.05, [20.0], 0.69))) == [
        False,
        False,
        True,
    ]
    assert verdicts(eval_retrieval.targets(report(1.0, 1.0, [20.0, 50.1], 0.7))) == [
        True,
        True,
        False,
    ]


def test_quality_only_reports_judge_quality_only() -> None:
    quality_only = report(1.0, 1.0, [], 0.75)
    del quality_only["latency"]
    assert verdicts(eval_retrieval.targets(quality_only)) == [True]
