"""SIGINT and SIGTERM at random moments of ``rag-async index``: a quick, orderly stop.

Per trial: the run gets the signal after a random delay and must exit within 2 s (more on a
machine slower than a quiet one: see :data:`QUIET_CLEAN_SECONDS`) with
``128 + signum`` (or 0 if it had already finished; or be ended by the signal itself when it
arrives before the command could handle one, with nothing written), leave an index
``rag-async doctor`` finds healthy, and a rerun must finish with exactly the chunk ids of
a clean run.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from langchain_rag_async.testing import FakeOpenAIServer

from . import ScenarioResult, chunk_ids, cli_env, doctor, index_args, run_cli, spawn_cli

__all__ = ("EXIT_DEADLINE", "run")

EXIT_DEADLINE = 2.0
"""Seconds a run may take to exit after the signal, on a machine as fast as a quiet one..."""

QUIET_CLEAN_SECONDS = 3.0
"""...where the clean run of the rust-book takes about this long (3.0 s in docs/reliability.md).
On a machine shared with other work the clean run is measured first, and the deadline grows
by its slowdown: CPU starvation stretches the orderly stop (a checkpoint in progress is
finished, not torn) as much as anything else. The figures show the deadline used."""

EARLY = "before rag-async had started"
"""A trial whose signal ended the process by Python's default action while the interpreter
started and imported the command's entry point, before ``main()`` could handle signals (no
index directory yet, nothing written): it survived, and is counted in the figures."""


def run(
    trials: int,
    workdir: Path,
    *,
    corpus: Path,
    latency: float = 0.05,
    checkpoint_every: int = 400,
    seed: int = 0,
) -> list[ScenarioResult]:
    """Send SIGINT (even trials) and SIGTERM (odd ones) at random moments of a run.

    Args:
        trials: Signals sent, split between SIGINT and SIGTERM.
        workdir: Scratch directory.
        corpus: The directory to index.
        latency: Seconds the fake server takes per embedding request.
        checkpoint_every: ``RAG_CHECKPOINT_EVERY`` of the runs.
        seed: Seed of the random moments.

    Returns:
        One result per signal.
    """
    rng = random.Random(seed)
    results = {
        signal.SIGINT: ScenarioResult("SIGINT during index"),
        signal.SIGTERM: ScenarioResult("SIGTERM during index"),
    }
    slowest: dict[signal.Signals, float] = dict.fromkeys(results, 0.0)
    early: dict[signal.Signals, int] = dict.fromkeys(results, 0)
    with FakeOpenAIServer.run_in_thread(latency=latency) as server:
        env = cli_env(server.base_url, RAG_CHECKPOINT_EVERY=str(checkpoint_every))
        started = time.monotonic()
        clean = run_cli(index_args(corpus, workdir / "reference"), env=env)
        duration = time.monotonic() - started
        if clean.returncode != 0:
            for result in results.values():
                result.record(False, f"the clean run failed: {clean.stderr[-500:]}")
            return list(results.values())
        reference = chunk_ids(workdir / "reference")
        deadline = EXIT_DEADLINE * max(1.0, duration / QUIET_CLEAN_SECONDS)
        for number in range(trials):
            signum = signal.SIGINT if number % 2 == 0 else signal.SIGTERM
            delay = rng.uniform(0.3, duration)
            ok, failure, took = _trial(
                env, corpus, workdir / f"trial-{number}", signum, delay, deadline
            )
            if failure == EARLY:
                early[signum] += 1
            if ok:
                ok, failure = _rerun_matches(env, corpus, workdir / f"trial-{number}", reference)
            slowest[signum] = max(slowest[signum], took)
            results[signum].record(ok, f"trial {number} ({delay:.2f} s): {failure}")
    for signum, result in results.items():
        result.figures["slowest exit (s)"] = round(slowest[signum], 2)
        result.figures["clean run (s)"] = round(duration, 2)
        result.figures["exit deadline (s)"] = round(deadline, 2)
        result.figures["signals " + EARLY] = early[signum]
    return list(results.values())


def _trial(
    env: dict[str, str],
    corpus: Path,
    index_dir: Path,
    signum: signal.Signals,
    delay: float,
    deadline: float,
) -> tuple[bool, str, float]:
    process = spawn_cli(index_args(corpus, index_dir), env=env)
    time.sleep(delay)
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return False, "still running 30 s after the signal", 30.0
    took = time.monotonic() - sent
    code = process.returncode
    if code == -signum and not index_dir.exists():
        # Delivered while the interpreter started, before main() could handle a signal:
        # Python's default action ended it, with nothing written.
        return True, EARLY, took
    if code not in (0, 128 + signum):
        return False, f"exit code {code} (expected {128 + signum}): {stderr[-500:]}", took
    if took > deadline:
        return False, f"exited {took:.2f} s after the signal (> {deadline:.2f} s)", took
    if (index_dir / "manifest.json").exists():
        report = doctor(index_dir)
        if not report.get("healthy"):
            return False, f"unhealthy after the signal: {report}", took
    return True, "", took


def _rerun_matches(
    env: dict[str, str], corpus: Path, index_dir: Path, reference: set[str]
) -> tuple[bool, str]:
    rerun = run_cli(index_args(corpus, index_dir), env=env)
    if rerun.returncode != 0:
        return False, f"the rerun failed ({rerun.returncode}): {rerun.stderr[-500:]}"
    ids = chunk_ids(index_dir)
    if ids != reference:
        return (
            False,
            f"chunk ids differ: {len(reference - ids)} missing, {len(ids - reference)} extra",
        )
    return True, ""
