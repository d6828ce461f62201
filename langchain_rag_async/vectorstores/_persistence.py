"""Crash-safe, pickle-free on-disk format of :class:`AsyncFAISS` indexes.

A folder holds one or more *generations*; ``manifest.json`` names the current one::

    manifest.json          format_version, generation, files (name, sha256, size),
                           embedding_model_id, dimension, distance_strategy,
                           normalize_L2, counts
    index.<gen>.faiss      the FAISS index (``faiss.serialize_index``)
    docstore.<gen>.json    documents in index order: id, page_content, metadata
    .lock                  cross-process lock (``filelock``)

A save writes the new generation's files through a temporary file, ``fsync`` and
``os.replace``, then swaps the manifest the same way, ``fsync``s the directory and only
then removes older generations. A crash at any point leaves the previous manifest and
its files intact. Loading checks size and SHA-256 of every file before parsing it.
With another ``index_name`` than ``"index"`` the names get that prefix
(``<name>.manifest.json``, ``<name>.<gen>.faiss``, ``<name>.docstore.<gen>.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import filelock
import numpy as np
from langchain_core.documents import Document

from langchain_rag_async.errors import (
    EmbeddingModelMismatchError,
    IndexCorruptedError,
    IndexLockedError,
    IndexNotFoundError,
    VectorStoreError,
)
from langchain_rag_async.observability import get_logger, span

__all__ = (
    "DEFAULT_LOCK_TIMEOUT",
    "FORMAT_VERSION",
    "IndexSnapshot",
    "LoadedIndex",
    "check_vector_count",
    "has_legacy_files",
    "has_manifest",
    "leftover_generation_files",
    "read_index",
    "read_manifest",
    "read_verified_documents",
    "remove_stale_generations",
    "stale_generation_files",
    "write_index",
)

FORMAT_NAME = "langchain-rag-async/faiss"
FORMAT_VERSION = 1
DEFAULT_LOCK_TIMEOUT = 30.0
LOCK_FILE = ".lock"

_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Names:
    """File names of one index inside a folder."""

    index_name: str

    @property
    def _stem(self) -> str:
        return "" if self.index_name == "index" else f"{self.index_name}."

    @property
    def manifest(self) -> str:
        return f"{self._stem}manifest.json"

    def index_file(self, generation: int) -> str:
        return f"{self.index_name}.{generation}.faiss"

    def docstore_file(self, generation: int) -> str:
        return f"{self._stem}docstore.{generation}.json"

    def generation_of(self, name: str) -> int | None:
        """The generation of a data file of this index (temp files included), else None."""
        stem, index_name = re.escape(self._stem), re.escape(self.index_name)
        pattern = rf"\.?(?:{index_name}\.(\d+)\.faiss|{stem}docstore\.(\d+)\.json)(?:\.\w+\.tmp)?"
        match = re.fullmatch(pattern, name)
        if match is None:
            return None
        return int(match.group(1) or match.group(2))


@dataclass(frozen=True, kw_only=True, slots=True)
class IndexSnapshot:
    """A consistent copy of a store's state, taken under its read lock.

    Attributes:
        index_bytes: ``faiss.serialize_index`` output; ``None`` while the store has no index.
        documents: ``(id, page_content, metadata)`` in index order.
        embedding_model_id: Identity of the embedding model, if known.
        dimension: Vector width; ``None`` while the store has no index.
        distance_strategy: The ``DistanceStrategy`` value.
        normalize_L2: Whether vectors are L2-normalised before they reach FAISS.
    """

    index_bytes: bytes | None
    documents: list[tuple[str, str, dict[str, Any]]]
    embedding_model_id: str | None
    dimension: int | None
    distance_strategy: str
    normalize_L2: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadedIndex:
    """What a verified generation holds.

    Attributes:
        index: The FAISS index, or ``None`` if the saved store had none yet.
        documents: Documents in index order, ``id`` set.
        manifest: The manifest that described them.
    """

    index: Any | None
    documents: list[Document]
    manifest: dict[str, Any] = field(repr=False)


def has_manifest(folder: str | Path, index_name: str = "index") -> bool:
    """Whether ``folder`` holds a manifest of the pickle-free format."""
    return (Path(folder) / _Names(index_name).manifest).is_file()


def has_legacy_files(folder: str | Path, index_name: str = "index") -> bool:
    """Whether ``folder`` holds a LangChain pickle index (``index.faiss`` + ``index.pkl``)."""
    path = Path(folder)
    return (path / f"{index_name}.faiss").is_file() and (path / f"{index_name}.pkl").is_file()


def read_manifest(folder: str | Path, index_name: str = "index") -> dict[str, Any] | None:
    """Read and check the manifest of the index saved in ``folder``.

    Cheap (one small file): use it to check ``embedding_model_id`` before loading.

    Args:
        folder: The index folder.
        index_name: Name of the index inside the folder.

    Returns:
        The manifest, or ``None`` when ``folder`` holds no manifest.

    Raises:
        IndexCorruptedError: The manifest is not valid JSON or lacks a field.
        VectorStoreError: The manifest was written by a newer format version.
    """
    path = Path(folder) / _Names(index_name).manifest
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IndexCorruptedError(path, f"cannot be read ({exc})") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptedError(path, f"is not valid JSON ({exc})") from exc
    return _check_manifest(data, path)


def _check_manifest(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise IndexCorruptedError(path, f"is not a {FORMAT_NAME} manifest")
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise VectorStoreError(
            f"{path} uses index format {version}, newer than this version of "
            f"langchain-rag-async understands ({FORMAT_VERSION}); upgrade the package."
        )
    expected: dict[str, type | tuple[type, ...]] = {
        "format_version": int,
        "generation": int,
        "files": dict,
        "counts": dict,
        "distance_strategy": str,
        "normalize_L2": bool,
        "dimension": (int, type(None)),
        "embedding_model_id": (str, type(None)),
    }
    for key, kind in expected.items():
        if not isinstance(data.get(key), kind) or (key not in data):
            raise IndexCorruptedError(path, f"field {key!r} is missing or malformed")
    files, counts = data["files"], data["counts"]
    entries = [files.get("docstore")] + ([files["index"]] if "index" in files else [])
    for entry in entries:
        if not (
            isinstance(entry, dict)
            and _is_plain_name(entry.get("name"))
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
        ):
            raise IndexCorruptedError(path, f"file entry {entry!r} is malformed")
    if not all(isinstance(counts.get(k), int) for k in ("vectors", "documents")):
        raise IndexCorruptedError(path, "field 'counts' is malformed")
    return data


def _is_plain_name(name: object) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


@contextmanager
def _folder_lock(folder: Path, timeout: float, *, for_reading: bool = False) -> Iterator[None]:
    """Hold the folder's cross-process lock; a read-only folder is read unlocked."""
    lock = filelock.FileLock(folder / LOCK_FILE, timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise IndexLockedError(
            f"{folder / LOCK_FILE} is held by another process for more than {timeout} s. "
            "Wait for the other indexing run to finish, or raise lock_timeout."
        ) from exc
    except OSError:
        if not for_reading:
            raise
        _log.debug("index folder is read-only; reading without the lock", folder=str(folder))
        yield
        return
    try:
        yield
    finally:
        lock.release()


# -- writing ---------------------------------------------------------------------------


def write_index(
    folder: str | Path,
    take_snapshot: Callable[[], IndexSnapshot],
    *,
    index_name: str = "index",
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> dict[str, Any]:
    """Save the state ``take_snapshot()`` returns as a new generation, atomically.

    The snapshot is taken while the folder lock is held, so the order of generations on
    disk is the order in which their states were captured. Blocking: call it from a
    worker thread in async code.

    Args:
        folder: The index folder (created if missing).
        take_snapshot: Captures the state to save (e.g. under the store's read lock).
        index_name: Name of the index inside the folder.
        lock_timeout: Seconds to wait for the folder lock.

    Returns:
        The new manifest.

    Raises:
        VectorStoreError: Metadata is not JSON-serialisable, or the files could not be
            written (the previous generation stays intact).
        IndexLockedError: Another process held the lock longer than ``lock_timeout``.
    """
    path, names = Path(folder), _Names(index_name)
    with span("vectorstore.save", path=str(path)) as current:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with _folder_lock(path, lock_timeout):
                snapshot = take_snapshot()
                current.set_attribute("documents", len(snapshot.documents))
                return _commit_generation(path, names, snapshot)
        except OSError as exc:
            writing = f" (writing {Path(exc.filename).name})" if exc.filename else ""
            raise VectorStoreError(
                f"could not save the index to {path}{writing}: {exc.strerror or exc}. The "
                "previously saved generation is intact; check free space and permissions, "
                "then save again."
            ) from exc


def _commit_generation(path: Path, names: _Names, snapshot: IndexSnapshot) -> dict[str, Any]:
    """Write the data files, then swap the manifest, then drop older generations."""
    generation = _next_generation(path, names)
    files: dict[str, dict[str, Any]] = {}
    try:
        if snapshot.index_bytes is not None:
            index_path = path / names.index_file(generation)
            files["index"] = _commit_file(index_path, snapshot.index_bytes)
        docstore_path = path / names.docstore_file(generation)
        files["docstore"] = _commit_file(docstore_path, _encode_documents(snapshot.documents))
        manifest = _manifest(snapshot, generation, files)
        _write_atomic(path / names.manifest, json.dumps(manifest, indent=2).encode())
    except BaseException:  # a full disk, metadata that is not JSON (found while writing)
        # No manifest names this generation: its files would only wait for the next save.
        for entry in files.values():
            (path / entry["name"]).unlink(missing_ok=True)
        raise
    _fsync_dir(path)
    _remove_other_generations(path, names, keep=generation)
    return manifest


def _manifest(
    snapshot: IndexSnapshot, generation: int, files: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "generation": generation,
        "created_at": datetime.now(UTC).isoformat(),
        "embedding_model_id": snapshot.embedding_model_id,
        "dimension": snapshot.dimension,
        "distance_strategy": snapshot.distance_strategy,
        "normalize_L2": snapshot.normalize_L2,
        "counts": {"vectors": len(snapshot.documents), "documents": len(snapshot.documents)},
        "files": files,
    }


def _encode_documents(documents: list[tuple[str, str, dict[str, Any]]]) -> Iterator[bytes]:
    """The docstore file, a document at a time: the bytes ``json.dumps`` gives for the whole.

    Encoding it in one piece held the text of every chunk twice more at the save (the JSON
    string and its bytes, plus a dict per row), the peak of a run's memory.
    """
    yield f'{{"format_version": {json.dumps(FORMAT_VERSION)}, "documents": ['.encode()
    for number, (doc_id, text, meta) in enumerate(documents):
        row = {"id": doc_id, "page_content": text, "metadata": meta}
        try:
            encoded = json.dumps(row).encode()
        except (TypeError, ValueError) as exc:
            raise _metadata_error(documents, exc) from exc
        yield b", " + encoded if number else encoded
    yield b"]}"


def _metadata_error(
    documents: list[tuple[str, str, dict[str, Any]]], exc: Exception
) -> VectorStoreError:
    for doc_id, _, metadata in documents:
        for key, value in metadata.items():
            try:
                json.dumps({key: value})
            except (TypeError, ValueError):
                return VectorStoreError(
                    f"metadata key {key!r} of document {doc_id!r} holds a "
                    f"{type(value).__name__}, which is not JSON-serialisable. Store it as "
                    "str, number, bool, None, list or dict before adding the document."
                )
    return VectorStoreError(f"the documents cannot be written as JSON: {exc}")


def _next_generation(folder: Path, names: _Names) -> int:
    try:
        current = read_manifest(folder, names.index_name)
    except IndexCorruptedError:
        current = None  # replaced by this save; never reuse the number of a file on disk
    seen = [names.generation_of(entry.name) for entry in os.scandir(folder)]
    known = [g for g in seen if g is not None]
    if current is not None:
        known.append(current["generation"])
    return max(known, default=0) + 1


def _commit_file(path: Path, data: bytes | Iterable[bytes]) -> dict[str, Any]:
    digest, size = hashlib.sha256(), 0

    def pieces() -> Iterator[bytes]:
        nonlocal size
        for piece in [data] if isinstance(data, bytes) else data:
            digest.update(piece)
            size += len(piece)
            yield piece

    _write_atomic(path, pieces())
    return {"name": path.name, "sha256": digest.hexdigest(), "size": size}


def _write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (or its pieces) to ``path`` through a fsynced temp file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            for piece in [data] if isinstance(data, bytes) else data:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write or fsync does not say which file
            exc.filename = str(path)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _remove_other_generations(folder: Path, names: _Names, *, keep: int) -> None:
    manifest_tmp = re.compile(rf"\.{re.escape(names.manifest)}\.\w+\.tmp")
    for entry in os.scandir(folder):
        generation = names.generation_of(entry.name)
        stale = generation is not None and generation != keep
        if stale or manifest_tmp.fullmatch(entry.name):
            try:
                os.unlink(entry.path)
            except OSError as exc:  # a stale file wastes space but harms nothing
                _log.warning("could not remove old index file", path=entry.path, error=str(exc))


def stale_generation_files(folder: str | Path, index_name: str = "index") -> list[Path]:
    """Files of generations the manifest does not name, and leftover temporary manifests.

    A crash between a commit and its clean-up leaves them; nothing without a manifest.
    """
    path, names = Path(folder), _Names(index_name)
    manifest = read_manifest(path, index_name)
    if manifest is None:
        return []
    keep = int(manifest["generation"])
    manifest_tmp = re.compile(rf"\.{re.escape(names.manifest)}\.\w+\.tmp")
    return sorted(
        Path(entry.path)
        for entry in os.scandir(path)
        if (names.generation_of(entry.name) not in (None, keep))
        or manifest_tmp.fullmatch(entry.name)
    )


def leftover_generation_files(folder: str | Path, index_name: str = "index") -> list[Path]:
    """Committed data files of any generation in a folder whose manifest is missing.

    A crash during the first save can leave them (the manifest is written last); so can
    a lost manifest. Temporary files do not count.
    """
    path, names = Path(folder), _Names(index_name)
    if (path / names.manifest).exists() or not path.is_dir():
        return []
    return sorted(
        Path(entry.path)
        for entry in os.scandir(path)
        if not entry.name.endswith(".tmp") and names.generation_of(entry.name) is not None
    )


def remove_stale_generations(
    folder: str | Path, index_name: str = "index", lock_timeout: float = DEFAULT_LOCK_TIMEOUT
) -> None:
    """Delete :func:`stale_generation_files`, holding the folder's lock as a save does."""
    path, names = Path(folder), _Names(index_name)
    with _folder_lock(path, lock_timeout):
        manifest = read_manifest(path, index_name)
        if manifest is not None:
            _remove_other_generations(path, names, keep=int(manifest["generation"]))


# -- reading ---------------------------------------------------------------------------


def read_index(
    folder: str | Path,
    *,
    index_name: str = "index",
    expected_model_id: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> LoadedIndex:
    """Load and verify the current generation saved in ``folder``.

    Blocking: call it from a worker thread in async code.

    Args:
        folder: The index folder.
        index_name: Name of the index inside the folder.
        expected_model_id: Refuse an index built with another embedding model.
        lock_timeout: Seconds to wait for the folder lock.

    Returns:
        The verified index, documents and manifest.

    Raises:
        IndexNotFoundError: ``folder`` holds no manifest.
        IndexCorruptedError: A file is missing, truncated or malformed.
        EmbeddingModelMismatchError: The stored model differs from ``expected_model_id``.
        IndexLockedError: Another process held the lock longer than ``lock_timeout``.
    """
    path, names = Path(folder), _Names(index_name)
    if not path.is_dir():
        raise IndexNotFoundError(path)
    with (
        span("vectorstore.load", path=str(path)),
        _folder_lock(path, lock_timeout, for_reading=True),
    ):
        manifest = read_manifest(path, index_name)
        if manifest is None:
            raise IndexNotFoundError(path)
        stored = manifest["embedding_model_id"]
        if expected_model_id is not None and stored is not None and stored != expected_model_id:
            raise EmbeddingModelMismatchError(stored, expected_model_id, where=str(path))
        files = manifest["files"]
        index = None
        if "index" in files:
            index_path = path / files["index"]["name"]
            index = _deserialize_index(_read_checked(index_path, files["index"]), index_path)
        docs_path = path / files["docstore"]["name"]
        documents = _decode_documents(_read_checked(docs_path, files["docstore"]), docs_path)
    _check_counts(path / names.manifest, manifest, index, documents, files)
    return LoadedIndex(index=index, documents=documents, manifest=manifest)


def read_verified_documents(folder: str | Path, index_name: str = "index") -> list[Document] | None:
    """The documents of the current generation when its manifest and docstore are intact.

    Unlike :func:`read_index` it neither needs nor reads the FAISS file: the documents
    of a generation whose FAISS file was lost are still good to rebuild it. Takes no lock
    (a save replaces files atomically, and the checksums reject a torn read).

    Returns:
        The documents in index order, or ``None`` when the manifest or the docstore is
        missing or damaged.
    """
    path = Path(folder)
    try:
        manifest = read_manifest(path, index_name)
        if manifest is None:
            return None
        entry = manifest["files"]["docstore"]
        docs_path = path / entry["name"]
        documents = _decode_documents(_read_checked(docs_path, entry), docs_path)
    except IndexCorruptedError:
        return None
    if len(documents) != manifest["counts"]["documents"]:
        return None
    return documents


def _read_checked(path: Path, entry: dict[str, Any]) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise IndexCorruptedError(path, "the file is missing") from exc
    except OSError as exc:
        raise IndexCorruptedError(path, f"cannot be read ({exc})") from exc
    if len(data) != entry["size"]:
        raise IndexCorruptedError(
            path, f"it has {len(data)} bytes but the manifest records {entry['size']} (truncated?)"
        )
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise IndexCorruptedError(path, "its SHA-256 checksum does not match the manifest")
    return data


def _deserialize_index(data: bytes, path: Path) -> Any:
    import faiss

    try:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except (RuntimeError, ValueError) as exc:
        raise IndexCorruptedError(path, f"FAISS cannot read it ({exc})") from exc


def _decode_documents(data: bytes, path: Path) -> list[Document]:
    try:
        payload = json.loads(data)
        rows = payload["documents"]
        documents = [
            Document(id=row["id"], page_content=row["page_content"], metadata=row["metadata"])
            for row in rows
        ]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptedError(path, f"it is not a valid docstore ({exc!r})") from exc
    if not all(isinstance(doc.id, str) for doc in documents):
        raise IndexCorruptedError(path, "a document has no string id")
    if len({doc.id for doc in documents}) != len(documents):
        raise IndexCorruptedError(path, "it holds the same document id twice")
    return documents


def check_vector_count(
    index: Any | None, documents: int, path: Path, *, recorded: int | None = None
) -> int:
    """Check that a loaded FAISS ``index`` holds one vector per document.

    The one vector-count check of every load (the manifest format and legacy pickles).

    Args:
        index: The FAISS index, or ``None`` for a store that never held a vector.
        documents: How many documents (or id-map entries) came with it.
        path: The file to blame.
        recorded: The vector count a manifest records, when there is one.

    Returns:
        The number of vectors.

    Raises:
        IndexCorruptedError: The counts differ.
    """
    vectors = 0 if index is None else int(index.ntotal)
    if vectors != documents or (recorded is not None and vectors != recorded):
        detail = "" if recorded is None else f" (the manifest records {recorded} vectors)"
        raise IndexCorruptedError(
            path, f"it holds {vectors} vectors for {documents} documents{detail}"
        )
    return vectors


def _check_counts(
    manifest_path: Path,
    manifest: dict[str, Any],
    index: Any | None,
    documents: list[Document],
    files: dict[str, Any],
) -> None:
    counts = manifest["counts"]
    folder = manifest_path.parent
    if len(documents) != counts["documents"]:
        raise IndexCorruptedError(
            folder / files["docstore"]["name"],
            f"it holds {len(documents)} documents but the manifest records {counts['documents']}",
        )
    where = folder / files["index"]["name"] if "index" in files else manifest_path
    check_vector_count(index, len(documents), where, recorded=counts["vectors"])
    if index is not None and int(index.d) != manifest["dimension"]:
        raise IndexCorruptedError(
            where,
            f"its vectors have {index.d} dimensions, the manifest says {manifest['dimension']}",
        )
