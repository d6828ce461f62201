"""The one exception tree of langchain-rag-async.

Every error the library raises on purpose is a :class:`RAGError`::

    RAGError
    ├── ConfigurationError            a bad setting or argument (also a ValueError)
    │   └── ArgumentTypeError         an argument of the wrong type (also a TypeError)
    ├── UsageError                    a call the object's state forbids (also a RuntimeError):
    │                                 closed, not started, released more than acquired
    ├── LoadingError                  a file could not be read into a Document (path, reason)
    │   ├── BinaryFileError           the file is binary, not text
    │   ├── FileTooLargeError         the file exceeds the configured maximum size
    │   └── DecodingError             no text encoding fits the bytes
    ├── EmbeddingError                texts could not be embedded after retries (count, sources)
    │   └── EmbeddingResponseError    the service answered with unusable vectors or JSON
    ├── VectorStoreError              the vector index cannot be used
    │   ├── IndexCorruptedError       a saved index file is truncated, missing or malformed
    │   ├── IndexNotFoundError        no index was ever built in the directory
    │   ├── IndexLockedError          another process holds the index lock too long
    │   ├── EmbeddingModelMismatchError   the index was built with another embedding model
    │   ├── DuplicateIdError          ids added twice to a docstore (also a ValueError)
    │   └── DocumentNotFoundError     no document under an id (also a KeyError)
    ├── IndexingError                 the indexing pipeline failed as a whole (or broke an
    │   │                             internal invariant: a bug to report)
    │   └── ClockSkewError            a record would be stamped before ``time_at_least``
    ├── RetrievalError                a search could not be served
    ├── GenerationError               the answer model failed or timed out
    ├── Interrupted                   SIGINT/SIGTERM cancelled the work (signal number)
    ├── RAGTimeoutError               work outlived its ``timeout=`` and was cancelled, nothing
    │   │                             of it left running (also a TimeoutError; seconds)
    │   ├── EmbeddingTimeoutError     ... while embedding (also an EmbeddingError)
    │   ├── IndexingTimeoutError      ... an indexing run (also an IndexingError)
    │   ├── RetrievalTimeoutError     ... a search (also a RetrievalError)
    │   └── GenerationTimeoutError    ... an answer (also a GenerationError)
    └── RequestError                  the server refuses an HTTP request (status, code)

Errors carry context as attributes, chain their cause with ``raise ... from exc``
and their message says what to do next. Where callers of a LangChain interface expect a
builtin exception (a ``ValueError`` for a bad argument, a ``KeyError`` for a missing id),
the library error subclasses that builtin too, so ``except ValueError`` keeps working.
No deliberate error is a bare builtin, and ``assert`` is never a runtime check.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = (
    "ArgumentTypeError",
    "BinaryFileError",
    "ClockSkewError",
    "ConfigurationError",
    "DecodingError",
    "DocumentNotFoundError",
    "DuplicateIdError",
    "EmbeddingError",
    "EmbeddingModelMismatchError",
    "EmbeddingResponseError",
    "EmbeddingTimeoutError",
    "FileTooLargeError",
    "GenerationError",
    "GenerationTimeoutError",
    "IndexCorruptedError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexingError",
    "IndexingTimeoutError",
    "Interrupted",
    "LoadingError",
    "RAGError",
    "RAGTimeoutError",
    "RequestError",
    "RetrievalError",
    "RetrievalTimeoutError",
    "UsageError",
    "VectorStoreError",
)


class RAGError(Exception):
    """Base class of every error raised by langchain-rag-async."""


class ConfigurationError(RAGError, ValueError):
    """A setting or argument is missing, malformed or inconsistent with another one."""


class ArgumentTypeError(ConfigurationError, TypeError):
    """An argument has the wrong type (e.g. an unknown keyword, a number where text belongs)."""


class UsageError(RAGError, RuntimeError):
    """The object's state does not allow the call: it is closed, not started, or misused."""


class LoadingError(RAGError):
    """A file could not be turned into a Document.

    Attributes:
        path: The file that failed.
        reason: A short, human-readable reason (also used in indexing summaries).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BinaryFileError(LoadingError):
    """The file holds binary data, not text."""


class FileTooLargeError(LoadingError):
    """The file is larger than the configured maximum."""


class DecodingError(LoadingError):
    """No text encoding could decode the file."""


class EmbeddingError(RAGError):
    """Texts could not be embedded, even after retries.

    Attributes:
        failed_count: How many texts did not get a vector.
        sources: The distinct ``source`` values of the failed texts, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        failed_count: int = 0,
        sources: Sequence[str] = (),
    ) -> None:
        self.failed_count = failed_count
        self.sources = tuple(sources)
        detail = f" ({failed_count} text(s) failed"
        if self.sources:
            shown = ", ".join(self.sources[:5])
            more = f" and {len(self.sources) - 5} more" if len(self.sources) > 5 else ""
            detail += f", from {shown}{more}"
        detail += ")"
        super().__init__(message + (detail if failed_count else ""))


class EmbeddingResponseError(EmbeddingError):
    """The embedding service answered, but the answer cannot be used.

    Broken or malformed JSON, fewer or more vectors than texts, vectors of mixed or
    unexpected dimension, non-finite numbers. Nothing from such an answer is used; the
    request is retried like a transient failure.
    """


class VectorStoreError(RAGError):
    """The vector store cannot serve the request."""


class IndexCorruptedError(VectorStoreError):
    """A saved index file is truncated, missing or malformed.

    Attributes:
        path: The file that could not be read.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"index file {self.path} is unusable: {reason}. Run `rag-async doctor --repair` "
            "on its directory, restore it from a backup, or rebuild with `rag-async index`."
        )


class IndexNotFoundError(VectorStoreError):
    """No index has been built in the given directory.

    Attributes:
        index_dir: The directory that holds no index.
    """

    def __init__(self, index_dir: str | Path) -> None:
        self.index_dir = str(index_dir)
        super().__init__(
            f"no index found in {self.index_dir}. "
            f"Build one with `rag-async index PATH --index-dir {self.index_dir}`."
        )


class IndexLockedError(VectorStoreError):
    """Another process kept the index lock longer than the timeout."""


class EmbeddingModelMismatchError(VectorStoreError):
    """The index was built with a different embedding model than the one configured.

    Attributes:
        index_model: Identity of the model that built the index.
        configured_model: Identity of the model configured now.
    """

    def __init__(self, index_model: str, configured_model: str, where: str = "") -> None:
        self.index_model = index_model
        self.configured_model = configured_model
        location = f" in {where}" if where else ""
        super().__init__(
            f"the index{location} was built with embedding model {index_model}, "
            f"but {configured_model} is configured. Use the same model "
            "(--embeddings / RAG_EMBEDDINGS, RAG_EMBEDDING_MODEL) "
            "or rebuild into a new --index-dir."
        )


class DuplicateIdError(VectorStoreError, ValueError):
    """Ids were added that already exist where each id must be new.

    Attributes:
        ids: Some of the ids that exist already (at most ten).
    """

    def __init__(self, ids: Sequence[str], where: str = "the docstore") -> None:
        self.ids = tuple(ids)[:10]
        super().__init__(
            f"ids already exist in {where}: {list(self.ids)}. "
            "Delete them first or upsert (add_documents with the same ids replaces them)."
        )


class DocumentNotFoundError(VectorStoreError, KeyError):
    """No document is stored under the id(s) asked for.

    Attributes:
        ids: Some of the missing ids (at most ten).
    """

    def __init__(self, ids: Sequence[str], where: str = "the docstore") -> None:
        self.ids = tuple(ids)[:10]
        super().__init__(f"no document under id(s) {list(self.ids)} in {where}")

    def __str__(self) -> str:  # KeyError would print only the repr of the first argument
        return str(self.args[0])


class IndexingError(RAGError):
    """The indexing pipeline failed as a whole (not a single file)."""


class ClockSkewError(IndexingError):
    """A record manager write would be stamped before ``time_at_least``: the clock went back.

    LangChain's own record managers raise a bare ``AssertionError`` here; this library
    does not use assertion errors for runtime checks.
    """


class RetrievalError(RAGError):
    """A search could not be served."""


class GenerationError(RAGError):
    """The answer model failed or timed out."""


class Interrupted(RAGError):
    """A signal (SIGINT, SIGTERM) cancelled the work; it stopped in order.

    Attributes:
        signum: The signal's number; a command exits with ``128 + signum``.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")


class RAGTimeoutError(RAGError, TimeoutError):
    """Work did not finish within its ``timeout=``; it was cancelled and nothing of it runs on.

    Also a builtin :class:`TimeoutError`, so ``except TimeoutError`` keeps working. The
    subclasses say what timed out and are also the error of their kind (an
    :class:`EmbeddingTimeoutError` is an :class:`EmbeddingError`).

    Attributes:
        timeout: The seconds that were allowed.
    """

    def __init__(self, message: str, *, timeout: float | None = None) -> None:
        self.timeout = timeout
        super().__init__(message)

    def __str__(self) -> str:  # OSError would print its arguments' tuple for several
        return str(self.args[0]) if self.args else ""


class EmbeddingTimeoutError(RAGTimeoutError, EmbeddingError):
    """Embedding did not finish within its ``timeout=`` (how many texts, from which sources)."""

    def __init__(
        self,
        message: str,
        *,
        timeout: float | None = None,
        failed_count: int = 0,
        sources: Sequence[str] = (),
    ) -> None:
        EmbeddingError.__init__(self, message, failed_count=failed_count, sources=sources)
        self.timeout = timeout


class IndexingTimeoutError(RAGTimeoutError, IndexingError):
    """An indexing run did not finish within its ``timeout=`` (its last checkpoint is saved)."""


class RetrievalTimeoutError(RAGTimeoutError, RetrievalError):
    """A search did not finish within its ``timeout=``."""


class GenerationTimeoutError(RAGTimeoutError, GenerationError):
    """An answer was not complete within its ``timeout=``."""


class RequestError(RAGError):
    """The server refuses an HTTP request; rendered in OpenAI's error body shape.

    Attributes:
        status: The HTTP status code (4xx, or 503 when the index is not ready).
        message: What was wrong and what to do instead.
        type: OpenAI's error ``type`` (``invalid_request_error``, ``authentication_error``,
            ``rate_limit_error``, ``server_error``...).
        code: A short machine-readable code (``model_not_found``, ``invalid_api_key``...).
        param: The request field at fault, when one is.
        headers: Extra response headers (``Retry-After`` on a 429).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        super().__init__(message)

    def body(self) -> dict[str, object]:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
