"""Hostile corpus: a generator of the files that break loaders, and the scenario that indexes it.

:func:`make_corpus` writes, into a fresh directory, binary files under text names, empty
files, one huge file, undecodable and BOM-less UTF-16 text, NUL bytes, a single 10 MB line,
thousands of tiny files, 40-deep folders, symbolic-link loops and links out of the root,
names with newlines and with invalid UTF-8 bytes, plus a few normal Markdown files whose
chunks must be indexed. Nothing large is checked in: sizes are parameters.

:func:`run` indexes such a corpus with the real ``rag-async index`` in a subprocess, while a
:class:`Mutator` thread deletes, rewrites and grows some files, and checks each trial: the run
finishes with exit code 3 (files failed, each with its reason), every bad file is reported
with the reason expected of it, the good files hold exactly the chunk ids a clean split gives
and are found by ``rag-async query``, ``rag-async doctor`` is healthy, the child's peak RSS
stays under a bound, and a quiet rerun converges.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.reliability import ScenarioResult, cli_command, cli_env, doctor, run_cli
from benchmarks.timing import high_water_kb

__all__ = (
    "ChildRun",
    "CorpusSizes",
    "HostileCorpus",
    "Mutator",
    "make_corpus",
    "run",
    "run_measured",
)

MB = 1_000_000
_WORDS = (
    "async loader chunk vector index query embed store split token batch queue record "
    "manifest checksum generation doctor signal corpus symlink folder binary decode"
).split()
_PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
_ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00"


@dataclass(frozen=True, kw_only=True, slots=True)
class CorpusSizes:
    """How big the hostile corpus is.

    Attributes:
        big_bytes: Size of the huge text file (``big/huge.txt``).
        line_bytes: Size of the file that is one single line (``longline/one-line.txt``).
        tiny_files: How many tiny files ``tiny/`` holds.
        depth: How deep ``deep/`` nests folders.
        volatile_files: Files the :class:`Mutator` deletes, rewrites and grows.
    """

    big_bytes: int = 200 * MB
    line_bytes: int = 10 * MB
    tiny_files: int = 10_000
    depth: int = 40
    volatile_files: int = 24

    @classmethod
    def small(cls) -> CorpusSizes:
        """Sizes for the fast subset: every kind of file, a few seconds to index."""
        return cls(big_bytes=3 * MB, line_bytes=MB, tiny_files=300, depth=40, volatile_files=12)


@dataclass(slots=True)
class HostileCorpus:
    """A generated corpus and what indexing it must give.

    Attributes:
        root: The directory to index.
        outside: A directory next to the root that links point into.
        good: Files whose chunks must be indexed (relative path -> a word found only there).
        empty: Files that are read and give no chunks, silently.
        failed: Files the run must report (relative path or its printable form -> a
            substring of the reason).
        failed_under: Folders under which exactly one failure must be reported (its
            exact path depends on where the corpus lies) -> a substring of the reason.
        ignored: Entries the walk must pass over silently (unsupported names, links to
            directories, a FIFO, a link to ``/dev/zero``).
        tiny: Relative paths of the tiny files (all must be indexed).
        volatile: Relative paths of the files the :class:`Mutator` plays with.
        big: The huge file's relative path.
    """

    root: Path
    outside: Path
    good: dict[str, str] = field(default_factory=dict)
    empty: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    failed_under: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    tiny: list[str] = field(default_factory=list)
    volatile: list[str] = field(default_factory=list)
    big: str = ""

    def source(self, rel: str) -> str:
        """The ``source`` the index stores for ``rel`` (the root resolved, the link kept)."""
        return str(self.root.resolve() / rel)


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def _markdown(title: str, marker: str, rng: random.Random, paragraphs: int = 4) -> str:
    body = "\n\n".join(_words(rng, 60) for _ in range(paragraphs))
    return f"# {title}\n\nThe marker word {marker} appears here only.\n\n{body}\n"


def _write_big_text(path: Path, size: int, rng: random.Random) -> None:
    """Write ``size`` bytes of lines of words, one 1 MB block repeated (fast, no big buffer)."""
    lines: list[str] = []
    block_size = 0
    while block_size < min(size, MB):
        line = _words(rng, 12) + "\n"
        lines.append(line)
        block_size += len(line)
    block = "".join(lines).encode()
    with path.open("wb") as handle:
        remaining = size
        while remaining > 0:
            piece = block[:remaining]
            handle.write(piece)
            remaining -= len(piece)


def _single_line(size: int, rng: random.Random, marker: str) -> bytes:
    """One line of ``size`` bytes: words, no newline, the marker near the end."""
    words = _words(rng, 2000).encode() + b" "
    tail = f" {marker} end".encode()
    body = (words * (size // len(words) + 1))[: size - len(tail)]
    return body + tail


def make_corpus(workdir: Path, sizes: CorpusSizes | None = None, *, seed: int = 0) -> HostileCorpus:
    """Write a hostile corpus under ``workdir`` (``corpus/`` and ``outside/``).

    Args:
        workdir: An empty or scratch directory; ``corpus`` and ``outside`` are replaced.
        sizes: How big; :class:`CorpusSizes` defaults (200 MB, 10,000 files) if None.
        seed: Seeds the generated words (the files are the same for the same seed).

    Returns:
        The corpus and what indexing it must give.
    """
    sizes = sizes or CorpusSizes()
    rng = random.Random(seed)
    root, outside = workdir / "corpus", workdir / "outside"
    for directory in (root, outside):
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
    corpus = HostileCorpus(root=root, outside=outside)
    _good_files(corpus, rng, sizes)
    _binary_and_empty(corpus, rng)
    _encodings(corpus, rng)
    _big_files(corpus, rng, sizes)
    _tiny_files(corpus, sizes)
    _links(corpus, rng)
    _odd_names(corpus, rng)
    _volatile_files(corpus, sizes)
    return corpus


def _put(corpus: HostileCorpus, rel: str, data: bytes | str) -> Path:
    path = corpus.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _good_files(corpus: HostileCorpus, rng: random.Random, sizes: CorpusSizes) -> None:
    for number in range(5):
        marker = f"goodmarker{number}q"
        rel = f"good/guide-{number}.md"
        _put(corpus, rel, _markdown(f"Guide {number}", marker, rng))
        corpus.good[rel] = marker
    deep = "/".join(f"d{level:02d}" for level in range(1, sizes.depth + 1))
    rel = f"deep/{deep}/bottom.md"
    _put(corpus, rel, _markdown("Bottom", "deepmarkerq", rng))
    corpus.good[rel] = "deepmarkerq"
    _path_max_tree(corpus.root / "longpath", sizes.depth)
    corpus.failed_under["longpath/"] = "longer than the system allows"


def _path_max_tree(top: Path, depth: int) -> None:
    """``depth`` folders of 110-byte names (past PATH_MAX from 38 levels), a file at the end."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    try:
        for level in range(max(depth, 38)):
            name = f"level{level:02d}" + "x" * 103
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        file = os.open("bottom.md", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.write(file, b"# Past PATH_MAX\n\nNo absolute path reaches this file.\n")
        os.close(file)
    finally:
        os.close(fd)


def _binary_and_empty(corpus: HostileCorpus, rng: random.Random) -> None:
    noise = bytes(rng.randrange(256) for _ in range(4096))
    _put(corpus, "binary/image.md", _PNG + noise)
    corpus.failed["binary/image.md"] = "binary file"
    _put(corpus, "binary/program.txt", _ELF + bytes(64) + noise)
    corpus.failed["binary/program.txt"] = "binary file"
    _put(corpus, "binary/photo.png", _PNG + noise)  # not a supported name: never listed
    corpus.ignored.append("binary/photo.png")
    _put(corpus, "binary/controls.txt", bytes(range(1, 9)) * 512)  # no NUL, all controls
    corpus.failed["binary/controls.txt"] = "binary file (control characters)"
    _put(corpus, "empty/zero.md", b"")
    _put(corpus, "empty/blank.txt", b" \n\t\n   \n")
    corpus.empty += ["empty/zero.md", "empty/blank.txt"]


def _encodings(corpus: HostileCorpus, rng: random.Random) -> None:
    text = _markdown("UTF-16", "utfsixteenmarkerq", rng)
    _put(corpus, "encoding/utf16-nobom.md", text.encode("utf-16-le"))
    corpus.good["encoding/utf16-nobom.md"] = "utfsixteenmarkerq"
    latin = _markdown("Latin-1", "latinmarkerq", rng).replace("here", "h\xe9r\xe9 \xe0 voil\xe0")
    _put(corpus, "encoding/latin1.md", latin.encode("latin-1"))  # invalid UTF-8, decodable
    corpus.good["encoding/latin1.md"] = "latinmarkerq"
    # Bytes no text encoding explains: UTF-8 lead bytes without continuation, C1 noise.
    garbage = bytes(rng.choice([0xC3, 0xE2, 0x80, 0x9D, 0xFF, 0xFE, 0x41]) for _ in range(6000))
    _put(corpus, "encoding/invalid-utf8.txt", garbage)
    corpus.failed["encoding/invalid-utf8.txt"] = ""  # decoded or rejected; checked loosely
    early = _markdown("NUL", "nulearlymarkerq", rng).encode()
    _put(corpus, "encoding/nul-early.md", early[:40] + b"\x00" + early[40:])
    corpus.failed["encoding/nul-early.md"] = "binary file (NUL bytes)"
    late = _markdown("Late NUL", "nullatemarkerq", rng, paragraphs=40).encode()
    _put(corpus, "encoding/nul-late.md", late + b"\x00\x00 trailer text\n")
    corpus.good["encoding/nul-late.md"] = "nullatemarkerq"


def _big_files(corpus: HostileCorpus, rng: random.Random, sizes: CorpusSizes) -> None:
    corpus.big = "big/huge.txt"
    (corpus.root / "big").mkdir()
    _write_big_text(corpus.root / corpus.big, sizes.big_bytes, rng)
    corpus.failed[corpus.big] = "exceeds max_file_size"
    _put(corpus, "longline/one-line.txt", _single_line(sizes.line_bytes, rng, "longlinemarkerq"))
    corpus.good["longline/one-line.txt"] = "longlinemarkerq"


def _tiny_files(corpus: HostileCorpus, sizes: CorpusSizes) -> None:
    tiny = corpus.root / "tiny"
    tiny.mkdir()
    for number in range(sizes.tiny_files):
        rel = f"tiny/t{number:05d}.txt"
        (corpus.root / rel).write_bytes(f"tiny note {number} of the hostile corpus\n".encode())
        corpus.tiny.append(rel)


def _links(corpus: HostileCorpus, rng: random.Random) -> None:
    loops = corpus.root / "links"
    loops.mkdir()
    (loops / "self-dir.md").symlink_to(".")  # a directory link: never followed
    (loops / "parent").symlink_to("..")
    (loops / "ping.md").symlink_to("pong.md")  # a loop of file links: ELOOP
    (loops / "pong.md").symlink_to("ping.md")
    (loops / "dangling.md").symlink_to("missing-target.md")
    corpus.ignored += ["links/self-dir.md", "links/parent"]
    corpus.failed["links/ping.md"] = "symbolic link loop"
    corpus.failed["links/pong.md"] = "symbolic link loop"
    corpus.failed["links/dangling.md"] = "broken symbolic link"
    (corpus.outside / "secret.md").write_text(_markdown("Outside", "outsidemarkerq", rng))
    (loops / "escape.md").symlink_to(corpus.outside / "secret.md")
    (loops / "escape-dir").symlink_to(corpus.outside)
    # The CLI follows links to files wherever they point (only the server confines them).
    corpus.good["links/escape.md"] = "outsidemarkerq"
    corpus.ignored.append("links/escape-dir")
    (loops / "zero.md").symlink_to("/dev/zero")  # a device: never read
    os.mkfifo(loops / "pipe.md")  # a FIFO: opening it would block forever
    corpus.ignored += ["links/zero.md", "links/pipe.md"]


def _odd_names(corpus: HostileCorpus, rng: random.Random) -> None:
    names = corpus.root / "names"
    names.mkdir()
    _put(corpus, "names/new\nline.md", _markdown("Newline", "newlinemarkerq", rng))
    corpus.good["names/new\nline.md"] = "newlinemarkerq"
    _put(corpus, "names/bin\nary.md", _PNG + bytes(512))
    corpus.failed["names/bin\nary.md"] = "binary file"
    raw_root = os.fsencode(names)
    with open(raw_root + b"/bad-\xff\xfe-name.md", "wb") as handle:
        handle.write(_markdown("Bad name", "badnamemarkerq", rng).encode())
    corpus.failed["names/bad-\\xff\\xfe-name.md"] = "not valid UTF-8"
    os.mkdir(raw_root + b"/dir-\xe9")
    with open(raw_root + b"/dir-\xe9/inside.md", "wb") as handle:
        handle.write(b"# inside a badly named folder\n")
    corpus.failed["names/dir-\\xe9"] = "not valid UTF-8"


def _volatile_files(corpus: HostileCorpus, sizes: CorpusSizes) -> None:
    for number in range(sizes.volatile_files):
        rel = f"volatile/v{number:03d}.md"
        _put(corpus, rel, Mutator.content(number, 0))
        corpus.volatile.append(rel)


# ------------------------------------------------------------------------ the mutator


class Mutator:
    """A thread that deletes, rewrites and grows the volatile files while the CLI reads them.

    File ``n`` is treated by ``n % 4``: 0 deleted and re-created in turn, 1 replaced
    atomically (``os.replace``), 2 truncated and rewritten in place in two halves (a reader
    may see a torn file), 3 appended to. It works in rounds until :meth:`finish`, which
    leaves a known final state: files with ``n % 4 == 0`` deleted, the others holding
    :meth:`content` of round :data:`FINAL`.
    """

    FINAL = 9999

    def __init__(self, corpus: HostileCorpus, *, pause: float = 0.01) -> None:
        self.corpus = corpus
        self.pause = pause
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hostile-mutator", daemon=True)

    @staticmethod
    def content(number: int, round_: int) -> str:
        """The text of volatile file ``number`` after round ``round_`` (sizes vary)."""
        rng = random.Random(number * 100_003 + round_)
        return _markdown(f"Volatile {number}", f"volatile{number}r{round_}q", rng, 1 + round_ % 5)

    def start(self) -> Mutator:
        """Start mutating in the background."""
        self._thread.start()
        return self

    def finish(self) -> None:
        """Stop, wait for the thread, then write the final state."""
        self._stop.set()
        self._thread.join()
        for number, rel in enumerate(self.corpus.volatile):
            path = self.corpus.root / rel
            if number % 4 == 0:
                path.unlink(missing_ok=True)
            else:
                path.write_text(self.content(number, self.FINAL))

    def final_files(self) -> list[str]:
        """The volatile files that exist after :meth:`finish`."""
        return [rel for n, rel in enumerate(self.corpus.volatile) if n % 4]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.rounds += 1
            for number, rel in enumerate(self.corpus.volatile):
                self._mutate(number, self.corpus.root / rel)
            time.sleep(self.pause)

    def _mutate(self, number: int, path: Path) -> None:
        text = self.content(number, self.rounds).encode()
        kind = number % 4
        if kind == 0:
            if self.rounds % 2:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(text)
        elif kind == 1:
            temporary = path.with_name(f".{path.name}.tmp")  # hidden: the walk skips it
            temporary.write_bytes(text)
            os.replace(temporary, path)
        elif kind == 2:
            with path.open("r+b") as handle:
                handle.truncate(0)
                handle.write(text[: len(text) // 2])
                handle.flush()
                handle.write(text[len(text) // 2 :])
        else:
            with path.open("ab") as handle:
                handle.write(f"\nappended in round {self.rounds}\n".encode())
            if self.rounds % 50 == 0:
                path.write_bytes(text)  # keep it from growing without end


# ------------------------------------------------------------------------ running the CLI


@dataclass(frozen=True, slots=True)
class ChildRun:
    """A finished ``rag-async`` subprocess, with its own peak memory.

    Attributes:
        returncode: Exit code, or ``None`` when it was killed after the timeout.
        stdout: Its standard output.
        stderr: Its standard error.
        seconds: Wall time.
        peak_rss_mb: The child's own peak resident set size (``VmHWM``), in MiB.
    """

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    def json(self) -> Any:
        """Standard output parsed as JSON (``None`` when it is not JSON)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError:
            return None


def run_measured(
    args: list[str], *, env: Mapping[str, str], workdir: Path, timeout: float
) -> ChildRun:
    """Run ``rag-async ARGS`` and measure the child's own peak RSS (``VmHWM``).

    The peak is the high-water mark of the child's memory after ``exec``
    (``/proc/PID/status`` ``VmHWM``, read every 20 ms until it exits). Not ``wait4``'s
    ``ru_maxrss``: that also counts the pages the child shared with this process between
    ``fork`` and ``exec``, so a large test process (one that loaded the local model, say)
    would be reported as the child's peak. The child is killed after ``timeout`` seconds.
    """
    out_path, err_path = workdir / "child.out", workdir / "child.err"
    started = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(cli_command(*args), env=dict(env), stdout=out, stderr=err)
    deadline = started + timeout
    peak_kb = 0
    returncode: int | None = None
    while True:
        peak_kb = max(peak_kb, high_water_kb(process.pid))
        code = process.poll()
        if code is not None:
            returncode = code
            break
        if time.perf_counter() > deadline:
            process.kill()
            process.wait()
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    return ChildRun(
        returncode=returncode,
        stdout=out_path.read_text("utf-8", "replace"),
        stderr=err_path.read_text("utf-8", "replace"),
        seconds=seconds,
        peak_rss_mb=peak_kb / 1024,
    )


# ------------------------------------------------------------------------ the scenario

VOLATILE_REASONS = ("does not exist", "changed while it was read", "vanished")
"""What a run may say about a file the mutator deleted or rewrote under it."""


@dataclass(slots=True)
class _Trial:
    corpus: HostileCorpus
    index_dir: Path
    env: dict[str, str]
    timeout: float
    problems: list[str] = field(default_factory=list)

    def index(self) -> tuple[ChildRun, dict[str, Any]]:
        args = ["index", str(self.corpus.root), "--index-dir", str(self.index_dir)]
        child = run_measured(
            [*args, "--json", "--no-progress"],
            env=self.env,
            workdir=self.index_dir.parent,
            timeout=self.timeout,
        )
        summary = child.json()
        if child.returncode is None:
            self.problems.append(f"index hung: killed after {self.timeout:.0f} s")
        elif child.returncode != 3:
            self.problems.append(f"index exited {child.returncode}: {child.stderr[-400:]}")
        if not isinstance(summary, dict):
            self.problems.append(f"index --json printed no summary: {child.stdout[-200:]!r}")
            summary = {}
        return child, summary

    def check_failures(self, summary: dict[str, Any], *, quiet: bool) -> None:
        reported = {f["path"]: f["reason"] for f in summary.get("files_failed", [])}
        for rel, expected in self.corpus.failed.items():
            reason = reported.pop(self.corpus.source(rel), None)
            if reason is None:
                if expected:  # the loosely checked ones may also be indexed
                    self.problems.append(f"{rel!r} not reported as failed")
            elif expected not in reason or not reason.strip():
                self.problems.append(f"{rel!r} failed for {reason!r}, not {expected!r}")
        for prefix, expected in self.corpus.failed_under.items():
            under = [p for p in reported if p.startswith(self.corpus.source(prefix))]
            if len(under) != 1 or expected not in reported[under[0]]:
                self.problems.append(f"under {prefix!r}: {[reported.get(p) for p in under]}")
            for path in under:
                del reported[path]
        volatile = {self.corpus.source(rel) for rel in self.corpus.volatile}
        for path, reason in reported.items():
            allowed = not quiet and path in volatile and any(r in reason for r in VOLATILE_REASONS)
            if not allowed:
                self.problems.append(f"unexpected failure {path!r}: {reason!r}")

    def check_chunks(self, rels: Sequence[str], *, absent: Sequence[str] = ()) -> None:
        groups = _chunk_groups(self.index_dir)
        for rel in rels:
            expected = _expected_ids(self.corpus, rel)
            found = groups.get(self.corpus.source(rel), set())
            if found != expected:
                self.problems.append(
                    f"{rel!r}: {len(found)} chunk ids indexed, {len(expected)} expected "
                    f"({len(found & expected)} in common)"
                )
        for rel in absent:
            if groups.get(self.corpus.source(rel)):
                self.problems.append(f"{rel!r} was deleted but its chunks are still indexed")
        tiny = sum(1 for rel in self.corpus.tiny if groups.get(self.corpus.source(rel)))
        if tiny != len(self.corpus.tiny):
            self.problems.append(f"{tiny} of {len(self.corpus.tiny)} tiny files indexed")

    def check_queries(self, rels: list[str]) -> None:
        for rel in rels:
            marker = self.corpus.good[rel]
            done = run_cli(
                ["query", marker, "--index-dir", str(self.index_dir), "--json", "-k", "5"],
                env=self.env,
                timeout=self.timeout,
            )
            try:
                sources = [row["source"] for row in json.loads(done.stdout)]
            except (json.JSONDecodeError, TypeError, KeyError):
                sources = []
            if self.corpus.source(rel) not in sources:
                self.problems.append(f"query {marker!r} did not find {rel!r} ({done.returncode})")

    def check_doctor(self) -> None:
        report = doctor(self.index_dir, env=self.env)
        if not report.get("healthy"):
            bad = [f for f in report.get("findings", []) if f.get("level") != "ok"]
            self.problems.append(f"doctor unhealthy: {bad or report.get('output', '')[-300:]}")


def _chunk_groups(index_dir: Path) -> dict[str, set[str]]:
    """Chunk ids by source, read from the record manager (read-only)."""
    connection = sqlite3.connect(f"file:{index_dir / 'records.sqlite'}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT group_id, key FROM record_manager_keys").fetchall()
    finally:
        connection.close()
    groups: dict[str, set[str]] = {}
    for group, key in rows:
        groups.setdefault(str(group), set()).add(str(key))
    return groups


def _expected_ids(corpus: HostileCorpus, rel: str) -> set[str]:
    """The chunk ids a clean load and split of ``rel`` gives (what the index must hold)."""
    from langchain_rag_async.loaders import AsyncDirectoryLoader, FileInfo
    from langchain_rag_async.splitters import RunnableTextSplitter

    path = Path(corpus.source(rel))
    info = os.stat(path)
    document = AsyncDirectoryLoader(corpus.root).load_file(
        FileInfo(path, info.st_size, info.st_mtime)
    )
    if document is None:
        return set()
    return {str(chunk.id) for chunk in RunnableTextSplitter().split_document(document)}


def _reason_counts(summary: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for failure in summary.get("files_failed", []):
        reason = str(failure["reason"]).split(";")[0]
        reason = "exceeds max_file_size" if "exceeds max_file_size" in reason else reason
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items()))


def run(
    trials: int,
    workdir: Path,
    *,
    sizes: CorpusSizes | None = None,
    max_file_size: int | None = None,
    rss_limit_mb: float = 1024.0,
    timeout: float = 900.0,
    query_all: bool = True,
    seed: int = 0,
) -> ScenarioResult:
    """Index a freshly generated hostile corpus ``trials`` times and check every outcome.

    Each trial: generate the corpus; ``rag-async index --json`` against the local fake
    OpenAI-compatible server while a :class:`Mutator` changes the volatile files; then a
    quiet rerun. Both runs must exit 3 (bad files are reported and retried, never
    recorded), report each bad file with its expected reason (volatile files only with
    :data:`VOLATILE_REASONS`), hold exactly the chunk ids a clean load and split of every
    good file gives, find good files with ``rag-async query``, leave ``doctor`` healthy,
    finish within ``timeout`` and peak under ``rss_limit_mb``.

    Args:
        trials: Corpora generated and indexed.
        workdir: Scratch directory (``trial-N/`` per trial, removed when it survives).
        sizes: Corpus sizes; full sizes (200 MB, 10,000 files) if None.
        max_file_size: ``RAG_MAX_FILE_SIZE`` for the CLI (its default if None); must lie
            between the single-line file and the huge one.
        rss_limit_mb: The child's peak RSS bound, in MiB.
        timeout: Seconds an index run may take before it counts as hung.
        query_all: Query every good file (else only the first two and the long line).
        seed: Seeds the first corpus.

    Returns:
        The tally, with figures: seconds and peak RSS per run, counts and failure reasons.
    """
    from langchain_rag_async.testing.openai_server import FakeOpenAIServer

    sizes = sizes or CorpusSizes()
    result = ScenarioResult("hostile corpus")
    extra = {} if max_file_size is None else {"RAG_MAX_FILE_SIZE": str(max_file_size)}
    result.figures.update(
        big_file_mb=sizes.big_bytes / MB,
        single_line_mb=sizes.line_bytes / MB,
        tiny_files=sizes.tiny_files,
        depth=sizes.depth,
        volatile_files=sizes.volatile_files,
    )
    with FakeOpenAIServer.run_in_thread() as server:
        env = cli_env(server.base_url, **extra)
        for number in range(trials):
            trial_dir = workdir / f"trial-{number}"
            if trial_dir.exists():
                shutil.rmtree(trial_dir)
            trial_dir.mkdir(parents=True)
            corpus = make_corpus(trial_dir, sizes, seed=seed + number)
            trial = _Trial(corpus, trial_dir / "index", env, timeout)
            _run_trial(trial, result, rss_limit_mb=rss_limit_mb, query_all=query_all)
            result.record(not trial.problems, f"trial {number}: " + "; ".join(trial.problems))
            if not trial.problems:
                shutil.rmtree(trial_dir, ignore_errors=True)
    return result


def _run_trial(
    trial: _Trial, result: ScenarioResult, *, rss_limit_mb: float, query_all: bool
) -> None:
    corpus = trial.corpus
    mutator = Mutator(corpus).start()
    try:
        first, summary = trial.index()
    finally:
        mutator.finish()
    trial.check_failures(summary, quiet=False)
    trial.check_chunks(list(corpus.good))
    second, quiet_summary = trial.index()
    trial.check_failures(quiet_summary, quiet=True)
    deleted = [rel for rel in corpus.volatile if rel not in mutator.final_files()]
    trial.check_chunks([*corpus.good, *mutator.final_files()], absent=deleted)
    trial.check_doctor()
    rels = list(corpus.good)
    trial.check_queries(rels if query_all else [*rels[:2], "longline/one-line.txt"])
    peak = max(first.peak_rss_mb, second.peak_rss_mb)
    if peak > rss_limit_mb:
        trial.problems.append(f"peak RSS {peak:.0f} MiB over the {rss_limit_mb:.0f} MiB bound")
    figures = result.figures
    figures["index_seconds"] = max(figures.get("index_seconds", 0.0), round(first.seconds, 1))
    figures["rerun_seconds"] = max(figures.get("rerun_seconds", 0.0), round(second.seconds, 1))
    figures["peak_rss_mb"] = max(figures.get("peak_rss_mb", 0.0), round(peak, 1))
    figures["mutator_rounds"] = mutator.rounds
    figures["files_indexed"] = summary.get("files_indexed")
    figures["files_failed"] = len(summary.get("files_failed", []))
    figures["chunks_added"] = summary.get("chunks_added")
    figures["failure_reasons"] = _reason_counts(summary)
    figures["rerun_failure_reasons"] = _reason_counts(quiet_summary)
