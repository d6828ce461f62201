"""The engine facade: index, query, answer and stream over one index directory."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import Field

from langchain_rag_async import AsyncRAGEngine, RAGConfig, RAGEngine
from langchain_rag_async.aio import default_portal
from langchain_rag_async.config import LLMConfig, RetrievalConfig, SplitterConfig
from langchain_rag_async.errors import IndexNotFoundError, RetrievalError, UsageError

TOPICS = {
    "ownership.md": "# Ownership\n\nEach value in Rust has an owner. There can only be one owner "
    "at a time. When the owner goes out of scope, the value will be dropped.\n",
    "closures.md": "# Closures\n\nClosures are anonymous functions you can save in a variable "
    "or pass as arguments to other functions. Closures capture values from their scope.\n",
    "cargo.md": "# Cargo\n\nCargo is the Rust build system and package manager. Cargo builds "
    "your code, downloads the libraries your code depends on, and builds those libraries.\n",
}


def write_topics(root: Path) -> Path:
    root.mkdir()
    for name, text in TOPICS.items():
        (root / name).write_text(text, "utf-8")
    return root


def config_for(index_dir: Path) -> RAGConfig:
    return RAGConfig(index_dir=index_dir, splitter=SplitterConfig(chunk_size=400, chunk_overlap=0))


@pytest.fixture
def embedding() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=32)


async def test_index_then_query_has_all_three_scores(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    async with AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as engine:
        summary = await engine.aindex_directory(corpus)
        assert summary.files_indexed == 3
        docs = await engine.aquery("anonymous functions closures", k=2)
    assert Path(str(docs[0].metadata["source"])).name == "closures.md"
    scores = docs[0].metadata["scores"]
    assert scores["sparse"] is not None and scores["fused"] > 0
    assert len(docs) == 2


async def test_query_sees_a_reindex(tmp_path: Path, embedding: DeterministicFakeEmbedding) -> None:
    corpus = write_topics(tmp_path / "docs")
    async with AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as engine:
        await engine.aindex_directory(corpus)
        before = await engine.aquery("lifetimes annotate borrows", k=3)  # loads the stores
        assert all(Path(str(d.metadata["source"])).name != "lifetimes.md" for d in before)
        (corpus / "lifetimes.md").write_text("# Lifetimes\n\nLifetimes annotate borrows.\n")
        await engine.aindex_directory(corpus)
        docs = await engine.aquery("lifetimes annotate borrows", k=3)
    # (the fake embedding makes the dense side noise: check membership, not rank)
    assert "lifetimes.md" in {Path(str(d.metadata["source"])).name for d in docs}


async def test_answer_offline_cites_the_right_source(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    async with AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as engine:
        await engine.aindex_directory(corpus)
        result = await engine.aanswer("What is Cargo?", k=3)
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)}
    assert cited
    assert {Path(str(result.sources[n - 1]["source"])).name for n in cited} == {"cargo.md"}


async def test_stream_answer_events_in_order(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    llm = GenericFakeChatModel(messages=iter([AIMessage(content="Cargo builds code [1].")]))
    engine = AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding, llm=llm)
    async with engine:
        await engine.aindex_directory(corpus)
        events = [e async for e in engine.astream_answer("What is Cargo?", k=2)]
    kinds = [e.type for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    tokens = [e.text for e in events if e.type == "token"]
    assert len(tokens) > 1 and "".join(tokens) == "Cargo builds code [1]."
    assert events[-1].answer == "Cargo builds code [1]."  # type: ignore[union-attr]


async def test_missing_index_and_empty_question_are_clear(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    engine = AsyncRAGEngine(config=config_for(tmp_path / "never"), embeddings=embedding)
    with pytest.raises(IndexNotFoundError, match="rag-async index"):
        await engine.aquery("anything")
    with pytest.raises(RetrievalError, match="empty"):
        await engine.aquery("   ")
    with pytest.raises(RetrievalError, match="empty"):
        await engine.aanswer("")


async def test_fts5_syntax_in_questions_never_raises(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    async with AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as engine:
        await engine.aindex_directory(corpus)
        for question in ['"cargo', "clos*", "NEAR(owner scope)", "-cargo", "a:b", "(", "AND OR"]:
            await engine.aquery(question, k=2)


@pytest.mark.allow_blocking
def test_sync_engine_works_inside_a_running_loop(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "docs")
    engine = RAGEngine(
        config=config_for(tmp_path / "idx"), embeddings=DeterministicFakeEmbedding(size=32)
    )

    async def notebook_cell() -> tuple[int, str, str]:
        summary = engine.index_directory(corpus)  # sync call inside a running loop
        docs = engine.query("Cargo package manager", k=1)
        answer = engine.answer("What is Cargo?")
        return summary.files_indexed, str(docs[0].metadata["source"]), answer.answer

    indexed, source, answer = asyncio.run(notebook_cell())
    assert indexed == 3 and Path(source).name == "cargo.md" and "[" in answer
    # and plain sync use, twice (every call runs on the one sync bridge's loop)
    assert Path(str(engine.query("closures", k=1)[0].metadata["source"])).name == "closures.md"
    assert engine.index_directory(corpus).files_skipped == 3
    engine.close()


async def test_engine_shares_one_limiter(tmp_path: Path, embedding: Any) -> None:
    engine = AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding)
    corpus = write_topics(tmp_path / "docs")
    async with engine:
        await engine.aindex_directory(corpus)
        retriever = await engine.aretriever()
        query_embeddings = retriever.vectorstore.embeddings  # type: ignore[attr-defined]
        assert query_embeddings.limiter is engine.limiter


async def test_missing_keyword_index_is_rebuilt_from_the_store(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    index_dir = tmp_path / "idx"
    async with AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding) as engine:
        await engine.aindex_directory(corpus)
    (index_dir / "sparse.sqlite").unlink()  # e.g. an index copied without it
    async with AsyncRAGEngine(config=config_for(index_dir), embeddings=embedding) as engine:
        docs = await engine.aquery("package manager", k=3)
    assert any(d.metadata["scores"]["sparse"] is not None for d in docs)


@pytest.mark.parametrize("freeze", [True, False])
async def test_loading_the_index_freezes_long_lived_objects_unless_disabled(
    tmp_path: Path, embedding: DeterministicFakeEmbedding, freeze: bool
) -> None:
    """After the load, full collections skip modules, model and index (gc_tuning)."""
    import dataclasses
    import gc

    corpus = write_topics(tmp_path / "docs")
    config = dataclasses.replace(config_for(tmp_path / "idx"), freeze_gc=freeze)
    async with AsyncRAGEngine(config=config, embeddings=embedding) as engine:
        await engine.aindex_directory(corpus)
        gc.unfreeze()
        assert gc.get_freeze_count() == 0
        await engine.aquery("cargo", k=1)  # loads the stores
        frozen = gc.get_freeze_count()
        store = engine._stores.store if engine._stores is not None else None
        assert store is not None
        if freeze:
            assert frozen > 10_000  # at least the imported modules' objects
            assert not any(obj is store for obj in gc.get_objects())  # out of sight
        else:
            assert frozen == 0
        assert len(await engine.aquery("closures", k=1)) == 1  # still answers
        (corpus / "more.md").write_text("# More\n\nAnother chapter.\n", "utf-8")
        await engine.aindex_directory(corpus)
        await engine.aquery("chapter", k=1)  # reloads the stores
        # once per process: no second freeze (frozen objects of the old generation are freed)
        assert gc.get_freeze_count() <= frozen
    gc.unfreeze()


class ThreadRecordingEmbedding(DeterministicFakeEmbedding):
    """Records the thread each async query embedding runs on."""

    threads: list[int] = Field(default_factory=list)  # thread idents

    async def aembed_query(self, text: str) -> list[float]:
        self.threads.append(threading.get_ident())
        return await super().aembed_query(text)


@pytest.mark.allow_blocking
def test_sync_engine_runs_on_the_one_sync_bridge_also_inside_a_running_loop(
    tmp_path: Path,
) -> None:
    corpus = write_topics(tmp_path / "docs")
    embedding = ThreadRecordingEmbedding(size=32)
    threads_before = set(threading.enumerate())
    with RAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as engine:
        engine.index_directory(corpus)
        engine.query("cargo", k=1)

        async def notebook_cell() -> int:
            return len(engine.query("closures", k=1))

        assert asyncio.run(notebook_cell()) == 1
    portal = default_portal()
    assert portal.running and portal.thread is not None
    assert embedding.threads == [portal.thread.ident] * 2
    # no thread of its own: whatever is new belongs to the shared portal or to executors
    new = {t for t in set(threading.enumerate()) - threads_before if t is not portal.thread}
    assert not any(t.name == "rag-engine-loop" for t in new)


@pytest.mark.allow_blocking
def test_sync_engine_refuses_calls_after_close(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "docs")
    engine = RAGEngine(
        config=config_for(tmp_path / "idx"), embeddings=DeterministicFakeEmbedding(size=32)
    )
    engine.index_directory(corpus)
    assert len(engine.query("cargo", k=1)) == 1
    engine.close()
    engine.close()  # idempotent
    assert engine.closed
    with pytest.raises(UsageError, match="closed"):
        engine.query("cargo")
    with pytest.raises(RuntimeError):  # UsageError is a RuntimeError too
        engine.answer("What is Cargo?")
    with pytest.raises(UsageError):
        engine.index_directory(corpus)
    assert default_portal().running  # closing an engine leaves the shared bridge running
    with RAGEngine(
        config=config_for(tmp_path / "idx"), embeddings=DeterministicFakeEmbedding(size=32)
    ) as again:
        assert len(again.query("cargo", k=1)) == 1


async def test_query_k_defaults_to_the_retrieval_config(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    config = dataclasses.replace(config_for(tmp_path / "idx"), retrieval=RetrievalConfig(k=2))
    async with AsyncRAGEngine(config=config, embeddings=embedding) as engine:
        await engine.aindex_directory(corpus)
        assert len(await engine.aquery("cargo closures ownership")) == 2
        result = await engine.aanswer("What is Cargo?")
    assert len(result.documents) == 2


async def test_engine_injects_one_chat_limiter_into_every_answer(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    config = dataclasses.replace(config_for(tmp_path / "idx"), llm=LLMConfig(concurrency=1))
    llm = GenericFakeChatModel(
        messages=iter([AIMessage(content=f"Cargo builds code [{n}].") for n in (1, 1, 1)])
    )
    async with AsyncRAGEngine(config=config, embeddings=embedding, llm=llm) as engine:
        limiter = engine.chat_limiter
        assert limiter.name == "chat:extractive" and limiter.max_concurrency == 1
        assert limiter is not engine.limiter
        await engine.aindex_directory(corpus)
        assert limiter.peak_in_flight == 0  # indexing never calls the chat service
        await asyncio.gather(*(engine.aanswer("What is Cargo?") for _ in range(2)))
        events = [e async for e in engine.astream_answer("What is Cargo?")]
    assert events[-1].type == "done"
    assert limiter.peak_in_flight == 1 and limiter.in_flight == 0


async def test_query_sees_an_index_saved_by_another_engine(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    # Two engines on one directory stand for two processes: the reader notices the newer
    # manifest (one stat per refresh_interval) and loads it for its next query.
    corpus = write_topics(tmp_path / "docs")
    reader_config = dataclasses.replace(
        config_for(tmp_path / "idx"), retrieval=RetrievalConfig(refresh_interval=0.0)
    )
    async with (
        AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as writer,
        AsyncRAGEngine(config=reader_config, embeddings=embedding) as reader,
    ):
        await writer.aindex_directory(corpus)
        before = await reader.aquery("lifetimes annotate borrows", k=3)
        assert "lifetimes.md" not in {Path(str(d.metadata["source"])).name for d in before}
        (corpus / "lifetimes.md").write_text("# Lifetimes\n\nLifetimes annotate borrows.\n")
        await writer.aindex_directory(corpus)
        docs = await reader.aquery("lifetimes annotate borrows", k=3)
    assert "lifetimes.md" in {Path(str(d.metadata["source"])).name for d in docs}


async def test_a_reader_checks_for_a_newer_index_at_most_every_refresh_interval(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    reader_config = dataclasses.replace(
        config_for(tmp_path / "idx"), retrieval=RetrievalConfig(refresh_interval=3600.0)
    )
    async with (
        AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as writer,
        AsyncRAGEngine(config=reader_config, embeddings=embedding) as reader,
    ):
        await writer.aindex_directory(corpus)
        await reader.aquery("ownership", k=3)
        (corpus / "lifetimes.md").write_text("# Lifetimes\n\nLifetimes annotate borrows.\n")
        await writer.aindex_directory(corpus)
        docs = await reader.aquery("lifetimes annotate borrows", k=3)
    # within the interval the reader keeps the generation it has
    assert "lifetimes.md" not in {Path(str(d.metadata["source"])).name for d in docs}


async def test_queries_arriving_together_share_one_check_a_cancelled_one_leaves_it(
    tmp_path: Path, embedding: DeterministicFakeEmbedding, monkeypatch: pytest.MonkeyPatch
) -> None:
    # refresh_interval=0: a check before every query; queries arriving together share
    # one, and cancelling the query that started it leaves it running for the others.
    from langchain_rag_async import engine as engine_module

    corpus = write_topics(tmp_path / "docs")
    reader_config = dataclasses.replace(
        config_for(tmp_path / "idx"), retrieval=RetrievalConfig(refresh_interval=0.0)
    )
    stats: list[Path] = []
    manifest_key = engine_module._manifest_key

    def counted(index_dir: Path) -> Any:
        stats.append(index_dir)
        return manifest_key(index_dir)

    async with (
        AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as writer,
        AsyncRAGEngine(config=reader_config, embeddings=embedding) as reader,
    ):
        await writer.aindex_directory(corpus)
        await reader.aquery("ownership", k=3)
        (corpus / "lifetimes.md").write_text("# Lifetimes\n\nLifetimes annotate borrows.\n")
        await writer.aindex_directory(corpus)
        monkeypatch.setattr(engine_module, "_manifest_key", counted)
        tasks = [
            asyncio.create_task(reader.aquery("lifetimes annotate borrows", k=3)) for _ in range(10)
        ]
        await asyncio.sleep(0)  # each has started (and is waiting for the check)
        tasks[0].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    for docs in results[1:]:
        assert isinstance(docs, list)
        assert "lifetimes.md" in {Path(str(d.metadata["source"])).name for d in docs}
    assert len(stats) == 2  # the one check, and the load of the newer index it found


def test_refresh_interval_must_be_finite_and_not_negative() -> None:
    with pytest.raises(ValueError, match="refresh_interval"):
        RetrievalConfig(refresh_interval=-1.0)


async def test_queries_arriving_during_the_check_wait_for_the_newer_index(
    tmp_path: Path, embedding: DeterministicFakeEmbedding
) -> None:
    corpus = write_topics(tmp_path / "docs")
    reader_config = dataclasses.replace(
        config_for(tmp_path / "idx"), retrieval=RetrievalConfig(refresh_interval=0.05)
    )
    async with (
        AsyncRAGEngine(config=config_for(tmp_path / "idx"), embeddings=embedding) as writer,
        AsyncRAGEngine(config=reader_config, embeddings=embedding) as reader,
    ):
        await writer.aindex_directory(corpus)
        await reader.aquery("ownership", k=3)
        (corpus / "lifetimes.md").write_text("# Lifetimes\n\nLifetimes annotate borrows.\n")
        await writer.aindex_directory(corpus)
        await asyncio.sleep(0.1)  # the check is due
        rounds = await asyncio.gather(
            *(reader.aquery("lifetimes annotate borrows", k=3) for _ in range(20))
        )
    for docs in rounds:  # every one of them, not only the query that ran the check
        assert "lifetimes.md" in {Path(str(d.metadata["source"])).name for d in docs}
