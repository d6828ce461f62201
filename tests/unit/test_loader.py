"""Tests of AsyncDirectoryLoader: walk filters, formats, failures, concurrency, cancellation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import aiofiles
import pytest
from langchain_core.documents import Document
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from langchain_rag_async import observability
from langchain_rag_async.config import LoaderConfig
from langchain_rag_async.errors import (
    BinaryFileError,
    DecodingError,
    FileTooLargeError,
    LoadingError,
)
from langchain_rag_async.loaders import AsyncDirectoryLoader, FileInfo

FRENCH = "Le café est très chaud. Les élèves naïfs mangent des crêpes à Noël, où ça coûte cher.\n"


# ----------------------------------------------------------------------------- helpers


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


async def collect(loader: AsyncDirectoryLoader) -> list[Document]:
    return [doc async for doc in loader.alazy_load()]


def by_name(docs: list[Document]) -> dict[str, Document]:
    return {Path(doc.metadata["source"]).name: doc for doc in docs}


def relative_sources(docs: list[Document], root: Path) -> set[str]:
    base = root.resolve()
    return {Path(doc.metadata["source"]).relative_to(base).as_posix() for doc in docs}


def make_pdf(text: str) -> bytes:
    """A minimal one-page PDF showing ``text`` in Helvetica, with a correct xref table."""
    content = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


class OpenTracker:
    """Wraps ``aiofiles.open`` to count reads in flight and optionally hold some back."""

    def __init__(self, real_open: Callable[..., Any]) -> None:
        self.real_open = real_open
        self.in_flight = 0
        self.peak = 0
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.cancelled: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.gate_all: asyncio.Event | None = None
        self.errors: dict[str, OSError] = {}
        self.reached: asyncio.Event = asyncio.Event()
        self.reach_count = 0

    def __call__(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        return self._open(Path(path), args, kwargs)

    @asynccontextmanager
    async def _open(self, path: Path, args: Any, kwargs: Any) -> AsyncIterator[Any]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.opened.append(path.name)
        if self.reach_count and self.in_flight >= self.reach_count:
            self.reached.set()
        try:
            for _ in range(5):  # let other workers start their reads meanwhile
                await asyncio.sleep(0)
            gate = self.gates.get(path.name, self.gate_all)
            if gate is not None:
                await gate.wait()
            if path.name in self.errors:
                raise self.errors[path.name]
            async with self.real_open(path, *args, **kwargs) as handle:
                yield handle
        except asyncio.CancelledError:
            self.cancelled.append(path.name)
            raise
        finally:
            self.in_flight -= 1
            self.closed.append(path.name)


@pytest.fixture
def tracker(monkeypatch: pytest.MonkeyPatch) -> OpenTracker:
    tracker = OpenTracker(aiofiles.open)
    monkeypatch.setattr(aiofiles, "open", tracker)
    return tracker


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(observability, "_tracer", lambda: provider.get_tracer("test"))
    return exporter


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


# ----------------------------------------------------------------------------- formats


async def test_text_formats_are_loaded_as_text(tmp_path: Path) -> None:
    write(tmp_path, "guide.md", "# Title\n\nSome *markdown*.\n")
    write(tmp_path, "notes.txt", "plain\r\nwindows lines\r\n")
    write(tmp_path, "script.py", "def f() -> int:\n    return 1\n")
    write(tmp_path, "data.json", json.dumps({"key": "value"}))
    write(tmp_path, "conf.yaml", "a: 1\n")
    write(tmp_path, "pyproject.toml", "[tool]\nx = 1\n")
    write(tmp_path, "doc.rst", "Title\n=====\n")
    write(tmp_path, "lib.rs", "fn main() {}\n")

    docs = by_name(await collect(AsyncDirectoryLoader(tmp_path)))

    assert set(docs) == {
        "guide.md",
        "notes.txt",
        "script.py",
        "data.json",
        "conf.yaml",
        "pyproject.toml",
        "doc.rst",
        "lib.rs",
    }
    assert docs["guide.md"].page_content == "# Title\n\nSome *markdown*.\n"
    assert docs["notes.txt"].page_content == "plain\nwindows lines\n"
    assert docs["script.py"].page_content.startswith("def f() -> int:")
    assert json.loads(docs["data.json"].page_content) == {"key": "value"}


async def test_unsupported_extensions_are_skipped_unless_included(tmp_path: Path) -> None:
    write(tmp_path, "image.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(tmp_path, "README", "read me\n")
    write(tmp_path, "notes.weird", "text with an odd suffix\n")

    loader = AsyncDirectoryLoader(tmp_path)
    assert set(by_name(await collect(loader))) == {"README"}
    assert loader.failures == []

    included = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(include=("*.weird",)))
    assert set(by_name(await collect(included))) == {"notes.weird"}


async def test_html_is_converted_to_visible_text(tmp_path: Path) -> None:
    write(
        tmp_path,
        "page.html",
        "<!DOCTYPE html><html><head><title>Page title</title>"
        "<style>p { color: red; }</style><script>var secret = 1;</script></head>"
        "<body><!-- hidden comment --><h1>Heading</h1><p>Hello <b>bold</b> world.</p>"
        "<ul><li>one</li><li>two</li></ul><noscript>enable js</noscript></body></html>",
    )

    [doc] = await collect(AsyncDirectoryLoader(tmp_path))

    text = doc.page_content
    for visible in ("Page title", "Heading", "Hello bold world.", "one", "two"):
        assert visible in text
    for hidden in ("<", ">", "color: red", "secret", "hidden comment", "enable js"):
        assert hidden not in text


async def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    write(tmp_path, "paper.pdf", make_pdf("Hello from a PDF"))

    loader = AsyncDirectoryLoader(tmp_path)
    [doc] = await collect(loader)

    assert "Hello from a PDF" in doc.page_content
    assert loader.failures == []


async def test_malformed_pdf_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    write(tmp_path, "broken.pdf", b"%PDF-1.4\nthis is not a pdf body\n")

    loader = AsyncDirectoryLoader(tmp_path)
    assert await collect(loader) == []

    [failure] = loader.failures
    assert failure.path.endswith("broken.pdf")
    assert "PDF" in failure.reason


async def test_missing_pypdf_fails_the_file_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` raise ImportError
    write(tmp_path, "paper.pdf", make_pdf("unused"))
    write(tmp_path, "ok.md", "still loaded\n")

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await collect(loader)

    assert set(by_name(docs)) == {"ok.md"}
    [failure] = loader.failures
    assert type(failure) is LoadingError
    assert "install langchain-rag-async[pdf]" in failure.reason


# ---------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16", "utf-16-le", "utf-8-sig"])
async def test_non_utf8_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    text = FRENCH * 5
    write(tmp_path, "french.txt", text.encode(encoding))

    loader = AsyncDirectoryLoader(tmp_path)
    [doc] = await collect(loader)

    assert doc.page_content == text
    assert loader.failures == []


async def test_binary_file_is_reported_not_raised(tmp_path: Path) -> None:
    seen: list[LoadingError] = []
    write(tmp_path, "blob.txt", b"header\x00\x01\x02\x03" * 100)
    write(tmp_path, "controls.txt", bytes(range(1, 8)) * 200)
    write(tmp_path, "fine.md", "fine\n")

    loader = AsyncDirectoryLoader(tmp_path, on_error=seen.append)
    docs = await collect(loader)

    assert set(by_name(docs)) == {"fine.md"}
    assert {Path(f.path).name for f in loader.failures} == {"blob.txt", "controls.txt"}
    assert all(isinstance(f, BinaryFileError) for f in loader.failures)
    assert seen == loader.failures


async def test_undecodable_file_is_reported(tmp_path: Path) -> None:
    noise = random.Random(7)
    write(tmp_path, "noise.txt", bytes(noise.randrange(0x80, 0x100) for _ in range(4000)))

    loader = AsyncDirectoryLoader(tmp_path)
    assert await collect(loader) == []

    [failure] = loader.failures
    assert isinstance(failure, DecodingError)
    assert failure.path == str((tmp_path / "noise.txt").resolve())


async def test_empty_and_blank_files_yield_nothing_and_are_not_failures(tmp_path: Path) -> None:
    write(tmp_path, "empty.md", "")
    write(tmp_path, "blank.md", "  \n\n\t\n")
    write(tmp_path, "full.md", "content\n")

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await collect(loader)

    assert set(by_name(docs)) == {"full.md"}
    assert loader.failures == []
    assert await loader.aload_file(tmp_path / "empty.md") is None


# ---------------------------------------------------------------------------- metadata


async def test_metadata_and_content_hash(tmp_path: Path) -> None:
    raw = "héllo wörld\n".encode()
    path = write(tmp_path, "meta.md", raw)
    stat = path.stat()

    [doc] = await collect(AsyncDirectoryLoader(tmp_path))

    assert doc.metadata == {
        "source": str(path.resolve()),
        "mtime": stat.st_mtime,
        "size": len(raw),
        "content_hash": hashlib.sha256(raw).hexdigest(),
    }
    assert isinstance(doc.metadata["mtime"], float)
    assert doc.page_content == "héllo wörld\n"


async def test_scan_returns_sorted_file_infos(tmp_path: Path) -> None:
    for name in ("b.md", "a.md", "sub/c.md"):
        write(tmp_path, name, "x\n")

    files = await AsyncDirectoryLoader(tmp_path).ascan()

    base = tmp_path.resolve()  # noqa: ASYNC240 - test setup may block
    assert [f.path for f in files] == [base / "a.md", base / "b.md", base / "sub" / "c.md"]
    assert all(f.path.is_absolute() and f.size == 2 for f in files)
    assert files[0].source == str(base / "a.md")


async def test_spans_are_recorded_per_file(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    write(tmp_path, "good.md", "good\n")
    write(tmp_path, "bad.txt", b"\x00\x01binary")

    await collect(AsyncDirectoryLoader(tmp_path))

    finished = {s.attributes["path"]: s for s in spans.get_finished_spans() if s.attributes}
    assert {Path(str(p)).name for p in finished} == {"good.md", "bad.txt"}
    statuses = {Path(str(p)).name: s.status.status_code for p, s in finished.items()}
    assert statuses["bad.txt"] is StatusCode.ERROR
    assert statuses["good.md"] is not StatusCode.ERROR


# -------------------------------------------------------------------------- walk filters


async def test_hidden_and_nested_gitignore_paths_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "*.log.md\nbuild/\n/top-only.md\n")
    write(tmp_path, "keep.md", "k\n")
    write(tmp_path, "debug.log.md", "ignored by root rule\n")
    write(tmp_path, "top-only.md", "anchored: ignored\n")
    write(tmp_path, "build/out.md", "ignored directory\n")
    write(tmp_path, "sub/.gitignore", "secret.md\n!wanted.log.md\n")
    write(tmp_path, "sub/top-only.md", "anchored rule does not reach here\n")
    write(tmp_path, "sub/secret.md", "ignored by nested rule\n")
    write(tmp_path, "sub/wanted.log.md", "re-included by nested rule\n")
    write(tmp_path, "sub/other.log.md", "still ignored by root rule\n")
    write(tmp_path, "other/secret.md", "nested rule does not apply here\n")
    write(tmp_path, ".hidden.md", "hidden file\n")
    write(tmp_path, ".hiddendir/inside.md", "hidden directory\n")
    write(tmp_path, ".git/config.md", "never read\n")

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await collect(loader)

    assert relative_sources(docs, tmp_path) == {
        "keep.md",
        "sub/top-only.md",
        "sub/wanted.log.md",
        "other/secret.md",
    }
    assert loader.failures == []

    everything = AsyncDirectoryLoader(
        tmp_path, config=LoaderConfig(respect_gitignore=False, include_hidden=True)
    )
    assert relative_sources(await collect(everything), tmp_path) == {
        "keep.md",
        "debug.log.md",
        "top-only.md",
        "build/out.md",
        "sub/top-only.md",
        "sub/secret.md",
        "sub/wanted.log.md",
        "sub/other.log.md",
        "other/secret.md",
        ".hidden.md",
        ".hiddendir/inside.md",
    }


async def test_include_and_exclude_globs(tmp_path: Path) -> None:
    for name in ("a.md", "docs/b.md", "docs/deep/c.md", "docs/d.txt", "drafts/e.md", "f.py"):
        write(tmp_path, name, f"{name}\n")

    def run(include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> AsyncDirectoryLoader:
        return AsyncDirectoryLoader(tmp_path, config=LoaderConfig(include=include, exclude=exclude))

    assert relative_sources(await collect(run(include=("*.md",))), tmp_path) == {
        "a.md",
        "docs/b.md",
        "docs/deep/c.md",
        "drafts/e.md",
    }
    assert relative_sources(await collect(run(include=("docs/**/*.md",))), tmp_path) == {
        "docs/b.md",
        "docs/deep/c.md",
    }
    assert relative_sources(
        await collect(run(include=("*.md",), exclude=("drafts/", "docs/deep/**"))), tmp_path
    ) == {"a.md", "docs/b.md"}
    assert relative_sources(await collect(run(exclude=("*.md",))), tmp_path) == {
        "docs/d.txt",
        "f.py",
    }


async def test_symlinks_are_followed_once_and_broken_ones_reported(tmp_path: Path) -> None:
    target = write(tmp_path, "real.md", "real\n")
    (tmp_path / "alias.md").symlink_to(target)
    (tmp_path / "dangling.md").symlink_to(tmp_path / "missing.md")
    write(tmp_path / "outside", "linked.md", "via a directory link\n")
    (tmp_path / "dirlink").symlink_to(tmp_path / "outside", target_is_directory=True)

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await collect(loader)

    assert relative_sources(docs, tmp_path) == {"real.md", "outside/linked.md"}
    [failure] = loader.failures
    assert failure.path.endswith("dangling.md")
    assert "broken symbolic link" in failure.reason


async def test_fifo_is_skipped_without_blocking(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    os.mkfifo(tmp_path / "pipe.md")
    write(tmp_path, "ok.md", "ok\n")

    loader = AsyncDirectoryLoader(tmp_path)
    assert set(by_name(await collect(loader))) == {"ok.md"}
    assert loader.failures == []


# ------------------------------------------------------------------------------ failures


async def test_too_large_file_is_reported_by_the_scan(tmp_path: Path) -> None:
    write(tmp_path, "big.md", "x" * 101)
    write(tmp_path, "small.md", "x" * 100)
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_file_size=100))

    files = await loader.ascan()

    assert [f.path.name for f in files] == ["small.md"]
    [failure] = loader.failures
    assert isinstance(failure, FileTooLargeError)
    assert failure.path.endswith("big.md") and "max_file_size=100" in failure.reason
    with pytest.raises(FileTooLargeError):
        await loader.aload_file(tmp_path / "big.md")


async def test_files_that_change_after_the_scan_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "grows.md", "small\n")
    write(tmp_path, "goes.md", "bye\n")
    write(tmp_path, "stays.md", "hi\n")
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_file_size=50))
    files = await loader.ascan()

    write(tmp_path, "grows.md", "x" * 51)
    (tmp_path / "goes.md").unlink()
    docs = [doc async for doc in loader.alazy_load_files(files)]

    assert set(by_name(docs)) == {"stays.md"}
    reasons = {Path(f.path).name: f for f in loader.failures}
    assert isinstance(reasons["grows.md"], FileTooLargeError)
    assert "RAG_MAX_FILE_SIZE" in reasons["grows.md"].reason  # what a CLI user sets
    assert "does not exist" in reasons["goes.md"].reason


async def test_unreadable_file_is_reported(tmp_path: Path, tracker: OpenTracker) -> None:
    write(tmp_path, "locked.md", "secret\n")
    write(tmp_path, "open.md", "public\n")
    tracker.errors["locked.md"] = PermissionError(13, "Permission denied")

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await collect(loader)

    assert set(by_name(docs)) == {"open.md"}
    [failure] = loader.failures
    assert failure.path.endswith("locked.md")
    assert "permission denied" in failure.reason


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files despite chmod 000"
)
async def test_chmod_000_file_is_reported(tmp_path: Path) -> None:
    locked = write(tmp_path, "locked.md", "secret\n")
    locked.chmod(0)
    try:
        loader = AsyncDirectoryLoader(tmp_path)
        assert await collect(loader) == []
        [failure] = loader.failures
        assert "permission denied" in failure.reason
    finally:
        locked.chmod(0o644)


async def test_directory_passed_as_file_raises(tmp_path: Path) -> None:
    (tmp_path / "looks-like.md").mkdir()
    loader = AsyncDirectoryLoader(tmp_path)

    with pytest.raises(LoadingError, match="not a regular file"):
        await loader.aload_file(tmp_path / "looks-like.md")
    with pytest.raises(LoadingError, match="does not exist"):
        await loader.aload_file(tmp_path / "nope.md")


async def test_missing_root_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(LoadingError, match="nowhere: does not exist") as caught:
        await collect(AsyncDirectoryLoader(missing))
    assert caught.value.path == str(missing)


def test_missing_root_raises_in_sync_twin(tmp_path: Path) -> None:
    with pytest.raises(LoadingError, match="does not exist"):
        AsyncDirectoryLoader(tmp_path / "nowhere").load()
    with pytest.raises(LoadingError, match="does not exist"):
        AsyncDirectoryLoader(tmp_path / "nowhere").scan()


async def test_single_file_root_loads_that_file(tmp_path: Path) -> None:
    path = write(tmp_path, "only.unknown", "explicitly named\n")
    write(tmp_path, "other.md", "not loaded\n")

    loader = AsyncDirectoryLoader(path)
    docs = await collect(loader)

    assert [doc.page_content for doc in docs] == ["explicitly named\n"]
    assert await asyncio.to_thread(loader.load) == docs


async def test_failures_reset_on_each_run(tmp_path: Path) -> None:
    write(tmp_path, "bin.txt", b"\x00\x00")
    loader = AsyncDirectoryLoader(tmp_path)
    await collect(loader)
    first = loader.failures
    await collect(loader)

    assert len(first) == 1 and len(loader.failures) == 1
    assert loader.failures is not first


async def test_alazy_load_files_resets_failures_but_alazy_load_keeps_scan_failures(
    tmp_path: Path,
) -> None:
    write(tmp_path, "big.md", "x" * 200)
    write(tmp_path, "bin.txt", b"\x00\x00")
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_file_size=100))

    await collect(loader)
    assert sorted(type(f).__name__ for f in loader.failures) == [
        "BinaryFileError",
        "FileTooLargeError",
    ]

    files = await loader.ascan()
    assert [type(f).__name__ for f in loader.failures] == ["FileTooLargeError"]
    _ = [doc async for doc in loader.alazy_load_files(files)]
    assert [type(f).__name__ for f in loader.failures] == ["BinaryFileError"]


async def test_error_in_on_error_callback_propagates(tmp_path: Path) -> None:
    write(tmp_path, "bin.txt", b"\x00\x00")
    for index in range(10):
        write(tmp_path, f"f{index}.md", "x\n")

    def explode(_: LoadingError) -> None:
        raise RuntimeError("callback bug")

    baseline = other_tasks()
    loader = AsyncDirectoryLoader(tmp_path, on_error=explode)
    with pytest.raises(ExceptionGroup) as caught:
        await collect(loader)
    assert caught.group_contains(RuntimeError, match="callback bug")
    assert other_tasks() == baseline


# ---------------------------------------------------------------------------- concurrency


async def test_reads_are_bounded_by_max_open_files(tmp_path: Path, tracker: OpenTracker) -> None:
    for index in range(60):
        write(tmp_path, f"f{index:03}.md", f"file {index}\n")
    baseline = len(asyncio.all_tasks())
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_open_files=4))

    task_counts = []
    docs = []
    async for doc in loader.alazy_load():
        docs.append(doc)
        task_counts.append(len(asyncio.all_tasks()))

    assert len(docs) == 60 and loader.failures == []
    assert tracker.peak == 4  # concurrent, but never more than the limit
    assert max(task_counts) <= baseline + 1 + 4  # one producer and 4 workers, not 60 tasks
    assert tracker.in_flight == 0


async def test_documents_are_yielded_in_completion_order(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    for name in ("a.md", "b.md", "c.md"):
        write(tmp_path, name, f"{name}\n")
    others_read = asyncio.Event()
    tracker.gates["a.md"] = others_read  # a.md is first in walk order but finishes last

    order = []
    async with asyncio.timeout(30):
        async for doc in AsyncDirectoryLoader(tmp_path).alazy_load():
            order.append(Path(doc.metadata["source"]).name)
            if len(order) == 2:
                others_read.set()

    assert sorted(order[:2]) == ["b.md", "c.md"]
    assert order[2] == "a.md"


async def test_breaking_out_early_cancels_reads_in_flight(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    for index in range(40):
        write(tmp_path, f"f{index:02}.md", f"file {index}\n")
    tracker.gate_all = asyncio.Event()  # every read but the first hangs
    tracker.gates["f00.md"] = asyncio.Event()
    tracker.gates["f00.md"].set()
    baseline = other_tasks()
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_open_files=4))

    async with aclosing(loader.alazy_load()) as docs:
        async for doc in docs:
            assert doc.metadata["source"].endswith("f00.md")
            break

    assert other_tasks() == baseline
    assert tracker.in_flight == 0
    assert len(tracker.cancelled) == 4  # the reads that were held back
    assert len(tracker.opened) == 5  # nothing started after the break


async def test_plain_break_without_aclosing_still_cleans_up(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    for index in range(20):
        write(tmp_path, f"f{index:02}.md", f"file {index}\n")
    tracker.gate_all = asyncio.Event()
    tracker.gates["f00.md"] = asyncio.Event()
    tracker.gates["f00.md"].set()
    baseline = other_tasks()

    async for _ in AsyncDirectoryLoader(
        tmp_path, config=LoaderConfig(max_open_files=3)
    ).alazy_load():
        break
    for _ in range(200):  # the event loop's async-generator finalizer closes it soon
        if other_tasks() == baseline and tracker.in_flight == 0:
            break
        await asyncio.sleep(0)

    assert other_tasks() == baseline
    assert tracker.in_flight == 0


async def test_cancelling_the_consumer_cancels_reads_in_flight(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    for index in range(20):
        write(tmp_path, f"f{index:02}.md", f"file {index}\n")
    tracker.gate_all = asyncio.Event()  # no read ever completes
    tracker.reach_count = 4
    baseline = other_tasks()
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_open_files=4))
    received = []

    async def consume() -> None:
        async with aclosing(loader.alazy_load()) as docs:
            async for doc in docs:
                received.append(doc)

    consumer = asyncio.create_task(consume())
    await tracker.reached.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert received == []
    assert other_tasks() == baseline
    assert tracker.in_flight == 0
    assert sorted(tracker.cancelled) == ["f00.md", "f01.md", "f02.md", "f03.md"]


async def test_files_from_an_iterator_are_each_read_once(tmp_path: Path) -> None:
    for index in range(30):
        write(tmp_path, f"f{index:02}.md", f"file {index}\n")
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_open_files=5))
    files = await loader.ascan()

    docs = [doc async for doc in loader.alazy_load_files(iter(files))]

    assert sorted(doc.metadata["source"] for doc in docs) == [f.source for f in files]


# ----------------------------------------------------------------------- sync / async


def mixed_tree(root: Path) -> None:
    write(root, "a.md", "# A\n")
    write(root, "b/c.py", "print('c')\n")
    write(root, "b/page.html", "<p>para</p><script>x()</script>")
    write(root, "latin.txt", (FRENCH * 3).encode("latin-1"))
    write(root, "bin.txt", b"\x00\x01\x02")
    write(root, "big.md", "x" * 5000)
    write(root, "empty.md", "")


def as_comparable(docs: list[Document]) -> list[tuple[str, dict[str, Any]]]:
    return sorted((doc.page_content, doc.metadata) for doc in docs)


async def test_sync_twin_matches_async(tmp_path: Path) -> None:
    mixed_tree(tmp_path)
    config = LoaderConfig(max_file_size=4000)
    async_loader = AsyncDirectoryLoader(tmp_path, config=config)
    sync_loader = AsyncDirectoryLoader(tmp_path, config=config)

    async_docs = await collect(async_loader)
    sync_docs = await asyncio.to_thread(sync_loader.load)  # the sync twin, off the loop

    assert len(async_docs) == 4
    assert as_comparable(async_docs) == as_comparable(sync_docs)
    assert sorted((type(f).__name__, f.path, f.reason) for f in async_loader.failures) == sorted(
        (type(f).__name__, f.path, f.reason) for f in sync_loader.failures
    )
    assert len(async_loader.failures) == 2
    files = await asyncio.to_thread(sync_loader.scan)
    assert files == await async_loader.ascan()
    sync_doc = await asyncio.to_thread(sync_loader.load_file, files[0])
    assert sync_doc == await async_loader.aload_file(files[0])


def test_sync_load_file_accepts_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "one.md", "one\n")
    loader = AsyncDirectoryLoader(tmp_path)

    doc = loader.load_file(path)

    assert doc is not None and doc.page_content == "one\n"
    assert loader.load_file(FileInfo(path.resolve(), 4, 0.0)) is not None


# ---------------------------------------------------------------- hostile corpus (issue 10)


def non_utf8(parent: Path, name: bytes) -> Path:
    """A path under ``parent`` whose last part is the raw bytes ``name`` (as Python sees it)."""
    return Path(os.fsdecode(os.fsencode(parent) + b"/" + name))


async def test_root_whose_path_is_not_utf8_is_refused_clearly(tmp_path: Path) -> None:
    # Found by the hostile corpus: every file under such a root failed later, one by one,
    # with "could not be split: UnicodeEncodeError ... surrogates not allowed".
    root = non_utf8(tmp_path, b"caf\xe9")
    root.mkdir()
    write(root, "a.md", "# fine name, bad folder\n")

    with pytest.raises(LoadingError, match="path is not valid UTF-8") as raised:
        await AsyncDirectoryLoader(root).ascan()
    assert raised.value.path.endswith("caf\\xe9")  # printable: no lone surrogate in it
    raised.value.path.encode("utf-8")
    with pytest.raises(LoadingError, match="path is not valid UTF-8"):
        await AsyncDirectoryLoader(root / "a.md").ascan()
    with pytest.raises(LoadingError, match="path is not valid UTF-8"):
        await AsyncDirectoryLoader(tmp_path).aload_file(root / "a.md")


def test_root_whose_path_is_not_utf8_is_refused_by_the_sync_twins(tmp_path: Path) -> None:
    root = non_utf8(tmp_path, b"caf\xe9")
    write(root, "a.md", "# fine name, bad folder\n")

    with pytest.raises(LoadingError, match="path is not valid UTF-8"):
        AsyncDirectoryLoader(root).scan()
    with pytest.raises(LoadingError, match="path is not valid UTF-8"):
        AsyncDirectoryLoader(tmp_path).load_file(root / "a.md")


async def test_missing_root_with_a_non_utf8_name_is_reported_printably(tmp_path: Path) -> None:
    with pytest.raises(LoadingError, match="does not exist") as raised:
        await AsyncDirectoryLoader(non_utf8(tmp_path, b"gone\xff")).ascan()
    assert json.loads(json.dumps(raised.value.path)).endswith("gone\\xff")
    raised.value.path.encode("utf-8")


async def test_odd_names_are_loaded_or_reported_printably(tmp_path: Path) -> None:
    write(tmp_path, "new\nline.md", "a name with a newline\n")
    write(tmp_path, "tab\tand space .md", "a name with a tab\n")
    non_utf8(tmp_path, b"bad-\xff\xfe.md").write_text("never read\n")
    inner = non_utf8(tmp_path, b"dir-\xe9")
    inner.mkdir()
    write(inner, "inside.md", "under a badly named folder\n")

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await collect(loader)

    assert relative_sources(docs, tmp_path) == {"new\nline.md", "tab\tand space .md"}
    reported = {Path(f.path).name: f.reason for f in loader.failures}
    assert set(reported) == {"bad-\\xff\\xfe.md", "dir-\\xe9"}
    assert all("not valid UTF-8" in reason for reason in reported.values())
    json.dumps([[f.path, f.reason] for f in loader.failures]).encode("utf-8")


async def test_link_loops_and_deep_folders_end(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*(f"d{level:02d}" for level in range(40)))
    write(deep, "bottom.md", "forty folders down\n")
    (tmp_path / "self.md").symlink_to(".")  # a link to a directory: not followed
    (deep / "up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "ping.md").symlink_to("pong.md")
    (tmp_path / "pong.md").symlink_to("ping.md")

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await asyncio.wait_for(collect(loader), timeout=30)

    assert [Path(doc.metadata["source"]).name for doc in docs] == ["bottom.md"]
    reported = {Path(f.path).name: f.reason for f in loader.failures}
    assert set(reported) == {"ping.md", "pong.md"}
    assert all("symbolic link loop" in reason for reason in reported.values())


async def test_folders_deeper_than_path_max_are_reported_with_a_hint(tmp_path: Path) -> None:
    write(tmp_path, "ok.md", "fine\n")
    deep = tmp_path / "long"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    try:
        for level in range(40):  # 40 x 110 bytes: past PATH_MAX (4096) from any root
            name = f"level{level:02d}" + "x" * 103
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("bottom.md", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)

    loader = AsyncDirectoryLoader(tmp_path)
    docs = await collect(loader)

    assert [Path(doc.metadata["source"]).name for doc in docs] == ["ok.md"]
    [failure] = loader.failures
    assert "longer than the system allows" in failure.reason
    assert failure.path.startswith(str(deep.resolve()))


async def test_many_tiny_files_keep_at_most_max_open_files_open(
    tmp_path: Path, tracker: OpenTracker
) -> None:
    for number in range(2_000):
        write(tmp_path, f"tiny/t{number:05d}.txt", f"tiny {number}\n")
    loader = AsyncDirectoryLoader(tmp_path, config=LoaderConfig(max_open_files=8))

    docs = await collect(loader)

    assert len(docs) == 2_000
    assert tracker.peak == 8
    assert len(asyncio.all_tasks()) == 1  # no task per file left behind


# ---------------------------------------------------------------------------- real corpus


async def test_rust_book_corpus_loads_completely(rust_book: Path) -> None:
    expected = {p.name for p in rust_book.glob("*.*")}  # noqa: ASYNC240 - test setup
    loader = AsyncDirectoryLoader(rust_book)

    docs = await collect(loader)

    assert loader.failures == []
    assert {Path(doc.metadata["source"]).name for doc in docs} == expected
    assert len(docs) == 113
    assert all(doc.page_content.strip() for doc in docs)
    assert len({doc.metadata["content_hash"] for doc in docs}) == len(docs)
