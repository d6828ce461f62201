"""Run every chaos scenario with the published trial counts and write ``docs/reliability.md``.

Run by ``scripts/chaos.py`` (``make chaos-report``). Each scenario's result becomes a row:
trials run, trials survived, and its figures; failed trials are listed below the table with
what went wrong, so a row below 100 % says why.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.corpus import RUST_BOOK

from . import PROJECT_ROOT, ScenarioResult

__all__ = ("SCENARIOS", "Scenario", "render", "run_scenarios")

Runner = Callable[[Path, bool], list[ScenarioResult]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One family of trials: its name and how to run it (full or quick)."""

    name: str
    run: Runner


def _as_list(result: ScenarioResult | list[ScenarioResult]) -> list[ScenarioResult]:
    return result if isinstance(result, list) else [result]


def _service(workdir: Path, quick: bool) -> list[ScenarioResult]:
    from . import service_faults

    return service_faults.run(1 if quick else 3, workdir)


def _kill(workdir: Path, quick: bool) -> list[ScenarioResult]:
    from . import kill

    return _as_list(kill.run(4 if quick else 50, workdir, corpus=RUST_BOOK))


def _signals(workdir: Path, quick: bool) -> list[ScenarioResult]:
    from . import signals

    return signals.run(4 if quick else 20, workdir, corpus=RUST_BOOK)


def _concurrency(workdir: Path, quick: bool) -> list[ScenarioResult]:
    from . import concurrency

    return concurrency.run(1 if quick else 5, workdir, source=RUST_BOOK)


def _storage(workdir: Path, quick: bool) -> list[ScenarioResult]:
    from . import storage

    return storage.run(1 if quick else 2, workdir)


def _hostile(workdir: Path, quick: bool) -> list[ScenarioResult]:
    from . import hostile

    sizes = hostile.CorpusSizes.small() if quick else None
    return _as_list(hostile.run(1 if quick else 2, workdir, sizes=sizes, timeout=1200))


def _soak(workdir: Path, quick: bool) -> list[ScenarioResult]:
    from . import soak

    if quick:
        return _as_list(soak.run(1, workdir, source=RUST_BOOK, cycles=40, rss_growth_mb=60.0))
    return _as_list(soak.run(1, workdir, source=RUST_BOOK, cycles=200))


SCENARIOS = (
    Scenario("service", _service),
    Scenario("kill", _kill),
    Scenario("signals", _signals),
    Scenario("concurrency", _concurrency),
    Scenario("storage", _storage),
    Scenario("hostile", _hostile),
    Scenario("soak", _soak),
)
"""Every scenario, in the order of the issue and of the table."""


def run_scenarios(
    names: Sequence[str], *, quick: bool, log: Callable[[str], None]
) -> tuple[list[ScenarioResult], dict[str, float]]:
    """Run the named scenarios (all when empty) in scratch directories; time each one."""
    results: list[ScenarioResult] = []
    seconds: dict[str, float] = {}
    for scenario in SCENARIOS:
        if names and scenario.name not in names:
            continue
        log(f"running {scenario.name} ...")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"chaos-{scenario.name}-") as scratch:
            try:
                found = scenario.run(Path(scratch), quick)
            except Exception as exc:  # a scenario that crashes is a failed row, not no row
                failed = ScenarioResult(scenario.name)
                failed.record(False, f"the scenario crashed: {type(exc).__name__}: {exc}")
                found = [failed]
        seconds[scenario.name] = time.monotonic() - started
        for result in found:
            log(f"  {result.name}: {result.survived}/{result.trials}")
        results.extend(found)
    return results, seconds


def _figures(figures: dict[str, Any]) -> str:
    parts = []
    for key, value in figures.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {v}" for k, v in value.items())
            parts.append(f"{key}: {inner}")
        else:
            parts.append(f"{key}: {value}")
    return "; ".join(parts).replace("|", "\\|")


def render(
    results: Sequence[ScenarioResult], seconds: dict[str, float], argv: Sequence[str]
) -> str:
    """The Markdown of ``docs/reliability.md``."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["python", *argv])
    total = sum(seconds.values())
    lines = [
        "# Reliability: what was tried, and what survived",
        "",
        "The chaos suite (`tests/reliability/`, scenarios in `benchmarks/reliability/`) drives",
        "the real `rag-async` CLI in subprocesses against the local fake OpenAI-compatible",
        "server with injected faults, and checks after every trial that the index is",
        "consistent (`rag-async doctor`), holds exactly the chunk ids of a clean run, and that",
        "nothing was silently lost or wrong. `make test` runs a few trials of each scenario;",
        "`make chaos` runs them all; this page is written by `make chaos-report`.",
        "",
        f"- **Command:** `{command}`",
        f"- **Date:** {now}; {total / 60:.1f} min in all.",
        f"- **Machine:** {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}.",
        "",
        "| Scenario | Trials | Survived | Figures |",
        "| --- | ---: | ---: | --- |",
    ]
    for result in results:
        mark = "" if result.all_survived else " **(not all)**"
        lines.append(
            f"| {result.name} | {result.trials} | {result.survived}{mark} | "
            f"{_figures(result.figures)} |"
        )
    failed = [r for r in results if r.failures]
    if failed:
        lines += ["", "## Trials that did not survive", ""]
        for result in failed:
            lines.append(f"- **{result.name}**")
            lines += [f"  - {failure[:600]}" for failure in result.failures]
    lines += [
        "",
        "## The scenarios",
        "",
        "- **Service faults** (`service_faults.py`): mixes of 429 (with and without",
        "  `Retry-After`), 500, 503, hung requests, connection resets, truncated and malformed",
        "  JSON, wrong dimensions, NaN vectors and missing vectors; a trial survives with exit 0,",
        "  exactly the chunk ids and vectors of a fault-free run, and at most 5x its time.",
        "  Persistent faults on marked files: exit 3, exactly those files failed with a",
        "  reason, and a rerun without the fault completes.",
        "- **kill -9** (`kill.py`): SIGKILL at a random moment (half the trials in the run's",
        "  tail: storing, saving, the record commit), then a rerun: healthy after the kill and",
        "  after the rerun, the clean run's chunk ids, and at most the texts in flight",
        "  (8 requests x 16 texts) thrown away.",
        "- **Signals** (`signals.py`): SIGINT or SIGTERM at a random moment: exit within 2 s",
        "  with 130 or 143, healthy, and a rerun gives the clean run's chunk ids.",
        "- **Concurrency** (`concurrency.py`): two indexers on one directory; 50 concurrent",
        "  queries from another process, and through `rag-async serve`, while a re-index",
        "  runs: 0 errors, every query sees one generation, the last ones the new one.",
        "- **Storage** (`storage.py`): disk full mid-save, a read-only index directory, every",
        "  index file truncated, bit-flipped or deleted in turn.",
        "- **Hostile corpus** (`hostile.py`): binary and undecodable files, a 200 MB file, a",
        "  10 MB line, 10,000 tiny files, 40-deep folders, link loops and links out of the",
        "  root, bad names, files changing while read: each bad file reported with its reason,",
        "  bounded memory.",
        "- **Soak** (`soak.py`): change, index and query cycles in one process: memory, file",
        "  descriptors, threads and tasks flat over the second half.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/chaos.py``: run the scenarios, write the page, exit 1 if any trial failed."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few trials of each")
    parser.add_argument("--only", action="append", default=[], choices=[s.name for s in SCENARIOS])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    results, seconds = run_scenarios(
        args.only, quick=args.quick, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    shown = ["scripts/chaos.py", *(sys.argv[1:] if argv is None else argv)]
    args.out.write_text(render(results, seconds, shown), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(r.all_survived for r in results) else 1
