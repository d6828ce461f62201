"""Service faults: ``rag-async index`` against a fake OpenAI server that misbehaves at random.

Three sub-scenarios, each trial a real CLI run (``rag-async index DIR --index-dir X
--concurrency 8``) in a subprocess against :class:`FakeOpenAIServer` with a seeded
:class:`FaultMix` (a new seed per trial):

- ``service-faults-issue-mix``: 20 % 429 (with ``Retry-After``), 5 % 500, 2 % hung requests.
- ``service-faults-every-kind``: every transient kind at 2 % each (22 % of requests): 429
  with and without ``Retry-After``, 500, 503, hangs, connection resets, truncated and
  malformed JSON, a wrong vector dimension, NaN vectors, fewer vectors than texts.
- ``service-faults-persistent``: the issue mix plus two files whose texts always fail (one
  with 500, one with 400).

A transient trial survives when the run exits 0, the index holds exactly the chunk ids of a
fault-free run, every stored vector is the one the server means for its text (nothing from a
bad response), ``rag-async doctor`` finds it healthy, and the run took at most
``max_slowdown`` times the fault-free run. A persistent trial survives when the run exits 3
with exactly the two marked files failed (each with a reason), and a rerun once the fault is
gone exits 0, embeds only those files' chunks and ends with the fault-free chunk ids.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.reliability import (
    PROJECT_ROOT,
    ScenarioResult,
    chunk_ids,
    cli_env,
    doctor,
    run_cli,
)
from langchain_rag_async.testing import FakeOpenAIServer, FaultMix, PersistentFault
from langchain_rag_async.testing.openai_server import fake_embedding

__all__ = (
    "EVERY_KIND_MIX",
    "ISSUE_MIX",
    "RUST_BOOK",
    "IndexRun",
    "index_once",
    "run",
    "run_persistent",
    "run_transient",
    "stored_vector_mismatches",
)

RUST_BOOK = PROJECT_ROOT.parent / "shared" / "data" / "rust-book"
ISSUE_MIX = FaultMix(rate_limited=0.20, server_error=0.05, hang=0.02)
EVERY_KIND_MIX = FaultMix.every_kind(0.02)
DIMENSION = 64
CONCURRENCY = 8
MARKERS = (("CHAOS-MARKER-500", 500), ("CHAOS-MARKER-400", 400))


@dataclass(frozen=True, slots=True)
class IndexRun:
    """One ``rag-async index`` run: exit code, wall time, its JSON summary and server stats."""

    returncode: int
    wall_seconds: float
    summary: dict[str, Any]
    output: str
    requests: int
    faults: Counter[str]

    @property
    def seconds(self) -> float:
        """The run's own time (``summary.seconds``), or the wall time without a summary."""
        return float(self.summary.get("seconds", self.wall_seconds))

    @property
    def failed(self) -> dict[str, str]:
        """Failed files and their reasons."""
        return {f["path"]: f["reason"] for f in self.summary.get("files_failed", [])}


def index_once(
    server: FakeOpenAIServer, corpus: Path, index_dir: Path, *, timeout: float = 600.0
) -> IndexRun:
    """Run ``rag-async index`` once against ``server``; the server's stats are reset first."""
    server.reset_stats()
    args = ["index", str(corpus), "--index-dir", str(index_dir)]
    args += ["--concurrency", str(CONCURRENCY), "--json"]
    started = time.monotonic()
    done = run_cli(args, env=cli_env(server.base_url), timeout=timeout)
    wall = time.monotonic() - started
    try:
        summary: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        summary = {}
    stats = server.stats
    return IndexRun(
        done.returncode,
        wall,
        summary,
        done.stdout + done.stderr,
        stats.requests,
        stats.faults_injected,
    )


def stored_vector_mismatches(index_dir: Path) -> int:
    """Stored vectors that are not the fake server's vector of their chunk's text.

    A vector from a bad response (NaN, wrong dimension, another text's) counts as one.
    """
    from langchain_core.embeddings import FakeEmbeddings

    from langchain_rag_async.vectorstores.faiss import AsyncFAISS

    store = AsyncFAISS.load_local(index_dir, FakeEmbeddings(size=DIMENSION))
    if store.index is None:
        return 0
    positions = dict(store.index_to_docstore_id)
    docs = {str(d.id): d for d in store.get_by_ids(list(positions.values()))}
    wrong = 0
    for position, doc_id in positions.items():
        doc = docs.get(doc_id)
        vector = store.index.reconstruct(position)
        expected = fake_embedding(doc.page_content, DIMENSION) if doc is not None else None
        if expected is None or not np.allclose(vector, expected, atol=1e-5):
            wrong += 1
    return wrong


def _check_index(index_dir: Path, expected_ids: set[str]) -> list[str]:
    problems: list[str] = []
    ids = chunk_ids(index_dir)
    if ids != expected_ids:
        problems.append(
            f"chunk ids differ from the fault-free run: {len(expected_ids - ids)} missing, "
            f"{len(ids - expected_ids)} extra"
        )
    wrong = stored_vector_mismatches(index_dir)
    if wrong:
        problems.append(f"{wrong} stored vector(s) are not their text's vector")
    report = doctor(index_dir)
    if not report.get("healthy"):
        bad = [f for f in report.get("findings", []) if f.get("level") != "ok"]
        problems.append(f"doctor: unhealthy {bad or report.get('output', '')}"[:500])
    return problems


def _fault_free(corpus: Path, workdir: Path) -> tuple[IndexRun, set[str]]:
    index_dir = workdir / "fault-free"
    shutil.rmtree(index_dir, ignore_errors=True)
    with FakeOpenAIServer.run_in_thread(dimension=DIMENSION) as server:
        clean = index_once(server, corpus, index_dir)
    if clean.returncode != 0:
        raise SystemExit(f"the fault-free run failed ({clean.returncode}): {clean.output[-2000:]}")
    return clean, chunk_ids(index_dir)


def _figures(result: ScenarioResult, clean: IndexRun, runs: list[IndexRun]) -> None:
    faults: Counter[str] = Counter()
    for one in runs:
        faults.update(one.faults)
    result.figures.update(
        fault_free_seconds=round(clean.seconds, 2),
        fault_free_wall_seconds=round(clean.wall_seconds, 2),
        seconds=[round(r.seconds, 2) for r in runs],
        wall_seconds=[round(r.wall_seconds, 2) for r in runs],
        median_slowdown=round(statistics.median(r.seconds for r in runs) / clean.seconds, 2)
        if runs and clean.seconds
        else None,
        requests=[r.requests for r in runs],
        faults_injected=dict(sorted(faults.items())),
    )


def run_transient(
    name: str,
    mix: FaultMix,
    trials: int,
    workdir: Path,
    *,
    corpus: Path = RUST_BOOK,
    max_slowdown: float = 5.0,
    min_allowed_seconds: float = 5.0,
    fault_free: tuple[IndexRun, set[str]] | None = None,
) -> ScenarioResult:
    """Trials of one transient mix: every chunk indexed, in a few times the fault-free time.

    Args:
        name: The scenario's row name.
        mix: The faults (its seed is replaced by the trial number).
        trials: How many runs.
        workdir: Scratch directory (index directories go under it).
        corpus: The folder to index.
        max_slowdown: Most a run may take, in fault-free run times (the run's own time).
        min_allowed_seconds: Floor of the allowed time (tiny corpora take a fraction of a
            second fault-free; one hung request's deadline alone is longer).
        fault_free: A fault-free run of ``corpus`` and its chunk ids, when already made.
    """
    result = ScenarioResult(name)
    clean, expected = fault_free or _fault_free(corpus, workdir)
    allowed = max(max_slowdown * clean.seconds, min_allowed_seconds)
    runs: list[IndexRun] = []
    result.figures.update(mix=mix.describe(), allowed_seconds=round(allowed, 2))
    for trial in range(trials):
        index_dir = workdir / f"{name}-{trial}"
        shutil.rmtree(index_dir, ignore_errors=True)
        trial_mix = replace(mix, seed=1000 + trial)
        with FakeOpenAIServer.run_in_thread(dimension=DIMENSION, fault_mix=trial_mix) as server:
            one = index_once(server, corpus, index_dir)
        runs.append(one)
        problems = [] if one.returncode == 0 else [f"exit {one.returncode}: {one.failed}"]
        if one.seconds > allowed:
            problems.append(f"took {one.seconds:.1f} s, more than {allowed:.1f} s")
        problems += _check_index(index_dir, expected)
        result.record(
            not problems, f"trial {trial} (seed {trial_mix.seed}): " + "; ".join(problems)
        )
        shutil.rmtree(index_dir, ignore_errors=True)
    _figures(result, clean, runs)
    return result


def _marked_corpus(corpus: Path, workdir: Path) -> tuple[Path, dict[str, int]]:
    """A copy of ``corpus`` with a marker line appended to two of its files.

    Returns:
        The copy and the status each marked file's path fails with.
    """
    copy = workdir / "marked-corpus"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(corpus, copy)
    files = sorted(p for p in copy.rglob("*.md") if p.stat().st_size > 2000)
    chosen = [files[len(files) // 3], files[2 * len(files) // 3]]
    statuses: dict[str, int] = {}
    for path, (marker, status) in zip(chosen, MARKERS, strict=True):
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"\n\nThis line is {marker}, planted by the chaos suite.\n")
        statuses[str(path.resolve())] = status
    return copy, statuses


def run_persistent(
    trials: int, workdir: Path, *, corpus: Path = RUST_BOOK, mix: FaultMix = ISSUE_MIX
) -> ScenarioResult:
    """Trials of persistent faults on two files, over a transient ``mix``.

    Each trial: a run with the faults (exit 3, exactly the marked files failed with a
    reason), then a rerun without them (exit 0, only those files embedded again, the
    fault-free chunk ids, healthy).
    """
    result = ScenarioResult("service-faults-persistent")
    marked, statuses = _marked_corpus(corpus, workdir)
    clean, expected = _fault_free(marked, workdir)
    persistent = tuple(PersistentFault(marker=m, status=s) for m, s in MARKERS)
    runs: list[IndexRun] = []
    for trial in range(trials):
        index_dir = workdir / f"persistent-{trial}"
        shutil.rmtree(index_dir, ignore_errors=True)
        trial_mix = replace(mix, seed=2000 + trial, persistent=persistent)
        with FakeOpenAIServer.run_in_thread(dimension=DIMENSION, fault_mix=trial_mix) as server:
            first = index_once(server, marked, index_dir)
            server.set_fault_mix(None)
            second = index_once(server, marked, index_dir)
        runs.append(first)
        problems = _persistent_problems(first, second, statuses)
        problems += _check_index(index_dir, expected)
        result.record(
            not problems, f"trial {trial} (seed {trial_mix.seed}): " + "; ".join(problems)
        )
        shutil.rmtree(index_dir, ignore_errors=True)
    _figures(result, clean, runs)
    result.figures["failed_files"] = sorted(Path(p).name for p in statuses)
    return result


def _persistent_problems(first: IndexRun, second: IndexRun, statuses: dict[str, int]) -> list[str]:
    problems: list[str] = []
    if first.returncode != 3:
        problems.append(f"faulty run exited {first.returncode}, not 3")
    failed = {str(Path(p).resolve()): reason for p, reason in first.failed.items()}
    if set(failed) != set(statuses):
        problems.append(
            f"failed files {sorted(Path(p).name for p in failed)}, "
            f"expected {sorted(Path(p).name for p in statuses)}"
        )
    for path, status in statuses.items():
        reason = failed.get(path, "")
        if str(status) not in reason:
            problems.append(f"{Path(path).name}: reason {reason[:200]!r} does not name {status}")
    if second.returncode != 0:
        problems.append(f"rerun exited {second.returncode}: {second.failed}")
    if second.summary.get("files_indexed") != len(statuses):
        problems.append(f"rerun indexed {second.summary.get('files_indexed')} files, not 2")
    return problems


def run(
    trials: int,
    workdir: Path,
    *,
    corpus: Path = RUST_BOOK,
    max_slowdown: float = 5.0,
) -> list[ScenarioResult]:
    """Every sub-scenario with ``trials`` trials each (the persistent one: at least one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    fault_free = _fault_free(corpus, workdir)
    results = [
        run_transient(
            "service-faults-issue-mix",
            ISSUE_MIX,
            trials,
            workdir,
            corpus=corpus,
            max_slowdown=max_slowdown,
            fault_free=fault_free,
        ),
        run_transient(
            "service-faults-every-kind",
            EVERY_KIND_MIX,
            trials,
            workdir,
            corpus=corpus,
            max_slowdown=max_slowdown,
            fault_free=fault_free,
        ),
        run_persistent(max(1, trials // 2), workdir, corpus=corpus),
    ]
    for one in results:
        one.figures.setdefault("corpus", corpus.name)
    return results


def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/service-faults"))
    parser.add_argument("--corpus", type=Path, default=RUST_BOOK)
    parser.add_argument("--only", choices=("issue-mix", "every-kind", "persistent"), default=None)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.only == "persistent":
        results = [run_persistent(args.trials, args.workdir, corpus=args.corpus)]
    elif args.only is not None:
        mix = ISSUE_MIX if args.only == "issue-mix" else EVERY_KIND_MIX
        results = [
            run_transient(
                f"service-faults-{args.only}", mix, args.trials, args.workdir, corpus=args.corpus
            )
        ]
    else:
        results = run(args.trials, args.workdir, corpus=args.corpus)
    for one in results:
        print(
            json.dumps(
                {
                    "name": one.name,
                    "trials": one.trials,
                    "survived": one.survived,
                    "failures": one.failures,
                    "figures": one.figures,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    _main()
