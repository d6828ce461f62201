"""kill -9 at random moments of ``rag-async index``, then a rerun: nothing lost, little redone.

One clean run first gives the reference: the chunk ids a complete index holds, and the
timeline of the run (when the first and last embedding requests reached the server, when
the process ended). Each trial then starts a run on a fresh index directory and sends
SIGKILL after a random delay: half the trials anywhere in the run, half in its tail (after
the last embedding request: storing, saving, the record commit), where the writes are. After
the kill, ``rag-async query`` must answer from what was saved; after a rerun,
``rag-async doctor`` must find the index healthy (the four counts agree) and it must hold
exactly the reference chunk ids. The vectors the kill threw away (the server sent them, the
embedding cache does not hold them) must be at most the texts that can be in flight at once
(requests in flight x texts per request): every vector received is cached before it is used.

Checkpoints are frequent (``RAG_CHECKPOINT_EVERY``) so kills also land inside saves.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from langchain_rag_async.testing import FakeOpenAIServer

from . import (
    ScenarioResult,
    cached_texts,
    chunk_ids,
    cli_env,
    doctor,
    index_args,
    run_cli,
    spawn_cli,
)

__all__ = ("run",)

_CONCURRENCY = 8
_BATCH = 16


def _index_args(corpus: Path, index_dir: Path) -> list[str]:
    return index_args(
        corpus, index_dir, "--concurrency", str(_CONCURRENCY), "--batch-size", str(_BATCH)
    )


def run(
    trials: int,
    workdir: Path,
    *,
    corpus: Path,
    latency: float = 0.05,
    checkpoint_every: int = 400,
    seed: int = 0,
) -> ScenarioResult:
    """Kill ``rag-async index`` ``trials`` times at random moments; check each rerun.

    Args:
        trials: How many kills.
        workdir: Scratch directory (index directories are created under it).
        corpus: The directory to index.
        latency: Seconds the fake server takes per embedding request.
        checkpoint_every: ``RAG_CHECKPOINT_EVERY`` of the runs.
        seed: Seed of the random kill times.
    """
    result = ScenarioResult("kill -9 during index, then rerun")
    rng = random.Random(seed)
    in_flight_bound = _CONCURRENCY * _BATCH
    most_reembedded = 0
    stages: dict[str, int] = {"loading": 0, "embedding": 0, "storing/saving": 0}
    with FakeOpenAIServer.run_in_thread(latency=latency) as server:
        env = cli_env(server.base_url, RAG_CHECKPOINT_EVERY=str(checkpoint_every))
        reference_dir = workdir / "reference"
        server.reset_stats()
        started = time.monotonic()
        clean = run_cli(_index_args(corpus, reference_dir), env=env)
        ended = time.monotonic()
        if clean.returncode != 0:
            result.record(False, f"the clean run failed ({clean.returncode}): {clean.stderr}")
            return result
        times = server.stats.request_times
        first, last = times[0] - started, times[-1] - started + latency
        duration = ended - started
        reference = chunk_ids(reference_dir)
        result.figures["clean run (s)"] = round(duration, 2)
        result.figures["chunks"] = len(reference)
        for number in range(trials):
            index_dir = workdir / f"trial-{number}"
            if number % 2 == 0:
                delay = rng.uniform(0.0, duration)
            else:
                delay = rng.uniform(last, duration)
            stage = (
                "loading" if delay < first else "embedding" if delay < last else "storing/saving"
            )
            stages[stage] += 1
            ok, failure, reembedded = _trial(
                server, env, corpus, index_dir, delay, reference, in_flight_bound, 2 * latency
            )
            most_reembedded = max(most_reembedded, reembedded)
            result.record(ok, f"trial {number} (kill at {delay:.2f} s, {stage}): {failure}")
    result.figures["kills per stage"] = stages
    result.figures["most texts embedded again"] = most_reembedded
    result.figures["texts in flight at most"] = in_flight_bound
    return result


def _trial(
    server: FakeOpenAIServer,
    env: dict[str, str],
    corpus: Path,
    index_dir: Path,
    delay: float,
    reference: set[str],
    in_flight_bound: int,
    latency_margin: float,
) -> tuple[bool, str, int]:
    """One kill and rerun; returns (survived, why not, texts embedded again)."""
    server.reset_stats()
    process = spawn_cli(_index_args(corpus, index_dir), env=env)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    time.sleep(latency_margin)  # requests the killed client sent may still be answered
    # Vectors the server sent that did not reach the cache were thrown away by the kill.
    thrown_away = server.stats.embedded_texts - cached_texts(index_dir)
    if (index_dir / "manifest.json").exists():
        # A kill between a checkpoint's writes (store, then sparse rows, then records) leaves
        # the store ahead, by design: readers still answer (the engine brings the sparse
        # index in step) and the next run reconciles the records. So: it must answer.
        asked = run_cli(["query", "ownership", "--index-dir", str(index_dir)], env=env)
        if asked.returncode != 0:
            return False, f"no answer after the kill: {asked.stderr[-500:]}", thrown_away
    rerun = run_cli(_index_args(corpus, index_dir), env=env)
    if rerun.returncode != 0:
        return False, f"the rerun failed ({rerun.returncode}): {rerun.stderr[-500:]}", thrown_away
    report = doctor(index_dir)
    if not report.get("healthy"):
        return False, f"unhealthy after the rerun: {report}", thrown_away
    ids = chunk_ids(index_dir)
    if ids != reference:
        missing, extra = len(reference - ids), len(ids - reference)
        return False, f"chunk ids differ: {missing} missing, {extra} extra", thrown_away
    if thrown_away > in_flight_bound:
        return (
            False,
            f"{thrown_away} texts embedded again (> {in_flight_bound} in flight)",
            thrown_away,
        )
    return True, "", thrown_away
