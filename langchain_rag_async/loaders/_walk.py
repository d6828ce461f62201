"""The walk of a directory tree, and the stat-level checks of one file (no reading).

:class:`Walker` runs synchronously (``AsyncDirectoryLoader.ascan`` puts it in a thread):
include/exclude globs, hidden files, nested ``.gitignore`` files, symbolic links, the size
limit. Its failures say what to do next, like every :class:`LoadingError`.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pathspec

from langchain_rag_async.config import LoaderConfig
from langchain_rag_async.errors import FileTooLargeError, LoadingError
from langchain_rag_async.loaders._formats import is_supported

__all__ = ("FileInfo", "ScanResult", "Walker", "file_info", "os_error", "printable", "too_large")


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
class ScanResult:
    files: list[FileInfo] = field(default_factory=list)
    failures: list[LoadingError] = field(default_factory=list)


class Walker:
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
        self.result = ScanResult()
        self._seen: set[Path] = set()
        self._links: list[tuple[Path, os.stat_result]] = []

    def run(self) -> ScanResult:
        """Walk the root (or take the single file it names) and return files and failures.

        Raises:
            LoadingError: The root does not exist or is neither a directory nor a file.
        """
        try:
            root_stat = self.root.stat()
        except FileNotFoundError as exc:
            raise LoadingError(
                printable(self.root), "does not exist; pass an existing directory or file"
            ) from exc
        except OSError as exc:
            raise LoadingError(
                printable(self.root),
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
                    printable(entry.path), "its name is not valid UTF-8; rename it to index it"
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
            self.result.failures.append(os_error(path, exc))
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
            self.result.failures.append(too_large(path, file_stat.st_size, limit))
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


def file_info(path: Path, limit: int) -> FileInfo:
    """Stat one file named by the caller (blocking).

    Raises:
        LoadingError: The file is missing, unreadable, not a regular file or too large.
    """
    try:
        resolved = path.resolve(strict=True)
        file_stat = resolved.stat()
    except OSError as exc:
        raise os_error(printable(path), exc) from exc
    _utf8_path(resolved)
    if not stat.S_ISREG(file_stat.st_mode):
        raise LoadingError(path, "is not a regular file; pass the path of a file")
    if file_stat.st_size > limit:
        raise too_large(resolved, file_stat.st_size, limit)
    return FileInfo(resolved, file_stat.st_size, file_stat.st_mtime)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes came in as lone surrogates
        return False
    return True


def printable(path: str | Path) -> str:
    r"""``path`` with bytes that are not UTF-8 shown as ``\xNN`` escapes (for messages)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8_path(path: Path) -> Path:
    """Return ``path`` when it is valid UTF-8, which every source stored in the index is.

    Raises:
        LoadingError: The path (a folder above the file, typically) is not valid UTF-8.
    """
    if not _is_utf8(str(path)):
        raise LoadingError(
            printable(path),
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


def os_error(path: str | Path, exc: OSError) -> LoadingError:
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


def too_large(path: str | Path, size: int, limit: int) -> FileTooLargeError:
    return FileTooLargeError(
        path,
        f"{size} bytes exceeds max_file_size={limit}; raise it (RAG_MAX_FILE_SIZE, "
        "LoaderConfig.max_file_size) or exclude the file",
    )
