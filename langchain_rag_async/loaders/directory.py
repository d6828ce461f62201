"""Async directory loader: a gitignore-aware walk and bounded, concurrent file reads.

:class:`AsyncDirectoryLoader` walks a tree off the event loop (include/exclude globs,
hidden files, nested ``.gitignore`` files, a size limit), then reads files with aiofiles
through a fixed pool of workers and yields each :class:`~langchain_core.documents.Document`
as soon as it is ready. A bad file never stops a run: it lands in
:attr:`AsyncDirectoryLoader.failures` with its path and reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sized
from contextlib import aclosing
from pathlib import Path

import aiofiles
from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.aio.deadline import deadline, deadline_at
from langchain_rag_async.config import LoaderConfig
from langchain_rag_async.errors import LoadingError, RAGTimeoutError
from langchain_rag_async.loaders._formats import FileKind, extract_text, file_kind, try_fast_text
from langchain_rag_async.loaders._walk import (
    FileInfo,
    ScanResult,
    Walker,
    file_info,
    os_error,
    printable,
    too_large,
)
from langchain_rag_async.observability import get_logger, span

__all__ = ("AsyncDirectoryLoader", "FileInfo")

_INLINE_CONVERT_BYTES = 64 * 1024
"""UTF-8 text files up to this size are decoded on the loop; the rest go to an executor."""

ErrorHandler = Callable[[LoadingError], None]


# ----------------------------------------------------------------------- reading files


def _checked_size(path: Path, raw: bytes, limit: int) -> bytes:
    if len(raw) > limit:  # the file grew after the walk
        raise too_large(path, len(raw), limit)
    return raw


async def _aread(path: Path, limit: int) -> bytes:
    """Read at most ``limit`` bytes with aiofiles (one more, to notice a file that grew)."""
    try:
        async with aiofiles.open(path, "rb") as handle:
            raw = await handle.read(limit + 1)
    except OSError as exc:
        raise os_error(path, exc) from exc
    return _checked_size(path, raw, limit)


def _read(path: Path, limit: int) -> bytes:
    """Blocking twin of :func:`_aread`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise os_error(path, exc) from exc
    return _checked_size(path, raw, limit)


def _to_document(file: FileInfo, raw: bytes, text: str) -> Document | None:
    """Build the Document; ``None`` when the text is empty or only whitespace."""
    if not text.strip():
        return None
    metadata = {
        "source": file.source,
        "mtime": file.mtime,
        "size": len(raw),
        "content_hash": hashlib.sha256(raw).hexdigest(),
    }
    return Document(page_content=text, metadata=metadata)


def _convert(file: FileInfo, raw: bytes) -> Document | None:
    """Turn raw bytes into a Document, whatever the format (may be CPU-bound)."""
    if not raw:
        return None
    return _to_document(file, raw, extract_text(raw, file.source, file_kind(file.path)))


async def _aconvert(file: FileInfo, raw: bytes) -> Document | None:
    """:func:`_convert` on the loop for small UTF-8 text, in an executor otherwise."""
    if len(raw) <= _INLINE_CONVERT_BYTES and file_kind(file.path) is FileKind.TEXT:
        text = try_fast_text(raw, file.source)
        if text is not None:
            return _to_document(file, raw, text)
    return await run_in_executor(None, _convert, file, raw)


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` if still running and wait until it has finished cleaning up."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # mark as retrieved; the caller is already leaving with its own error


# ---------------------------------------------------------------------------- loader


class AsyncDirectoryLoader(BaseLoader):
    """Load the text files of a directory (or one file) as Documents, concurrently.

    The walk skips hidden files and directories, paths ignored by ``.gitignore`` files
    (nested ones included), and applies the include/exclude globs of
    :class:`~langchain_rag_async.config.LoaderConfig`; without include globs every supported
    format is read (text, Markdown, reST, source code, JSON/YAML/TOML, HTML, PDF). Globs
    follow ``.gitignore`` rules: ``*.md`` matches at any depth, ``docs/*.md`` is anchored
    at the root, ``**`` spans directories and a trailing ``/`` names a directory. A root
    that names a single file loads that file, with no filter applied.

    Reads run through at most ``max_open_files`` workers; Documents are yielded in
    completion order. Each Document's metadata holds ``source`` (absolute path),
    ``mtime``, ``size`` and ``content_hash`` (SHA-256 hex of the raw bytes).

    Bad files (binary, undecodable, too large, unreadable, vanished) never stop a run:
    each is appended to :attr:`failures` and passed to ``on_error``. Empty or
    whitespace-only files yield no Document and are not failures.

    Attributes:
        path: The root directory or file, as given.
        config: Walk and read settings.
        on_error: Called with each failure, on the event loop thread for async runs.
        failures: Failures of the current run, reset when a run starts: :meth:`ascan`,
            :meth:`scan`, :meth:`alazy_load_files`, :meth:`alazy_load` and :meth:`lazy_load`
            (the last two keep the failures of their own walk).

    Example:
        .. code-block:: python

            loader = AsyncDirectoryLoader("docs", config=LoaderConfig(include=("*.md",)))
            async with contextlib.aclosing(loader.alazy_load()) as docs:
                async for doc in docs:  # breaking out cancels the reads in flight
                    ...
            for failure in loader.failures:
                print(failure.path, failure.reason)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: LoaderConfig | None = None,
        on_error: ErrorHandler | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config if config is not None else LoaderConfig()
        self.on_error = on_error
        self.failures: list[LoadingError] = []

    # ------------------------------------------------------------------ scanning

    async def ascan(self, *, timeout: float | None = None) -> list[FileInfo]:
        """Walk the root in a worker thread and return the files to load, sorted by path.

        Too-large files and unreadable directories are recorded as failures, not returned.
        Cancelling (or ``timeout``) stops the walk at the next directory.

        Args:
            timeout: Seconds for the walk; ``None``: no limit.

        Raises:
            LoadingError: The root does not exist or is neither a directory nor a file.
            RAGTimeoutError: The walk took longer than ``timeout``.
        """
        self.failures = []
        stop = threading.Event()
        walker = Walker(self.path, self.config, stop)
        try:
            async with deadline(timeout, self._timed_out):
                result = await run_in_executor(None, walker.run)
        except (asyncio.CancelledError, RAGTimeoutError):
            stop.set()
            raise
        return self._finish_scan(result)

    def scan(self) -> list[FileInfo]:
        """Blocking twin of :meth:`ascan`."""
        self.failures = []
        return self._finish_scan(Walker(self.path, self.config, None).run())

    def _finish_scan(self, result: ScanResult) -> list[FileInfo]:
        for failure in result.failures:
            self._report(failure)
        return result.files

    # ------------------------------------------------------------------ one file

    async def aload_file(self, file: FileInfo | Path) -> Document | None:
        """Read and convert one file.

        Args:
            file: A file from :meth:`ascan`, or a path (stat-ed first).

        Returns:
            The Document, or ``None`` for an empty or whitespace-only file.

        Raises:
            LoadingError: Or a subclass (``BinaryFileError``, ``DecodingError``,
                ``FileTooLargeError``), with the path and the reason.
        """
        limit = self.config.max_file_size
        with span("load_file", path=str(file.path if isinstance(file, FileInfo) else file)):
            if not isinstance(file, FileInfo):
                file = await run_in_executor(None, file_info, file, limit)
            raw = await _aread(file.path, limit)
            return await _aconvert(file, raw)

    def load_file(self, file: FileInfo | Path) -> Document | None:
        """Blocking twin of :meth:`aload_file`."""
        limit = self.config.max_file_size
        with span("load_file", path=str(file.path if isinstance(file, FileInfo) else file)):
            if not isinstance(file, FileInfo):
                file = file_info(file, limit)
            return _convert(file, _read(file.path, limit))

    # ------------------------------------------------------------------ many files

    async def alazy_load_files(
        self, files: Iterable[FileInfo], *, timeout: float | None = None
    ) -> AsyncGenerator[Document, None]:
        """Read ``files`` concurrently and yield each Document as soon as it is ready.

        Resets :attr:`failures` when iteration starts. A fixed pool of at most
        ``max_open_files`` workers pulls from ``files`` (so a huge iterable never becomes
        a task per file) and hands Documents over through a bounded queue. Failures go to
        :attr:`failures` and ``on_error``, never raised. Closing the iterator early
        (``break`` inside ``contextlib.aclosing``) or cancelling the consumer cancels every
        read in flight and waits for it.

        Args:
            files: The files to read, typically from :meth:`ascan`.
            timeout: Seconds from the first iteration until the last document; only the
                loader's own waits are bounded (the time the consumer spends between two
                documents counts, but is never interrupted). ``None``: no limit.

        Yields:
            Documents in completion order.

        Raises:
            RAGTimeoutError: ``timeout`` expired; the reads in flight were cancelled.
        """
        self.failures = []
        until = deadline_at(timeout)
        async with aclosing(self._aload_files(files, timeout, until)) as documents:
            async for document in documents:
                yield document

    async def _aload_files(
        self, files: Iterable[FileInfo], timeout: float | None, until: float | None
    ) -> AsyncGenerator[Document, None]:
        """:meth:`alazy_load_files` without resetting :attr:`failures`; ends by ``until``."""
        queue: asyncio.Queue[Document | None] = asyncio.Queue(self.config.max_open_files)
        producer = asyncio.create_task(self._produce(files, queue), name="rag-loader-workers")
        try:
            while True:
                async with deadline(timeout, self._timed_out, when=until):
                    document = await queue.get()
                if document is None:
                    break
                yield document
            await producer  # re-raises an unexpected error of a worker
        finally:
            await _cancel_and_wait(producer)

    async def _produce(
        self, files: Iterable[FileInfo], queue: asyncio.Queue[Document | None]
    ) -> None:
        """Run the worker pool, then put the end marker ``None``."""
        pending = iter(files)
        workers = self.config.max_open_files
        if isinstance(files, Sized):
            workers = min(workers, len(files))
        try:
            async with asyncio.TaskGroup() as group:
                for number in range(workers):
                    group.create_task(self._work(pending, queue), name=f"rag-loader-{number}")
        except Exception:
            await queue.put(None)  # wake the consumer, which then re-raises via the task
            raise
        await queue.put(None)

    async def _work(
        self, pending: Iterator[FileInfo], queue: asyncio.Queue[Document | None]
    ) -> None:
        for file in pending:  # workers share the iterator: each file is read exactly once
            try:
                document = await self.aload_file(file)
            except LoadingError as exc:
                self._report(exc)
                continue
            if document is not None:
                await queue.put(document)

    async def alazy_load(self, *, timeout: float | None = None) -> AsyncGenerator[Document, None]:
        """Walk the root and yield its Documents in completion order (see class docs).

        Args:
            timeout: Seconds for the walk and the reads (as in :meth:`alazy_load_files`).

        Raises:
            LoadingError: The root does not exist or is neither a directory nor a file.
            RAGTimeoutError: ``timeout`` expired; the walk or the reads were cancelled.
        """
        until = deadline_at(timeout)
        async with deadline(timeout, self._timed_out, when=until):
            files = await self.ascan()
        async with aclosing(self._aload_files(files, timeout, until)) as documents:
            async for document in documents:
                yield document

    async def aload(self, *, timeout: float | None = None) -> list[Document]:
        """Every Document of the root (see :meth:`alazy_load`), within ``timeout`` seconds.

        Raises:
            LoadingError: The root does not exist or is neither a directory nor a file.
            RAGTimeoutError: ``timeout`` expired; nothing of the load runs on.
        """
        async with aclosing(self.alazy_load(timeout=timeout)) as documents:
            return [document async for document in documents]

    def _timed_out(self, seconds: float) -> RAGTimeoutError:
        return RAGTimeoutError(
            f"loading {printable(self.path)} did not finish within {seconds:g} s; "
            "allow more time (timeout=) or load fewer files (include/exclude globs)",
            timeout=seconds,
        )

    def lazy_load(self) -> Iterator[Document]:
        """Blocking twin of :meth:`alazy_load`: reads files one by one, in path order."""
        for file in self.scan():
            try:
                document = self.load_file(file)
            except LoadingError as exc:
                self._report(exc)
                continue
            if document is not None:
                yield document

    def _report(self, failure: LoadingError) -> None:
        self.failures.append(failure)
        get_logger(__name__).info("file_skipped", path=failure.path, reason=failure.reason)
        if self.on_error is not None:
            self.on_error(failure)
