"""The public surface is pinned: every exported name imports and nothing disappears."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import langchain_rag_async

EXPECTED = {
    "fuse_ranked_ids",
    "FTS5Retriever",
    "freeze_long_lived",
    "CompactDocstore",
    "ANSWER_PROMPT",
    "AnswerContext",
    "AnswerEvent",
    "AnswerResult",
    "AsyncDirectoryLoader",
    "AsyncFAISS",
    "AsyncRAGEngine",
    "CachedEmbeddings",
    "ConfigurationError",
    "EmbeddingConfig",
    "EmbeddingError",
    "EmbeddingModelMismatchError",
    "ExtractiveChatModel",
    "FTS5Index",
    "GenerationError",
    "HybridRetriever",
    "IndexCorruptedError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexingContext",
    "IndexingError",
    "IndexingSummary",
    "LLMConfig",
    "LoaderConfig",
    "LoadingError",
    "LocalMiniLMEmbeddings",
    "PipelineConfig",
    "RAGConfig",
    "RAGEngine",
    "RAGError",
    "RAGTimeoutError",
    "RateLimitConfig",
    "RateLimitedEmbeddings",
    "RetrievalConfig",
    "RetrievalError",
    "RetryConfig",
    "RunnableTextSplitter",
    "SQLiteEmbeddingCache",
    "SQLiteRecordManager",
    "ServiceLimiter",
    "SplitterConfig",
    "VectorStoreError",
    "aanswer",
    "ConversionSummary",
    "aconvert_langchain_faiss",
    "aindex_directory",
    "astream_answer",
    "build_answer_graph",
    "build_chat_model",
    "build_embeddings",
    "build_indexing_graph",
    "chunk_id",
    "convert_langchain_faiss",
    "index_directory",
    "index_model_id",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
}


def test_all_is_pinned() -> None:
    assert isinstance(langchain_rag_async.__all__, tuple)
    assert set(langchain_rag_async.__all__) == EXPECTED
    assert len(langchain_rag_async.__all__) == len(EXPECTED)  # no name twice


def test_type_checking_imports_match_the_lazy_table() -> None:
    """The imports for type checkers name the same objects the lazy table loads."""
    tree = ast.parse(Path(langchain_rag_async.__file__).read_text("utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If))
    imported = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name  # explicit re-exports only
    }
    assert set(imported) == set(langchain_rag_async.__all__)
    for name, module in imported.items():
        assert module is not None
        assert getattr(importlib.import_module(module), name) is getattr(
            langchain_rag_async, name
        ), name


def test_service_limiter_is_exported_from_its_home() -> None:
    from langchain_rag_async import embeddings, limits

    assert langchain_rag_async.ServiceLimiter is limits.ServiceLimiter
    assert embeddings.ServiceLimiter is limits.ServiceLimiter  # still importable from there


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = langchain_rag_async.NoSuchThing  # type: ignore[attr-defined]


def test_every_name_imports() -> None:
    for name in langchain_rag_async.__all__:
        assert getattr(langchain_rag_async, name) is not None, name


def test_components_are_langchain_components() -> None:
    from langchain_core.document_loaders import BaseLoader
    from langchain_core.embeddings import Embeddings
    from langchain_core.indexing import RecordManager
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable
    from langchain_core.vectorstores import VectorStore

    import langchain_rag_async as rag

    assert issubclass(rag.AsyncDirectoryLoader, BaseLoader)
    assert issubclass(rag.RunnableTextSplitter, Runnable)
    assert issubclass(rag.RateLimitedEmbeddings, Embeddings)
    assert issubclass(rag.LocalMiniLMEmbeddings, Embeddings)
    assert issubclass(rag.CachedEmbeddings, Embeddings)
    assert issubclass(rag.AsyncFAISS, VectorStore)
    assert issubclass(rag.SQLiteRecordManager, RecordManager)
    assert issubclass(rag.ExtractiveChatModel, BaseChatModel)
    from langchain_core.retrievers import BaseRetriever

    assert issubclass(rag.HybridRetriever, BaseRetriever)


def test_errors_form_one_tree() -> None:
    from langchain_rag_async import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.RAGError), name


def loaded_after(imports: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has imported after ``import {imports}``."""
    code = f"import sys, {imports}\nprint([m for m in {candidates!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(eval(out.stdout))  # a printed list of module names


def test_import_is_light() -> None:
    assert loaded_after("langchain_rag_async", ("faiss", "onnxruntime", "langgraph")) == []


def test_local_model_users_do_not_import_http_clients() -> None:
    """``openai`` and ``aiohttp`` (60k objects for every full GC) load only when used."""
    imports = (
        "langchain_rag_async.embeddings, langchain_rag_async.vectorstores, "
        "langchain_rag_async.retrievers.hybrid"
    )
    assert loaded_after(imports, ("openai", "langchain_openai", "aiohttp")) == []


def test_retrieval_and_index_files_load_no_graph() -> None:
    """LangGraph (0.2-0.5 s to import) loads with the indexing or answer graph, not before.

    ``rag-async query`` and ``doctor`` import these; ``tests/unit/test_cli_startup.py``
    pins what each command imports as a whole.
    """
    imports = (
        "langchain_rag_async.engine, langchain_rag_async.indexing.events, "
        "langchain_rag_async.indexing.doctor, langchain_rag_async.indexing.resources"
    )
    assert loaded_after(imports, ("langgraph",)) == []


def test_lazy_indexing_names_are_the_modules_own() -> None:
    from langchain_rag_async import indexing
    from langchain_rag_async.indexing import api, convert, events, graph, record_manager, resources

    for name in indexing.__all__:
        home = (api, convert, events, graph, record_manager, resources)
        assert any(getattr(module, name, None) is getattr(indexing, name) for module in home)
    assert set(indexing.__all__) <= set(dir(indexing))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = indexing.no_such_name  # type: ignore[attr-defined]
