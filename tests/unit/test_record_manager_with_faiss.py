"""LangChain's own ``aindex`` / ``index`` drive our record manager and ``AsyncFAISS``."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.indexing import aindex, index

from langchain_rag_async import AsyncFAISS, SQLiteRecordManager


def docs(*pairs: tuple[str, str]) -> list[Document]:
    return [Document(page_content=text, metadata={"source": source}) for source, text in pairs]


@pytest.fixture
def store() -> AsyncFAISS:
    return AsyncFAISS.create(DeterministicFakeEmbedding(size=16), dimension=16)


async def test_aindex_incremental_full_and_scoped_full(tmp_path: Path, store: AsyncFAISS) -> None:
    async with SQLiteRecordManager("lc", db_path=tmp_path / "records.sqlite") as records:
        await records.acreate_schema()
        first = docs(("a.md", "alpha one"), ("a.md", "alpha two"), ("b.md", "beta"))
        result = await aindex(first, records, store, cleanup="incremental",
                              source_id_key="source", key_encoder="sha256")  # fmt: skip
        assert result == {"num_added": 3, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
        assert store.index.ntotal == 3

        again = await aindex(first, records, store, cleanup="incremental",
                             source_id_key="source", key_encoder="sha256")  # fmt: skip
        assert again["num_skipped"] == 3 and again["num_added"] == 0

        changed = docs(("a.md", "alpha one"), ("a.md", "alpha two, edited"))
        inc = await aindex(changed, records, store, cleanup="incremental",
                           source_id_key="source", key_encoder="sha256")  # fmt: skip
        assert inc["num_added"] == 1 and inc["num_deleted"] == 1 and inc["num_skipped"] == 1
        assert store.index.ntotal == 3  # b.md untouched by incremental cleanup

        scoped = await aindex(changed, records, store, cleanup="scoped_full",
                              source_id_key="source", key_encoder="sha256")  # fmt: skip
        assert scoped["num_deleted"] == 0 and store.index.ntotal == 3

        full = await aindex(changed, records, store, cleanup="full",
                            source_id_key="source", key_encoder="sha256")  # fmt: skip
        assert full["num_deleted"] == 1  # b.md is gone
        texts = sorted(d.page_content for d in store.docstore._dict.values())
        assert texts == ["alpha one", "alpha two, edited"]
        assert store.index.ntotal == len(store.index_to_docstore_id) == 2


def test_sync_index_works_too(tmp_path: Path, store: AsyncFAISS) -> None:
    with SQLiteRecordManager("lc", db_path=tmp_path / "records.sqlite") as records:
        records.create_schema()
        batch = docs(("a.md", "one"), ("a.md", "two"))
        first = index(batch, records, store, cleanup="full", source_id_key="source",
                      key_encoder="sha256")  # fmt: skip
        assert first["num_added"] == 2
        second = index(batch, records, store, cleanup="full", source_id_key="source",
                       key_encoder="sha256")  # fmt: skip
        assert second["num_skipped"] == 2 and store.index.ntotal == 2
