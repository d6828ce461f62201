"""The verdicts printed by scripts/eval_retrieval.py (the figures themselves need SciFact)."""

from __future__ import annotations

from typing import Any

from benchmarks import retrieval


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


def verdicts(rows: list[dict[str, Any]]) -> list[bool]:
    return [row["passed"] for row in rows]


def test_targets_judge_median_latency_frozen_stalls_and_hybrid_quality() -> None:
    rows = retrieval.targets(report(1.09, 1.12, [20.0, 49.9], 0.71))
    assert verdicts(rows) == [True, True, True]  # the unfrozen 80 ms round is not judged
    assert rows[1]["measured"] == "1.090x; 1.120x"
    assert verdicts(retrieval.targets(report(1.11, 1.05, [20.0], 0.69))) == [
        False,
        False,
        True,
    ]
    assert verdicts(retrieval.targets(report(1.0, 1.0, [20.0, 50.1], 0.7))) == [
        True,
        True,
        False,
    ]


def test_quality_only_reports_judge_quality_only() -> None:
    quality_only = report(1.0, 1.0, [], 0.75)
    del quality_only["latency"]
    assert verdicts(retrieval.targets(quality_only)) == [True]


def test_report_text_ends_with_a_pass_or_fail_line_per_target() -> None:
    quality_only = report(1.0, 1.0, [], 0.69) | {
        "dataset": "SciFact",
        "queries": 2,
        "documents": 3,
        "model": "m",
        "settings": {"fetch_k": 30, "dense_weight": 1.0, "sparse_weight": 1.0, "rrf_c": 60},
    }
    del quality_only["latency"]

    text = retrieval.report_text(quality_only)

    assert text.splitlines()[-2:] == [
        "targets:",
        "  FAIL  hybrid-rrf nDCG@10: 0.6900 (target >= 0.7)",
    ]
