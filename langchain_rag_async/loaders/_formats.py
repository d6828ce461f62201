"""Pure, I/O-free helpers of the loader: file kinds, binary sniffing, decoding, HTML and PDF text.

Everything here takes bytes or strings and returns text or raises a
:class:`~langchain_rag_async.errors.LoadingError` subclass, so the async and the sync
loader share one implementation.
"""

from __future__ import annotations

import codecs
import io
import re
from enum import Enum
from pathlib import PurePath

import charset_normalizer

from langchain_rag_async.errors import BinaryFileError, DecodingError, LoadingError

__all__ = (
    "SNIFF_BYTES",
    "PDF_INSTALL_HINT",
    "FileKind",
    "decode_text",
    "extract_text",
    "file_kind",
    "html_to_text",
    "is_supported",
    "pdf_to_text",
    "sniff_encoding",
    "try_fast_text",
)

SNIFF_BYTES = 8 * 1024
"""How many leading bytes binary detection looks at."""

_CONTROL_RATIO_LIMIT = 0.10
"""A sample with more C0 control characters than this (besides whitespace) is binary."""

PDF_INSTALL_HINT = "PDF support is not installed; install langchain-rag-async[pdf] (pypdf)"

_TEXT_SUFFIXES = frozenset(
    {
        # prose and markup
        ".txt", ".text", ".md", ".markdown", ".mdx", ".rst", ".adoc", ".asciidoc", ".org",
        ".tex", ".csv", ".tsv", ".xml", ".svg", ".css", ".scss", ".sass", ".less",
        # data and configuration, read as text
        ".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf",
        ".properties",
        # source code
        ".py", ".pyi", ".ipynb", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".vue",
        ".svelte", ".java", ".kt", ".kts", ".scala", ".groovy", ".gradle", ".c", ".h",
        ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".cs", ".fs", ".go", ".rs", ".rb",
        ".php", ".swift", ".m", ".mm", ".dart", ".lua", ".pl", ".pm", ".r", ".jl", ".hs",
        ".ml", ".mli", ".ex", ".exs", ".erl", ".hrl", ".clj", ".cljs", ".elm", ".zig",
        ".nim", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".sql", ".graphql",
        ".proto", ".cmake", ".mk", ".tf", ".hcl", ".nix",
    }
)  # fmt: skip
_TEXT_NAMES = frozenset(
    {
        "readme", "license", "licence", "copying", "authors", "contributors", "changelog",
        "changes", "notice", "makefile", "dockerfile", "containerfile", "justfile",
        "gemfile", "rakefile", "procfile", "vagrantfile",
    }
)  # fmt: skip
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
_DROPPED_HTML_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "canvas")
_BLOCK_HTML_TAGS = (
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "title", "tr", "ul",
)  # fmt: skip

# BOMs, longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# C0 control bytes that do not occur in text: all but \t \n \v \f \r and ESC, plus DEL.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_BLANK_RUNS = re.compile(r"\n[ \t\r\f\v]*(?:\n[ \t\r\f\v]*)+")
_INLINE_SPACE = re.compile(r"[ \t\f\v]+")


class FileKind(Enum):
    """How a file's bytes become text."""

    TEXT = "text"
    HTML = "html"
    PDF = "pdf"


def file_kind(path: PurePath) -> FileKind:
    """Return how the file at ``path`` is converted, judged by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return FileKind.PDF
    if suffix in _HTML_SUFFIXES:
        return FileKind.HTML
    return FileKind.TEXT


def is_supported(path: PurePath) -> bool:
    """Whether the file is read when no ``include`` globs are configured.

    Supported are prose and markup, data files read as text, the source code of common
    languages, HTML, PDF and well-known extension-less names such as ``README`` or
    ``Makefile``.
    """
    suffix = path.suffix.lower()
    if suffix in _TEXT_SUFFIXES or suffix in _HTML_SUFFIXES or suffix == ".pdf":
        return True
    return not suffix and path.name.lower() in _TEXT_NAMES


def sniff_encoding(raw: bytes, path: str) -> str | None:
    """Return the encoding a BOM or a UTF-16 byte pattern dictates, or reject binary data.

    Args:
        raw: The file's bytes (only the first :data:`SNIFF_BYTES` are looked at).
        path: The file, for the error.

    Returns:
        The codec to decode with, or ``None`` when the encoding is still open.

    Raises:
        BinaryFileError: NUL bytes or many control characters in the first 8 KiB.
    """
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    sample = raw[:SNIFF_BYTES]
    if b"\x00" in sample:
        utf16 = _bomless_utf16(sample)
        if utf16 is not None:
            return utf16
        raise BinaryFileError(path, "binary file (NUL bytes); exclude it or convert it to text")
    if sample:
        controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
        if controls / len(sample) > _CONTROL_RATIO_LIMIT:
            raise BinaryFileError(
                path, "binary file (control characters); exclude it or convert it to text"
            )
    return None


def _bomless_utf16(sample: bytes) -> str | None:
    """Recognise UTF-16 without a BOM: NUL bytes on one side of each byte pair only."""
    sample = sample[: len(sample) - len(sample) % 2]
    if not sample:
        return None
    half = len(sample) // 2
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    if odd_nuls >= half * 0.6 and even_nuls == 0:
        return "utf-16-le"
    if even_nuls >= half * 0.6 and odd_nuls == 0:
        return "utf-16-be"
    return None


def try_fast_text(raw: bytes, path: str) -> str | None:
    """Decode ``raw`` when a BOM or strict UTF-8 fits: the cheap path, fine on the loop.

    Returns:
        The text, or ``None`` when charset detection is needed (see :func:`decode_text`).

    Raises:
        BinaryFileError: The bytes are binary.
        DecodingError: A BOM announces an encoding the bytes do not follow.
    """
    encoding = sniff_encoding(raw, path)
    if encoding is not None:
        return _normalise_newlines(_decode_strict(raw, encoding, path))
    try:
        return _normalise_newlines(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def decode_text(raw: bytes, path: str) -> str:
    """Decode a text file: BOM, then UTF-8, then charset detection (CPU-bound).

    Args:
        raw: The file's bytes.
        path: The file, for errors.

    Returns:
        The text, with CRLF and CR line ends turned into LF.

    Raises:
        BinaryFileError: The bytes are binary.
        DecodingError: No text encoding fits the bytes.
    """
    text = try_fast_text(raw, path)
    if text is not None:
        return text
    best = charset_normalizer.from_bytes(raw).best()
    if best is None:
        raise DecodingError(
            path, "no text encoding fits the bytes; convert the file to UTF-8 or exclude it"
        )
    return _normalise_newlines(str(best))


def _decode_strict(raw: bytes, encoding: str, path: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DecodingError(
            path, f"not valid {encoding} ({exc.reason} at byte {exc.start}); re-save it as UTF-8"
        ) from exc


def _normalise_newlines(text: str) -> str:
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def html_to_text(markup: str) -> str:
    """Return the visible text of an HTML document.

    Scripts, styles and other non-text elements are dropped; block elements become line
    breaks, runs of blank lines collapse to one.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    for element in soup(_DROPPED_HTML_TAGS):
        element.decompose()
    for element in soup(_BLOCK_HTML_TAGS):
        element.insert_before("\n")
        element.insert_after("\n")
    text = soup.get_text()
    text = _INLINE_SPACE.sub(" ", text)
    text = _BLANK_RUNS.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.splitlines()).strip()


def pdf_to_text(raw: bytes, path: str) -> str:
    """Extract the text of a PDF with pypdf (the optional ``pdf`` extra); CPU-bound.

    Pages are separated by a blank line.

    Raises:
        LoadingError: pypdf is not installed, the PDF is encrypted or malformed, or it
            holds no extractable text.
    """
    try:
        import pypdf
    except ImportError as exc:
        raise LoadingError(path, PDF_INSTALL_HINT) from exc
    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadingError(path, "encrypted PDF; decrypt it first or exclude it")
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoadingError:
        raise
    except Exception as exc:  # pypdf raises many unrelated types on malformed input
        raise LoadingError(
            path, f"not a readable PDF ({type(exc).__name__}: {exc}); repair or exclude it"
        ) from exc
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise LoadingError(path, "PDF has no extractable text (scanned images need OCR first)")
    return _normalise_newlines(text)


def extract_text(raw: bytes, path: str, kind: FileKind) -> str:
    """Turn a file's bytes into text according to its kind (may be CPU-bound).

    Args:
        raw: The file's bytes.
        path: The file, for errors.
        kind: How to convert, see :func:`file_kind`.

    Raises:
        LoadingError: Or a subclass, when the bytes cannot become text.
    """
    if kind is FileKind.PDF:
        return pdf_to_text(raw, path)
    text = decode_text(raw, path)
    if kind is FileKind.HTML:
        return html_to_text(text)
    return text
