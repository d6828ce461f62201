"""Async directory loader: a gitignore-aware walk and bounded, concurrent file reads.

:class:`AsyncDirectoryLoader` walks a tree off the event loop (include/exclude globs,
hidden files, nested ``.gitignore`` files, a size limit), then reads files with aiofiles
through a fixed pool of workers and yields each :class:`~langchain_core.documents.Document`
as soon as it is ready. A bad file never stops a run: it lands in
:attr:`AsyncDirectoryLoader.failures` with its path and reason.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sized
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import aiofiles
import pathspec
from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.aio.deadline import deadline, deadline_at
from langchain_rag_async.config import LoaderConfig
from langchain_rag_async.errors import FileTooLargeError, LoadingError, RAGTimeoutError
from langchain_rag_async.loaders._formats import (
    FileKind,
    extract_text,
    file_kind,
    is_supported,
    try_fast_text,
)
from langchain_rag_async.observability import get_logger, span

__all__ = ("AsyncDirectoryLoader", "FileInfo")

_INLINE_CONVERT_BYTES = 64 * 1024
"""UTF-8 text files up to this size are decoded on the loop; the rest go to an executor."""

ErrorHandler = Callable[[LoadingError], None]


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file found by the walk, not read yet.

    Attributes:
        path: Absolute, resolved path.
        size: Size in bytes when the walk saw it.
        mtime: Modification time (seconds since the epoch) when the walk saw it.
    """

    path: Path
    size: int
    mtime: float

    @property
    def source(self) -> str:
        """The path as a string: the ``source`` metadata of the loaded Document."""
        return str(self.path)


# --------------------------------------------------------------------------- the walk


@dataclass(frozen=True, slots=True)
class _IgnoreFile:
    """The rules of one ``.gitignore``; ``prefix`` is its directory relative to the root."""

    prefix: str
    spec: pathspec.GitIgnoreSpec


@dataclass(slots=True)
class _ScanResult:
    files: list[FileInfo] = field(default_factory=list)
    failures: list[LoadingError] = field(default_factory=list)


class _Walker:
    """One synchronous walk of a tree; :meth:`AsyncDirectoryLoader.ascan` runs it in a thread.

    Symbolic links to files are followed (and de-duplicated by target), links to
    directories are not, so the walk cannot loop. ``.git`` is never entered.
    """

    def __init__(self, root: Path, config: LoaderConfig, stop: threading.Event | None) -> None:
        self.root = root
        self.config = config
        self.stop = stop
        self.include = _glob_spec(config.include)
        self.exclude = _glob_spec(config.exclude)
        self.result = _ScanResult()
        self._seen: set[Path] = set()
        self._links: list[tuple[Path, os.stat_result]] = []

    def run(self) -> _ScanResult:
        """Walk the root (or take the single file it names) and return files and failures.

        Raises:
            LoadingError: The root does not exist or is neither a directory nor a file.
        """
        try:
            root_stat = self.root.stat()
        except FileNotFoundError as exc:
            raise LoadingError(
                _printable(self.root), "does not exist; pass an existing directory or file"
            ) from exc
        except OSError as exc:
            raise LoadingError(
                _printable(self.root),
                f"cannot be accessed ({exc.strerror}); check the path and permissions",
            ) from exc
        resolved = _utf8_path(self.root.resolve())
        if stat.S_ISDIR(root_stat.st_mode):
            self._walk_tree(resolved)
            for link, link_stat in self._links:
                target = link.resolve()
                if self._outside(target):
                    reason = f"links to {target}, outside the directories allowed; not read"
                    self.result.failures.append(LoadingError(link, reason))
                    continue
                self._add(link, link_stat, identity=target)
        elif stat.S_ISREG(root_stat.st_mode):  # named explicitly: no filters apply
            self._add(resolved, root_stat, identity=resolved)
        else:
            raise LoadingError(
                self.root, "is neither a directory nor a regular file; pass a directory or file"
            )
        self.result.files.sort(key=lambda info: info.path)
        return self.result

    def _walk_tree(self, root: Path) -> None:
        stack: list[tuple[Path, str, tuple[_IgnoreFile, ...]]] = [(root, "", ())]
        while stack:
            if self.stop is not None and self.stop.is_set():
                return
            directory, rel_dir, ignores = stack.pop()
            try:
                with os.scandir(directory) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)
            except OSError as exc:
                error = LoadingError(directory, _listing_reason(exc))
                if not rel_dir:
                    raise error from exc
                self.result.failures.append(error)
                continue
            ignores = self._read_gitignore(directory, rel_dir, entries, ignores)
            for entry in entries:
                self._visit(entry, rel_dir, ignores, stack)

    def _visit(
        self,
        entry: os.DirEntry[str],
        rel_dir: str,
        ignores: tuple[_IgnoreFile, ...],
        stack: list[tuple[Path, str, tuple[_IgnoreFile, ...]]],
    ) -> None:
        name = entry.name
        if name == ".git" or (name.startswith(".") and not self.config.include_hidden):
            return
        if not _is_utf8(name):
            # Such a name cannot be stored in the index (JSON, SQLite) nor given a chunk id.
            self.result.failures.append(
                LoadingError(
                    _printable(entry.path), "its name is not valid UTF-8; rename it to index it"
                )
            )
            return
        rel = f"{rel_dir}/{name}" if rel_dir else name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            if not _ignored(rel + "/", ignores) and not _matches(self.exclude, rel + "/"):
                stack.append((Path(entry.path), rel, ignores))
            return
        if _ignored(rel, ignores) or not self._selected(rel):
            return
        self._stat_and_add(Path(entry.path), is_link=entry.is_symlink())

    def _outside(self, target: Path) -> bool:
        """Whether ``target`` lies outside every ``confine_to`` directory (if any are set)."""
        roots = [Path(os.path.realpath(root)) for root in self.config.confine_to]
        return bool(roots) and not any(target == r or r in target.parents for r in roots)

    def _selected(self, rel: str) -> bool:
        if _matches(self.exclude, rel):
            return False
        if self.include is not None:
            return _matches(self.include, rel)
        return is_supported(PurePosixPath(rel))

    def _stat_and_add(self, path: Path, *, is_link: bool) -> None:
        try:
            file_stat = path.stat()
        except FileNotFoundError:
            reason = "broken symbolic link; fix or remove it" if is_link else "vanished; run again"
            self.result.failures.append(LoadingError(path, reason))
            return
        except OSError as exc:
            self.result.failures.append(_os_error(path, exc))
            return
        if stat.S_ISREG(file_stat.st_mode):  # skips linked directories, FIFOs, sockets, devices
            # A link keeps its own path as the source (so removing the link removes its
            # chunks), but a file reached twice (link and target) is read once, under its
            # own name: links are added after the walk, once every real file is known.
            if is_link:
                self._links.append((path, file_stat))
            else:
                self._add(path, file_stat, identity=path)

    def _add(self, path: Path, file_stat: os.stat_result, *, identity: Path) -> None:
        if identity in self._seen:
            return
        self._seen.add(identity)
        limit = self.config.max_file_size
        if file_stat.st_size > limit:
            self.result.failures.append(_too_large(path, file_stat.st_size, limit))
            return
        self.result.files.append(FileInfo(path, file_stat.st_size, file_stat.st_mtime))

    def _read_gitignore(
        self,
        directory: Path,
        rel_dir: str,
        entries: list[os.DirEntry[str]],
        ignores: tuple[_IgnoreFile, ...],
    ) -> tuple[_IgnoreFile, ...]:
        if not self.config.respect_gitignore or not any(e.name == ".gitignore" for e in entries):
            return ignores
        gitignore = directory / ".gitignore"
        try:
            lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            self.result.failures.append(
                LoadingError(gitignore, f"cannot be read ({exc.strerror}); its rules were skipped")
            )
            return ignores
        prefix = f"{rel_dir}/" if rel_dir else ""
        return (*ignores, _IgnoreFile(prefix, pathspec.GitIgnoreSpec.from_lines(lines)))


def _glob_spec(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec | None:
    """Compile include/exclude globs with gitignore rules (``*.md`` matches at any depth)."""
    return pathspec.GitIgnoreSpec.from_lines(patterns) if patterns else None


def _matches(spec: pathspec.GitIgnoreSpec | None, rel: str) -> bool:
    return spec is not None and bool(spec.match_file(rel))


def _ignored(rel: str, ignores: tuple[_IgnoreFile, ...]) -> bool:
    """Apply ``.gitignore`` files deepest first; the first one with a matching rule decides."""
    for ignore in reversed(ignores):
        result = ignore.spec.check_file(rel[len(ignore.prefix) :])
        if result.include is not None:
            return bool(result.include)
    return False


# ----------------------------------------------------------------- shared file helpers


def _file_info(path: Path, limit: int) -> FileInfo:
    """Stat one file named by the caller (blocking).

    Raises:
        LoadingError: The file is missing, unreadable, not a regular file or too large.
    """
    try:
        resolved = path.resolve(strict=True)
        file_stat = resolved.stat()
    except OSError as exc:
        raise _os_error(_printable(path), exc) from exc
    _utf8_path(resolved)
    if not stat.S_ISREG(file_stat.st_mode):
        raise LoadingError(path, "is not a regular file; pass the path of a file")
    if file_stat.st_size > limit:
        raise _too_large(resolved, file_stat.st_size, limit)
    return FileInfo(resolved, file_stat.st_size, file_stat.st_mtime)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes came in as lone surrogates
        return False
    return True


def _printable(path: str | Path) -> str:
    r"""``path`` with bytes that are not UTF-8 shown as ``\xNN`` escapes (for messages)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8_path(path: Path) -> Path:
    """Return ``path`` when it is valid UTF-8, which every source stored in the index is.

    Raises:
        LoadingError: The path (a folder above the file, typically) is not valid UTF-8.
    """
    if not _is_utf8(str(path)):
        raise LoadingError(
            _printable(path),
            "its path is not valid UTF-8, so no file under it can be named in the index; "
            "rename the folder or file to index it",
        )
    return path


_TOO_LONG = "its path is longer than the system allows; move it higher up or exclude it"


def _listing_reason(exc: OSError) -> str:
    """Why a directory could not be listed, and what to do about it."""
    if exc.errno == errno.ENAMETOOLONG:
        return f"cannot list directory: {_TOO_LONG}"
    return f"cannot list directory ({exc.strerror}); check its permissions"


def _os_error(path: str | Path, exc: OSError) -> LoadingError:
    """Translate an OS error on one file into a LoadingError whose reason says what to do."""
    if isinstance(exc, FileNotFoundError):
        reason = "does not exist (deleted or moved during the run, or a broken link); run again"
    elif isinstance(exc, PermissionError):
        reason = "permission denied; grant read access or exclude the file"
    elif isinstance(exc, IsADirectoryError):
        reason = "is a directory, not a file"
    elif exc.errno == errno.ENAMETOOLONG:
        reason = _TOO_LONG
    elif exc.errno == errno.ELOOP:
        reason = "symbolic link loop (the link leads back to itself); fix or remove it"
    else:
        reason = f"cannot be read ({exc.strerror or exc}); check the file and run again"
    return LoadingError(path, reason)


def _too_large(path: str | Path, size: int, limit: int) -> FileTooLargeError:
    return FileTooLargeError(
        path,
        f"{size} bytes exceeds max_file_size={limit}; raise it (RAG_MAX_FILE_SIZE, "
        "LoaderConfig.max_file_size) or exclude the file",
    )


def _checked_size(path: Path, raw: bytes, limit: int) -> bytes:
    if len(raw) > limit:  # the file grew after the walk
        raise _too_large(path, len(raw), limit)
    return raw


async def _aread(path: Path, limit: int) -> bytes:
    """Read at most ``limit`` bytes with aiofiles (one more, to notice a file that grew)."""
    try:
        async with aiofiles.open(path, "rb") as handle:
            raw = await handle.read(limit + 1)
    except OSError as exc:
        raise _os_error(path, exc) from exc
    return _checked_size(path, raw, limit)


def _read(path: Path, limit: int) -> bytes:
    """Blocking twin of :func:`_aread`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise _os_error(path, exc) from exc
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
        walker = _Walker(self.path, self.config, stop)
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
        return self._finish_scan(_Walker(self.path, self.config, None).run())

    def _finish_scan(self, result: _ScanResult) -> list[FileInfo]:
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
                file = await run_in_executor(None, _file_info, file, limit)
            raw = await _aread(file.path, limit)
            return await _aconvert(file, raw)

    def load_file(self, file: FileInfo | Path) -> Document | None:
        """Blocking twin of :meth:`aload_file`."""
        limit = self.config.max_file_size
        with span("load_file", path=str(file.path if isinstance(file, FileInfo) else file)):
            if not isinstance(file, FileInfo):
                file = _file_info(file, limit)
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
            f"loading {_printable(self.path)} did not finish within {seconds:g} s; "
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
