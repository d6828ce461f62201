"""Storage faults: disk full mid-save, a read-only index directory, every index file damaged.

Three sub-scenarios, each its own :class:`ScenarioResult`, drive the real CLI in
subprocesses against the local fake OpenAI-compatible server:

- ``disk full``: ``rag-async index`` of a grown corpus under a file-size limit
  (``RLIMIT_FSIZE``: writes past it fail with ``EFBIG``, as on a full disk), and, when
  this process may mount (root), on a tmpfs that is too small. Survived: a clear error
  (no traceback), the previous generation intact and queryable (the same answers as
  before, or those of the complete new corpus when the run got through), ``doctor``
  healthy (after ``--repair`` at most), and a rerun with space completes.
- ``read-only``: ``query`` and ``ask`` on an index directory mounted read-only (a
  private bind mount in a new mount namespace, so root is refused writes too). Survived:
  the same answers as with a writable directory, and not one byte changed.
- ``file faults``: each index file (manifest, FAISS file, docstore, records, sparse index,
  embedding cache, lock files) truncated, bit-flipped and deleted in turn. Survived: the
  query gives the answer from before the fault or a clear error that points to
  ``rag-async doctor`` (never a silently different answer); after ``doctor --repair`` the
  same holds and the doctor is healthy or says what it could not fix; after a re-index
  everything is healthy and the answers are those from before.

Run it with ``python -m benchmarks.reliability.storage --trials N --workdir DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.reliability import (
    PROJECT_ROOT,
    ScenarioResult,
    chunk_ids,
    cli_command,
    cli_env,
    doctor,
    run_cli,
)

__all__ = (
    "FAULTS",
    "INDEX_FILES",
    "Bench",
    "prepare",
    "run",
    "run_disk_full",
    "run_file_faults",
    "run_read_only",
)

FAULTS = ("truncate", "bitflip", "delete")
INDEX_FILES = (
    "manifest.json",
    "index.faiss",  # the current generation's index.<gen>.faiss
    "docstore.json",  # the current generation's docstore.<gen>.json
    "records.sqlite",
    "sparse.sqlite",
    "embedding_cache.sqlite",
    ".lock",
    ".run.lock",
)
QUESTIONS = ("how does the borrow checker track ownership in a cargo release build",)
_K = 8
_WORDS = (
    "ownership borrow checker lifetime reference mutable slice vector string cargo crate "
    "module trait generic closure iterator thread channel mutex async future pattern match "
    "enum struct method macro compiler release profile test error result option panic "
    "unsafe pointer heap stack memory allocation drop clone copy scope variable shadowing "
    "function return loop while range index hash map set sort filter map fold collect "
    "build run check doc publish workspace dependency version feature edition toolchain"
).split()


# -- the bench: a corpus, its index, the answers before any fault ---------------------------


@dataclass(frozen=True, slots=True)
class Bench:
    """What every trial starts from.

    Attributes:
        env: The environment of the CLI subprocesses.
        corpus: The corpus: ``topic-*.md``, which the baseline index holds, and
            ``extra-*.md``, which a disk-full run tries to add.
        baseline: The index of the topic files (trials copy it, never change it).
        answers: ``query`` answers of ``baseline``, one per question.
        grown_answers: The answers of a complete index of the whole corpus.
        ids: The chunk ids of ``baseline``.
        grown_ids: The chunk ids of a complete index of the whole corpus.
    """

    env: dict[str, str]
    corpus: Path
    baseline: Path
    answers: tuple[Any, ...]
    grown_answers: tuple[Any, ...]
    ids: frozenset[str]
    grown_ids: frozenset[str]


def write_corpus(
    root: Path, files: int, *, seed: int, start: int = 0, prefix: str = "topic"
) -> None:
    """Write ``files`` Markdown files of seeded pseudo-prose (a few chunks each)."""
    root.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + files):
        rng = random.Random(f"{seed}:{n}")
        paragraphs = [
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90))).capitalize() + "."
            for _ in range(rng.randint(6, 10))
        ]
        text = f"# Topic {n}\n\n" + "\n\n".join(paragraphs) + "\n"
        (root / f"{prefix}-{n:02d}.md").write_text(text, "utf-8")


def prepare(workdir: Path, env: dict[str, str], *, seed: int = 0) -> Bench:
    """Build the corpus, its index and the grown corpus's index; take their answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    write_corpus(corpus, 6, seed=seed)
    write_corpus(corpus, 6, seed=seed, start=6, prefix="extra")
    baseline, full = workdir / "baseline", workdir / "grown-index"
    for folder, grown in ((baseline, False), (full, True)):
        shutil.rmtree(folder, ignore_errors=True)
        done = index(corpus, folder, env, grown=grown)
        if done.returncode != 0:
            raise SystemExit(f"could not build {folder}: {done.stderr[-2000:]}")
    before, grown_before = answers(baseline, env).value, answers(full, env).value
    if before is None or grown_before is None:
        raise SystemExit(f"the fresh indexes in {workdir} do not answer")
    return Bench(
        env=env,
        corpus=corpus,
        baseline=baseline,
        answers=before,
        grown_answers=grown_before,
        ids=frozenset(chunk_ids(baseline)),
        grown_ids=frozenset(chunk_ids(full)),
    )


def index_args(source: Path, index_dir: Path, *, grown: bool) -> list[str]:
    """``index SOURCE --index-dir INDEX_DIR``, without the extra files unless ``grown``."""
    args = ["index", str(source), "--index-dir", str(index_dir), "--no-progress", "--json"]
    return args if grown else [*args, "--exclude", "extra-*.md"]


def index(
    source: Path, index_dir: Path, env: dict[str, str], *, grown: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``rag-async index`` (see :func:`index_args`)."""
    return run_cli(index_args(source, index_dir, grown=grown), env=env)


@dataclass(frozen=True, slots=True)
class Answers:
    """What ``query`` gave for every question: the answers, or the first failure."""

    value: tuple[Any, ...] | None
    error: str = ""
    clear: bool = False
    names: str = ""

    def matches(self, *expected: tuple[Any, ...]) -> bool:
        """The answers equal one of ``expected``."""
        return self.value is not None and any(self.value == e for e in expected)


def answers(
    index_dir: Path, env: dict[str, str], wrap: Sequence[str] = (), command: str = "query"
) -> Answers:
    """Ask every question; the answers (ids, texts, rounded scores) or the error.

    An error is *clear* when the command exits with 2 without a traceback and its
    message points to ``rag-async doctor`` or says to build the index.
    """
    results = []
    for question in QUESTIONS:
        args = [command, question, "--index-dir", str(index_dir), "--json", "-k", str(_K)]
        done = _run([*wrap, *cli_command(*args)], env)
        if done.returncode != 0:
            text = (done.stderr + done.stdout).strip()
            clear = (
                done.returncode == 2
                and "Traceback" not in text
                and ("rag-async doctor" in " ".join(text.split()) or "rag-async index" in text)
            )
            return Answers(None, text[-1500:], clear, _named_file(text, index_dir))
        results.append(_comparable(json.loads(done.stdout), command))
    return Answers(tuple(results))


def _comparable(payload: Any, command: str) -> Any:
    if command == "ask":
        return (payload["answer"], payload["sources"], payload["error"])
    return [
        (
            row["id"],
            row["text"],
            {k: None if v is None else round(float(v), 4) for k, v in row["scores"].items()},
        )
        for row in payload
    ]


_INDEX_FILE_NAME = re.compile(
    r"(?:manifest\.json|index\.\d+\.faiss|docstore\.\d+\.json|records\.sqlite"
    r"|sparse\.sqlite|embedding_cache\.sqlite|\.run\.lock|\.lock)"
)


def _named_file(text: str, index_dir: Path) -> str:
    """The index files an error message about ``index_dir`` names, comma-separated."""
    flat = "".join(text.split())  # rich wraps long paths over lines
    if "".join(str(index_dir).split()) not in flat:
        return ""
    return ",".join(sorted({m.group(0) for m in _INDEX_FILE_NAME.finditer(flat)}))


def _run(
    argv: Sequence[str], env: dict[str, str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=300, check=False, **kwargs,
    )  # fmt: skip


def _copy_baseline(bench: Bench, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bench.baseline, target)
    return target


def _doctor_repair(index_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    args = ["doctor", "--index-dir", str(index_dir), "--json", "--repair"]
    done = run_cli(args, env=env)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"healthy": False, "findings": [], "output": (done.stdout + done.stderr)[-1500:]}
    return report


def _unfixed(report: dict[str, Any]) -> list[str]:
    return [
        f"{f['check']}: {f.get('file')}: {f['message'][:200]}"
        for f in report.get("findings", [])
        if f["level"] == "error" and not f["repaired"]
    ]


def _after_rerun(bench: Bench, index_dir: Path, *, grown: bool) -> str:
    """Re-index; '' when healthy with the answers of a clean index, else why."""
    done = index(bench.corpus, index_dir, bench.env, grown=grown)
    if done.returncode != 0:
        return f"re-index exited {done.returncode}: {done.stderr[-300:]}"
    report = doctor(index_dir, env=bench.env)
    if not report.get("healthy"):
        return f"unhealthy after re-index: {_unfixed(report) or report}"
    expected = bench.grown_answers if grown else bench.answers
    got = answers(index_dir, bench.env)
    if not got.matches(expected):
        return f"after re-index the answers differ ({got.error[-200:]})"
    if chunk_ids(index_dir) != (bench.grown_ids if grown else bench.ids):
        return "after re-index the chunk ids differ from a clean run's"
    return ""


# -- disk full -------------------------------------------------------------------------------


def _fsize_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _spread(low: int, high: int, trials: int) -> list[int]:
    """``trials`` values from ``low`` to ``high``, evenly on a log scale."""
    if trials == 1:
        return [int((low * high) ** 0.5)]
    return [int(low * (high / low) ** (i / (trials - 1))) for i in range(trials)]


def _limits(bench: Bench, trials: int) -> list[int]:
    """File-size limits from half the smallest index file to twice the largest.

    The grown corpus makes every file of the index bigger (the SQLite ones through their
    write-ahead logs first), so each limit stops the run at another file.
    """
    sizes = [p.stat().st_size for p in bench.baseline.iterdir() if p.stat().st_size > 0]
    return _spread(min(sizes) // 2, max(sizes) * 8, trials)


def run_disk_full(bench: Bench, trials: int, workdir: Path) -> list[ScenarioResult]:
    """Disk full mid-run: a file-size limit, and a too-small tmpfs when mountable."""
    fsize = ScenarioResult("storage: disk full (file-size limit)")
    stopped_at: dict[str, int] = {}
    for i, limit in enumerate(_limits(bench, trials)):
        target = _copy_baseline(bench, workdir / f"disk-full-{i}")
        failure = _disk_full_trial(bench, target, {"preexec_fn": _fsize_limit(limit)}, stopped_at)
        fsize.record(not failure, f"limit {limit} B: {failure}")
        shutil.rmtree(target, ignore_errors=True)
    fsize.figures["runs stopped by the limit, by file named in the error"] = stopped_at
    results = [fsize]
    tmpfs = ScenarioResult("storage: disk full (small tmpfs)")
    if not _can_mount():
        tmpfs.figures["not run"] = "mounting a tmpfs needs root (CAP_SYS_ADMIN)"
        return [*results, tmpfs]
    stopped_tmpfs: dict[str, int] = {}
    used = sum(-(-p.stat().st_size // 4096) * 4096 for p in bench.baseline.iterdir())
    enough = _calibrate_tmpfs(bench, workdir, used)
    tmpfs.figures["free space the grown run needs (bytes, bisected)"] = enough
    # The last ~160 KiB before "enough" stop the run in the SQLite logs, then in the save
    # of the new generation (docstore, FAISS file, manifest), then in the record commit.
    low = max(4096, enough - (160 << 10))
    for i in range(trials):
        slack = low + (enough - 4096 - low) * i // max(trials - 1, 1)
        mount_point = workdir / f"tmpfs-{i}"
        with _tmpfs(mount_point, used + slack):
            target = _copy_baseline(bench, mount_point / "index")
            failure = _disk_full_trial(bench, target, {}, stopped_tmpfs, grow=mount_point)
        tmpfs.record(not failure, f"tmpfs with {slack} B free: {failure}")
    tmpfs.figures["runs stopped by the full disk, by file named in the error"] = stopped_tmpfs
    tmpfs.figures["an error message per file named (both kinds)"] = dict(_EXAMPLES)
    return [*results, tmpfs]


def _calibrate_tmpfs(bench: Bench, workdir: Path, used: int) -> int:
    """The free space (to 4 KiB) with which the grown run just completes on a tmpfs."""
    low, high = 0, 4 << 20
    while high - low > 4096:
        middle = (low + high) // 2 // 4096 * 4096
        mount_point = workdir / "tmpfs-calibration"
        with _tmpfs(mount_point, used + middle):
            target = _copy_baseline(bench, mount_point / "index")
            done = _run(cli_command(*index_args(bench.corpus, target, grown=True)), bench.env)
        if done.returncode == 0:
            high = middle
        else:
            low = middle
    return high


_EXAMPLES: dict[str, str] = {}  # an error message per file named, for the report


def _disk_full_trial(
    bench: Bench,
    target: Path,
    limit: dict[str, Any],
    stopped_at: dict[str, int],
    grow: Path | None = None,
) -> str:
    args = index_args(bench.corpus, target, grown=True)
    done = _run(cli_command(*args), bench.env, **limit)
    text = (done.stderr + done.stdout).strip()
    if done.returncode == 0:
        stopped_at["(not stopped: enough room)"] = (
            stopped_at.get("(not stopped: enough room)", 0) + 1
        )
    elif done.returncode not in (2, 3) or "Traceback" in text:
        return f"no clear error: exit {done.returncode}: {text[-400:]}"
    else:
        named = _named_file(text, target) or "(no file named)"
        stopped_at[named] = stopped_at.get(named, 0) + 1
        _EXAMPLES.setdefault(named, " ".join(text.split())[-400:])
    if grow is not None:
        _remount(grow, 64 << 20)  # space again, for the checks and the rerun
    got = answers(target, bench.env)
    if not got.matches(bench.answers, bench.grown_answers):
        why = got.error[-300:] if got.value is None else "different answers"
        return f"exit {done.returncode}, then the index does not answer as before: {why}"
    report = doctor(target, env=bench.env)
    if not report.get("healthy") and not _doctor_repair(target, bench.env).get("healthy"):
        return (
            f"exit {done.returncode}, then doctor unhealthy even after --repair: {_unfixed(report)}"
        )
    return _after_rerun(bench, target, grown=True)


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "-o",
         "size=1m", "tmpfs", "/mnt"],
        capture_output=True, check=False,
    )  # fmt: skip
    return probe.returncode == 0


@contextmanager
def _tmpfs(mount_point: Path, size: int) -> Iterator[None]:
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        shutil.rmtree(mount_point, ignore_errors=True)


def _remount(mount_point: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount_point)], check=True)


# -- read-only -------------------------------------------------------------------------------


def _read_only_wrapper(index_dir: Path) -> list[str] | None:
    """Argv prefix that runs a command with ``index_dir`` bind-mounted read-only.

    The mount lives in a private mount namespace of that one command (nothing to undo),
    and a read-only mount refuses root's writes too. ``None`` when it cannot be done here.
    """
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(index_dir)]
    if shutil.which("unshare") is None:
        return None
    probe = _run(
        [*wrap, "sh", "-c", f'! touch "{index_dir}/.probe" 2>/dev/null'], os.environ.copy()
    )
    (index_dir / ".probe").unlink(missing_ok=True)
    return wrap if probe.returncode == 0 else None


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_read_only(bench: Bench, trials: int, workdir: Path) -> ScenarioResult:
    """``query`` and ``ask`` on a read-only index directory: same answers, nothing written.

    Trials alternate between a clean copy of the index and one whose sparse index lags
    the store by a chunk (what a crash between the two commits leaves).
    """
    result = ScenarioResult("storage: read-only index directory")
    probe = _copy_baseline(bench, workdir / "read-only-probe")
    wrap = _read_only_wrapper(probe)
    shutil.rmtree(probe, ignore_errors=True)
    if wrap is None:
        result.figures["not run"] = (
            "no way to make a directory read-only for this user here (needs a private "
            "read-only bind mount: unshare + mount as root)"
        )
        return result
    expected_ask = answers(bench.baseline, bench.env, command="ask")
    for i in range(trials):
        target = _copy_baseline(bench, workdir / f"read-only-{i}")
        variant = "clean" if i % 2 == 0 else "lagging sparse index"
        if i % 2:
            _drop_one_sparse_row(target)
        wrap = _read_only_wrapper(target) or []
        before = _fingerprint(target)
        got = answers(target, bench.env, wrap)
        asked = answers(target, bench.env, wrap, command="ask")
        after = _fingerprint(target)
        failure = ""
        if not got.matches(bench.answers):
            failure = f"query: {got.error[-300:] or 'different answers'}"
        elif expected_ask.value is not None and not asked.matches(expected_ask.value):
            failure = f"ask: {asked.error[-300:] or 'different answers'}"
        elif before != after:
            failure = f"files changed: {sorted(set(before.items()) ^ set(after.items()))}"
        result.record(not failure, f"{variant}: {failure}")
        shutil.rmtree(target, ignore_errors=True)
    result.figures["method"] = "private read-only bind mount (unshare -m), run as root"
    return result


def _drop_one_sparse_row(index_dir: Path) -> None:
    import sqlite3

    with sqlite3.connect(index_dir / "sparse.sqlite") as conn:
        conn.execute("DELETE FROM chunks WHERE pk = (SELECT MIN(pk) FROM chunks)")
    conn.close()


# -- every file damaged in turn ------------------------------------------------------------


def _resolve(index_dir: Path, name: str) -> Path:
    if name in ("index.faiss", "docstore.json"):
        stem, suffix = name.split(".")
        return next(index_dir.glob(f"{stem}.*.{suffix}"))
    return index_dir / name


def damage(file: Path, fault: str, rng: random.Random) -> str | None:
    """Apply ``fault`` to ``file``; what was done, or ``None`` when it does not apply."""
    if fault == "delete":
        file.unlink()
        return "deleted"
    data = file.read_bytes()
    if not data:
        return None  # an empty file (a lock) cannot be truncated or bit-flipped
    if fault == "truncate":
        size = rng.randrange(len(data))
        file.write_bytes(data[:size])
        return f"truncated from {len(data)} to {size} B"
    offset, bit = rng.randrange(len(data)), rng.randrange(8)
    flipped = bytearray(data)
    flipped[offset] ^= 1 << bit
    file.write_bytes(bytes(flipped))
    return f"bit {bit} of byte {offset} of {len(data)} flipped"


def run_file_faults(
    bench: Bench,
    trials: int,
    workdir: Path,
    *,
    files: Sequence[str] = INDEX_FILES,
    faults: Sequence[str] = FAULTS,
    seed: int = 0,
    rerun: bool = True,
) -> ScenarioResult:
    """Each of ``files`` × ``faults``, ``trials`` times (other offsets and lengths each time)."""
    result = ScenarioResult("storage: index files truncated / bit-flipped / deleted")
    per_case: dict[str, list[int]] = {}
    outcomes: dict[str, int] = {}
    skipped: list[str] = []
    seen: dict[str, set[str]] = {}
    for name in files:
        for fault in faults:
            case = f"{name} {fault}"
            for trial in range(trials):
                rng = random.Random(f"{seed}:{case}:{trial}")
                target = _copy_baseline(bench, workdir / "fault")
                done = damage(_resolve(target, name), fault, rng)
                if done is None:
                    skipped.append(case)
                    break
                failure, outcome = _fault_trial(bench, target, rerun=rerun)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                seen.setdefault(case, set()).add(outcome)
                result.record(not failure, f"{case} ({done}): {failure}")
                tally = per_case.setdefault(case, [0, 0])
                tally[0] += 1
                tally[1] += not failure
    shutil.rmtree(workdir / "fault", ignore_errors=True)
    result.figures["trials / survived per file and fault"] = {
        case: f"{survived}/{tried}" for case, (tried, survived) in per_case.items()
    }
    result.figures["first query after the fault"] = outcomes
    result.figures["first query after the fault, per case"] = {
        case: sorted(found) for case, found in seen.items()
    }
    result.figures["not applicable (empty file)"] = sorted(set(skipped))
    return result


def _fault_trial(bench: Bench, target: Path, *, rerun: bool) -> tuple[str, str]:
    """One damaged index: query, repair, query, re-index. ('' or why it failed, outcome)."""
    first = answers(target, bench.env)
    if first.value is not None:
        outcome = "same answers" if first.matches(bench.answers) else "SILENTLY DIFFERENT"
        if outcome != "same answers":
            return "a silently different answer to the query", outcome
    elif not first.clear:
        return f"an unclear error: {first.error[-400:]}", "unclear error"
    else:
        outcome = f"clear error naming {first.names or 'no index file'}"
    report = _doctor_repair(target, bench.env)
    second = answers(target, bench.env)
    if second.value is not None and not second.matches(bench.answers):
        return "after doctor --repair, a silently different answer", outcome
    if second.value is None and not second.clear:
        return f"after doctor --repair, an unclear error: {second.error[-300:]}", outcome
    unfixed = _unfixed(report)
    if not report.get("healthy") and not unfixed:
        return f"doctor --repair failed without saying why: {report}", outcome
    if report.get("healthy") and second.value is None:
        return f"doctor --repair says healthy but query fails: {second.error[-300:]}", outcome
    if rerun:
        failure = _after_rerun(bench, target, grown=False)
        if failure:
            return failure, outcome
    return "", outcome


# -- the scenario ------------------------------------------------------------------------------


def run(
    trials: int,
    workdir: Path,
    *,
    base_url: str | None = None,
    files: Sequence[str] = INDEX_FILES,
    faults: Sequence[str] = FAULTS,
    seed: int = 0,
) -> list[ScenarioResult]:
    """Run all three sub-scenarios (four results: disk full has two kinds).

    Args:
        trials: Trials of each sub-scenario (per file and fault for the file faults).
        workdir: Scratch directory (created).
        base_url: An OpenAI-compatible server to use; by default a local fake one is
            started for the run.
        files: The index files to damage (names of :data:`INDEX_FILES`).
        faults: The faults to apply (of :data:`FAULTS`).
        seed: Seeds the corpus, the offsets and the lengths.
    """
    server: Any = nullcontext(None)
    if base_url is None:
        from langchain_rag_async.testing.openai_server import FakeOpenAIServer

        server = FakeOpenAIServer.run_in_thread()
    with server as running:
        env = cli_env(base_url or running.base_url)
        bench = prepare(workdir, env, seed=seed)
        return [
            *run_disk_full(bench, trials, workdir),
            run_read_only(bench, trials, workdir),
            run_file_faults(bench, trials, workdir, files=files, faults=faults, seed=seed),
        ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario and print each sub-scenario's tally as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/rag-storage-chaos"))
    parser.add_argument("--file", action="append", default=[], choices=INDEX_FILES)
    parser.add_argument("--fault", action="append", default=[], choices=FAULTS)
    args = parser.parse_args(argv)
    results = run(
        args.trials, args.workdir, files=args.file or INDEX_FILES, faults=args.fault or FAULTS
    )
    for r in results:
        row = {"name": r.name, "trials": r.trials, "survived": r.survived}
        print(json.dumps({**row, "failures": r.failures, "figures": r.figures}, indent=2))
    return 0 if all(r.all_survived or not r.trials for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
