"""Tests of CompactDocstore: the InMemoryDocstore contract, owned copies, GC footprint."""

from __future__ import annotations

import gc

import pytest
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_core.documents import Document

from langchain_rag_async.errors import DocumentNotFoundError, DuplicateIdError, RAGError
from langchain_rag_async.vectorstores import AsyncFAISS, CompactDocstore
from tests.unit.test_faiss_store import embedding


def docs(count: int) -> dict[str, Document]:
    return {
        f"id-{i}": Document(
            page_content=f"chunk number {i}",
            metadata={"source": f"file-{i % 7}.md", "start_index": i * 10, "draft": i % 2 == 0},
        )
        for i in range(count)
    }


def test_add_search_delete_follow_the_in_memory_docstore_contract() -> None:
    store = CompactDocstore(docs(3))
    found = store.search("id-1")
    assert isinstance(found, Document)
    assert (found.id, found.page_content) == ("id-1", "chunk number 1")
    assert found.metadata == {"source": "file-1.md", "start_index": 10, "draft": False}
    assert store.search("nope") == "ID nope not found."
    with pytest.raises(ValueError, match="already exist") as duplicate:
        store.add({"id-1": Document(page_content="again")})
    assert isinstance(duplicate.value, DuplicateIdError) and duplicate.value.ids == ("id-1",)
    store.delete(["id-0", "unknown"])
    assert "id-0" not in store and len(store) == 2
    with pytest.raises(ValueError, match="do not exist") as missing:
        store.delete(["unknown"])
    assert isinstance(missing.value, RAGError)
    assert sorted(store) == ["id-1", "id-2"]


def test_callers_own_what_they_get_and_what_they_gave() -> None:
    given = Document(page_content="text", metadata={"tags": ["a"], "source": "x.md"})
    store = CompactDocstore({"d": given})
    given.metadata["tags"].append("mutated by the caller")
    given.metadata["source"] = "changed"
    first = store.get("d")
    assert first is not None
    first.metadata["tags"].append("mutated by a reader")
    second = store.get("d")
    assert second is not None and second.metadata == {"tags": ["a"], "source": "x.md"}
    assert second is not first


def test_dict_view_serves_in_memory_docstore_idioms() -> None:
    store = CompactDocstore(docs(4))
    view = store._dict
    assert len(view) == 4
    assert view["id-2"].page_content == "chunk number 2"
    assert {doc.page_content for doc in view.values()} == {f"chunk number {i}" for i in range(4)}
    with pytest.raises(KeyError) as missing:
        view["nope"]
    assert isinstance(missing.value, DocumentNotFoundError) and missing.value.ids == ("nope",)
    assert view.get("nope") is None and "nope" not in view  # Mapping still works


def _tracked_growth(build: object) -> int:
    gc.collect()
    before = len(gc.get_objects())
    kept = build()  # type: ignore[operator]
    gc.collect()
    growth = len(gc.get_objects()) - before
    del kept
    return growth


def test_stored_chunks_cost_the_garbage_collector_nothing() -> None:
    """A full collection walks every tracked object while the event loop stands still."""
    source = docs(3000)
    compact = _tracked_growth(lambda: CompactDocstore(source))
    in_memory = _tracked_growth(
        lambda: InMemoryDocstore({k: v.model_copy() for k, v in source.items()})
    )
    assert compact < 50, compact
    assert in_memory > 3000 * 2, in_memory  # what LangChain's docstore costs, for scale


async def test_async_faiss_stores_chunks_compactly_and_searches_them() -> None:
    store = AsyncFAISS.create(embedding())
    await store.aadd_documents(
        [
            Document(id=k, page_content=v.page_content, metadata=v.metadata)
            for k, v in docs(50).items()
        ]
    )
    assert isinstance(store.docstore, CompactDocstore)
    hits = await store.asimilarity_search("chunk number 7", k=1)
    assert hits[0].id == "id-7" and hits[0].metadata["start_index"] == 70
    hits[0].metadata["start_index"] = -1
    again = await store.aget_by_ids(["id-7"])
    assert again[0].metadata["start_index"] == 70


def test_metadata_comes_back_exactly_whatever_its_types() -> None:
    import datetime

    odd = {
        "when": datetime.datetime(2026, 11, 27, 13, 0),
        "pair": (1, 2),
        3: "int key",
        "nan": float("inf"),
        "nested": {"a": [1, {"b": None}]},
    }
    plain = {"s": "é ü \u2028", "i": 2**70, "f": 0.1, "t": True, "n": None}
    store = CompactDocstore(
        {
            "odd": Document(page_content="o", metadata=odd),
            "plain": Document(page_content="p", metadata=plain),
        }
    )
    assert store.get("odd").metadata == odd  # type: ignore[union-attr]
    assert store.get("plain").metadata == plain  # type: ignore[union-attr]
    assert type(store.get("plain").metadata["t"]) is bool  # type: ignore[union-attr]


def test_metadata_that_cannot_be_copied_or_encoded_is_still_stored_consistently() -> None:
    """InMemoryDocstore accepted these; a failed add must never leave the store torn."""
    import threading

    lock = threading.Lock()
    store = AsyncFAISS.create(embedding())
    store.add_documents(
        [
            Document(id="lock", page_content="has a lock", metadata={"lock": lock}),
            Document(id="big", page_content="has a big int", metadata={"n": 10**5000}),
            Document(id="plain", page_content="plain", metadata={"n": 1}),
        ]
    )
    assert store.index.ntotal == len(store.index_to_docstore_id) == len(store.docstore) == 3
    by_id = {doc.id: doc for doc in store.get_by_ids(["lock", "big", "plain"])}
    assert by_id["lock"].metadata["lock"] is lock  # shared, as InMemoryDocstore did
    assert by_id["big"].metadata["n"] == 10**5000
    assert len(store.similarity_search("plain", k=3)) == 3
