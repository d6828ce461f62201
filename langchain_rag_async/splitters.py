"""Cut Documents into chunks with deterministic ids, as an LCEL Runnable.

:class:`RunnableTextSplitter` wraps LangChain's ``RecursiveCharacterTextSplitter``:
Markdown files split on headings first (a heading stays with its section), source code
on its language's definitions, everything else on paragraphs, lines and words.
Splitting is CPU-bound: the async methods run it in an executor, except for documents
small enough to split in about a millisecond (:data:`INLINE_SPLIT_CHARS`), split on the loop.

Every chunk gets a stable id, :func:`~langchain_rag_async.ids.chunk_id`, derived from
its source, its position and the sha256 of its text
(:func:`~langchain_rag_async.ids.content_hash`); both live in :mod:`langchain_rag_async.ids`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import PurePath
from typing import Any

from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import run_in_executor
from langchain_text_splitters import Language, RecursiveCharacterTextSplitter
from pydantic import ConfigDict, Field

from langchain_rag_async.config import SplitterConfig
from langchain_rag_async.ids import chunk_id, content_hash
from langchain_rag_async.observability import span

__all__ = ("RunnableTextSplitter",)

_NON_SPACE = re.compile(r"\S")
_SPACE = re.compile(r"\s")
_WINDOW_CHUNKS = 256
"""Texts longer than this many chunks are split one window at a time.

LangChain's splitter first cuts the whole text at a separator, keeping every piece: a
10 MB single line becomes 1.7 million words (or, with no space at all, 10 million
characters), some 30 times the text's size in memory. Windows of ``256 * chunk_size``
characters, cut at a paragraph, a line or a word, bound that to a few MB whatever the
file size; texts under one window (nearly all) split exactly as before.
"""
_WINDOW_CUTS = ("\n\n", "\n", " ")
INLINE_SPLIT_CHARS = 16 * 1024
"""Documents up to this many characters are split on the event loop by the async methods.

Splitting takes about 70 µs per KiB here (the rust-book's median file, 9.6 KiB, 0.5 ms;
16 KiB, about 1.1 ms): less than a hop to an executor thread costs the loop once it waits
for the GIL back from the thread that splits (the GIL is released to other threads only
every 5 ms), and far below the 20 ms stall budget. Larger documents go to the executor.
"""
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx"})

# Only languages whose separators end with paragraphs, lines and words; the others
# (HTML, LaTeX, COBOL, ...) would cut loader-extracted plain text mid-word.
_CODE_LANGUAGES: dict[str, Language] = {
    ".c": Language.C,
    ".h": Language.C,
    ".cc": Language.CPP,
    ".cpp": Language.CPP,
    ".cxx": Language.CPP,
    ".hh": Language.CPP,
    ".hpp": Language.CPP,
    ".cs": Language.CSHARP,
    ".ex": Language.ELIXIR,
    ".exs": Language.ELIXIR,
    ".go": Language.GO,
    ".hs": Language.HASKELL,
    ".java": Language.JAVA,
    ".js": Language.JS,
    ".jsx": Language.JS,
    ".mjs": Language.JS,
    ".cjs": Language.JS,
    ".kt": Language.KOTLIN,
    ".kts": Language.KOTLIN,
    ".lua": Language.LUA,
    ".php": Language.PHP,
    ".ps1": Language.POWERSHELL,
    ".proto": Language.PROTO,
    ".py": Language.PYTHON,
    ".pyi": Language.PYTHON,
    ".r": Language.R,
    ".rb": Language.RUBY,
    ".rs": Language.RUST,
    ".rst": Language.RST,
    ".scala": Language.SCALA,
    ".sol": Language.SOL,
    ".swift": Language.SWIFT,
    ".ts": Language.TS,
    ".tsx": Language.TS,
}


def _document_source(doc: Document) -> str:
    """The ``source`` used for a document's chunk ids.

    The ``source`` metadata when present; otherwise the document's own ``id``; otherwise
    ``""`` (then identical texts of source-less documents share their chunk ids).
    """
    source = doc.metadata.get("source")
    if source is not None and str(source):
        return str(source)
    return doc.id or ""


def _language_for(source: str, *, markdown_aware: bool) -> Language | None:
    """Pick the separators' language from the source's file extension (None: plain text)."""
    suffix = PurePath(source).suffix.lower()
    if suffix in _MARKDOWN_SUFFIXES:
        return Language.MARKDOWN if markdown_aware else None
    return _CODE_LANGUAGES.get(suffix)


@lru_cache(maxsize=128)
def _text_splitter(
    language: Language | None, chunk_size: int, chunk_overlap: int
) -> RecursiveCharacterTextSplitter:
    """Build (once) the LangChain splitter for a language and size; it holds no state."""
    if language is None:
        return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    return RecursiveCharacterTextSplitter.from_language(
        language, chunk_size=chunk_size, chunk_overlap=chunk_overlap
    )


def _windows(text: str, size: int) -> Iterator[str]:
    """Cut ``text`` into consecutive pieces of at most ``size`` characters that join back to it.

    Each cut falls after the last paragraph break in the second half of the window, else
    the last line break, else the last space; a window with none of them is cut at
    ``size``.
    """
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = end
        for separator in _WINDOW_CUTS:
            found = text.rfind(separator, start + size // 2, end)
            if found >= 0:
                cut = found + len(separator)
                break
        yield text[start:cut]
        start = cut
    yield text[start:]


def _split_window(
    splitter: RecursiveCharacterTextSplitter, text: str, chunk_size: int, chunk_overlap: int
) -> list[str]:
    """Split one window; text without any whitespace is cut directly.

    Every separator of the languages used ends in whitespace (or is the empty string), so
    LangChain would split such text into single characters and merge them back into
    ``chunk_size`` pieces ``chunk_size - chunk_overlap`` apart: the same pieces, computed
    here without a list of millions of one-character strings.
    """
    if _SPACE.search(text) is not None:
        return splitter.split_text(text)
    stride = chunk_size - chunk_overlap
    return [text[i : i + chunk_size] for i in range(0, max(1, len(text) - chunk_overlap), stride)]


def _split_text(
    splitter: RecursiveCharacterTextSplitter, text: str, chunk_size: int, chunk_overlap: int
) -> list[str]:
    """The chunk texts of ``text``, window by window when it is long (bounded memory)."""
    window = _WINDOW_CHUNKS * chunk_size
    return [
        chunk
        for piece in _windows(text, window)
        for chunk in _split_window(splitter, piece, chunk_size, chunk_overlap)
    ]


def _start_indexes(text: str, chunks: Sequence[str], chunk_overlap: int) -> list[int]:
    """Locate each chunk in ``text``, in order.

    LangChain's ``add_start_index`` takes the first match after ``previous end - overlap``,
    which lands on an earlier copy when a short chunk (a lone code fence, say) repeats
    inside the previous chunk. Two facts pin the real position down: chunks cover every
    non-whitespace character, so a chunk starts at the latest on the first one after the
    previous chunk; and a chunk adds text past the previous end, unless it is only the
    overlap (whose tail was whitespace, stripped away).
    """
    starts: list[int] = []
    prev_end = 0
    for chunk in chunks:
        lower = max(0, prev_end - chunk_overlap)
        found = _NON_SPACE.search(text, prev_end)
        upper = found.start() if found else len(text)
        start = _find_between(text, chunk, max(lower, prev_end - len(chunk) + 1), upper)
        if start < 0:  # only overlap: it ends where the previous chunk ends
            start = _find_between(text, chunk, lower, upper)
        if start < 0:  # not expected; never give up on an offset that exists
            start = text.find(chunk, lower)
        if start < 0:
            start = text.find(chunk)
        starts.append(start)
        prev_end = start + len(chunk) if start >= 0 else prev_end
    return starts


def _find_between(text: str, chunk: str, first: int, last: int) -> int:
    """Index of the first occurrence of ``chunk`` starting within ``[first, last]``, or -1."""
    return text.find(chunk, first, last + len(chunk)) if first <= last else -1


def _as_documents(docs: Sequence[Document] | Document) -> Sequence[Document]:
    return [docs] if isinstance(docs, Document) else docs


class RunnableTextSplitter(RunnableSerializable[Sequence[Document], list[Document]]):
    """Split Documents into chunks; a Runnable, so it composes in LCEL chains.

    Each chunk keeps all of its parent's metadata and adds:

    - ``source``: the parent's ``source`` (or, when missing, the parent's ``id``, else ``""``);
    - ``start_index``: offset of the chunk in the parent text
      (``text[start_index:start_index + len(chunk)] == chunk``);
    - ``chunk_index``: position of the chunk in its parent, from 0;
    - ``chunk_count``: how many chunks the parent gave;
    - ``chunk_hash``: :func:`content_hash` of the chunk text.

    ``Document.id`` is :func:`chunk_id` of ``source``, ``chunk_index`` and the text.
    Empty or whitespace-only documents give no chunks.

    Separators follow the ``source`` extension: Markdown (``.md``, ``.markdown``,
    ``.mdx``) splits on headings and code fences first when ``config.markdown_aware``;
    source code (``.py``, ``.rs``, ``.go``, ...) splits on its definitions; anything
    else on paragraphs, lines, then words.

    Example:
        .. code-block:: python

            splitter = RunnableTextSplitter(SplitterConfig(chunk_size=800, chunk_overlap=100))
            chunks = await splitter.ainvoke(documents)
    """

    config: SplitterConfig = Field(default_factory=SplitterConfig)
    """Chunk size, overlap and whether Markdown is split on its structure."""

    model_config = ConfigDict(frozen=True)

    def __init__(self, config: SplitterConfig | None = None, **kwargs: Any) -> None:
        """Create a splitter.

        Args:
            config: Chunk size and overlap; the defaults of :class:`SplitterConfig` if None.
            **kwargs: Other pydantic fields (none today; kept for ``model_copy`` and friends).
        """
        kwargs["config"] = config or SplitterConfig()
        super().__init__(**kwargs)

    # -- pure, synchronous core (runs in an executor from the async methods) -------------

    def split_document(self, doc: Document) -> list[Document]:
        """Split one document (blocking; prefer :meth:`asplit_document` in async code).

        Args:
            doc: The document to split.

        Returns:
            Its chunks, in order; empty when the text is empty or whitespace.
        """
        text = doc.page_content
        if not text.strip():
            return []
        source = _document_source(doc)
        language = _language_for(source, markdown_aware=self.config.markdown_aware)
        splitter = _text_splitter(language, self.config.chunk_size, self.config.chunk_overlap)
        texts = _split_text(splitter, text, self.config.chunk_size, self.config.chunk_overlap)
        starts = _start_indexes(text, texts, self.config.chunk_overlap)
        return [
            Document(
                id=chunk_id(source, index, chunk),
                page_content=chunk,
                metadata={
                    **copy.deepcopy(doc.metadata),
                    "source": source,
                    "start_index": start,
                    "chunk_index": index,
                    "chunk_count": len(texts),
                    "chunk_hash": content_hash(chunk),
                },
            )
            for index, (chunk, start) in enumerate(zip(texts, starts, strict=True))
        ]

    def split_documents(self, docs: Sequence[Document]) -> list[Document]:
        """Split documents (blocking; prefer :meth:`asplit_documents` in async code).

        Args:
            docs: The documents to split (a single Document is accepted too).

        Returns:
            The chunks of all documents, in document order.
        """
        docs = _as_documents(docs)
        with span("split", documents=len(docs)) as current:
            chunks = [chunk for doc in docs for chunk in self.split_document(doc)]
            current.set_attribute("chunks", len(chunks))
        return chunks

    # -- async API: the same work, off the event loop -------------------------------------

    async def asplit_document(self, doc: Document) -> list[Document]:
        """Split one document: on the loop when small, else in an executor thread.

        Up to :data:`INLINE_SPLIT_CHARS` characters, the split costs the loop less than
        the hop to a thread would.

        Args:
            doc: The document to split.

        Returns:
            Its chunks, in order; empty when the text is empty or whitespace.
        """
        if len(doc.page_content) <= INLINE_SPLIT_CHARS:
            return self.split_document(doc)
        return await run_in_executor(None, self.split_document, doc)

    async def asplit_documents(self, docs: Sequence[Document]) -> list[Document]:
        """Split documents in an executor thread, keeping the event loop free.

        Args:
            docs: The documents to split (a single Document is accepted too).

        Returns:
            The chunks of all documents, in document order.
        """
        return await run_in_executor(None, self.split_documents, docs)

    # -- Runnable protocol ----------------------------------------------------------------

    def invoke(
        self,
        input: Sequence[Document],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Split documents; see :meth:`split_documents`.

        Args:
            input: The documents to split.
            config: The Runnable config (callbacks, tags, run name).
            **kwargs: Ignored.

        Returns:
            The chunks of all documents, in document order.
        """
        return self._call_with_config(self.split_documents, input, config)

    async def ainvoke(
        self,
        input: Sequence[Document],
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Split documents in an executor thread; see :meth:`asplit_documents`.

        Args:
            input: The documents to split.
            config: The Runnable config (callbacks, tags, run name).
            **kwargs: Ignored.

        Returns:
            The chunks of all documents, in document order.
        """
        return await self._acall_with_config(self.asplit_documents, input, config)
