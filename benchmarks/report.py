"""Reporting a benchmark: the machine, progress lines, Markdown tables, PASS/FAIL verdicts.

A verdict is a ``check`` dict (``check``, ``measured``, ``target``, ``passed``), the same
shape in every benchmark's JSON output. The benchmarks exit 0 even when a target is missed:
they measure, they do not test.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

__all__ = (
    "check",
    "checks_table",
    "machine",
    "markdown_table",
    "missed_banner",
    "progress",
    "verdict_lines",
)


def check(name: str, measured: Any, target: str, passed: bool) -> dict[str, Any]:
    """One verdict: what was measured against its target, and whether it met it."""
    return {"check": name, "measured": measured, "target": target, "passed": passed}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table with padded columns (``None`` cells left empty)."""
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def checks_table(checks: Sequence[dict[str, Any]]) -> str:
    """The verdicts as a Markdown table, a missed target in bold."""
    rows = [
        [c["check"], c["measured"], c["target"], "PASS" if c["passed"] else "**FAIL**"]
        for c in checks
    ]
    return markdown_table(["check", "measured", "target", "result"], rows)


def verdict_lines(checks: Sequence[dict[str, Any]]) -> list[str]:
    """One ``PASS``/``FAIL`` line per verdict (indented, for a plain-text report)."""
    return [
        f"  {'PASS' if c['passed'] else 'FAIL'}  {c['check']}: {c['measured']} "
        f"(target {c['target']})"
        for c in checks
    ]


def missed_banner(checks: Sequence[dict[str, Any]]) -> str:
    """A line that says all targets were met, or a loud block listing the missed ones."""
    missed = [c for c in checks if not c["passed"]]
    if not missed:
        return f"ALL {len(checks)} TARGETS MET"
    lines = [f"!!! {len(missed)} OF {len(checks)} TARGETS MISSED !!!"]
    lines += [f"!!!   {c['check']}: {c['measured']} (target {c['target']})" for c in missed]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """The CPUs, the Python version and the load average when the benchmark started."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    cpus = os.cpu_count()
    summary = (
        f"{platform.system()} {platform.machine()}, {cpus} logical CPUs (shared), "
        f"Python {platform.python_version()}, load average at start {load[0]:.2f}"
    )
    return {"cpus": cpus, "load_average_at_start": load[0], "summary": summary}


def progress(message: str, *, prefix: str = "bench") -> None:
    """A progress line on stderr (stdout is kept for the report)."""
    print(f"[{prefix}] {message}", file=sys.stderr, flush=True)
