"""Concurrent searches, upserts, deletes and saves never raise nor see a torn index.

Bounded loop counts, no timing asserts: the checks are that nothing raises and that
``index.ntotal == len(docstore) == len(index_to_docstore_id)`` whenever a reader looks,
and that every hit's score is the distance to *that* document's own vector (a torn
position-to-document map would pair a vector with another document).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.vectorstores import AsyncFAISS

DIM = 16
POOL = [f"doc-{i}" for i in range(120)]
SEARCHERS = 8
SEARCH_ROUNDS = 40
WRITE_ROUNDS = 30
EMBEDDING = DeterministicFakeEmbedding(size=DIM)


def text_for(doc_id: str, version: int) -> str:
    return f"{doc_id} version {version}"


def check_invariant(store: AsyncFAISS) -> None:
    with store.rw_lock.read():
        ntotal = 0 if store.index is None else int(store.index.ntotal)
        documents = len(store.docstore._dict)
        mapped = len(store.index_to_docstore_id)
    assert ntotal == documents == mapped, (ntotal, documents, mapped)


def check_hits(query: str, hits: list[tuple[Document, float]]) -> None:
    """Each score must be the squared distance between the query and the doc's own text."""
    query_vector = np.array(EMBEDDING.embed_query(query), dtype=np.float32)
    for doc, score in hits:
        own = np.array(EMBEDDING.embed_query(doc.page_content), dtype=np.float32)
        expected = float(np.sum((own - query_vector) ** 2))
        assert abs(expected - score) <= 1e-3 * max(1.0, expected), (doc, score, expected)


async def test_searches_during_concurrent_writes_never_see_a_torn_index(tmp_path: Path) -> None:
    store = AsyncFAISS.create(EMBEDDING, dimension=DIM)
    await store.aadd_texts([text_for(i, 0) for i in POOL[:60]], ids=POOL[:60])
    errors: list[BaseException] = []
    searches = 0
    writers_done = threading.Event()

    async def searcher(seed: int) -> None:
        nonlocal searches
        rng = random.Random(seed)
        for _ in range(SEARCH_ROUNDS):
            query = text_for(rng.choice(POOL), rng.randint(0, 3))
            kind = rng.randrange(5)
            if kind == 0:
                check_hits(query, await store.asimilarity_search_with_score(query, k=5))
            elif kind == 1:
                await store.asimilarity_search(query, k=3, filter=lambda m: True)
            elif kind == 2:
                scored = await store.asimilarity_search_with_relevance_scores(query, k=4)
                assert all(0.0 <= s <= 1.0 for _, s in scored)
            elif kind == 3:
                await store.amax_marginal_relevance_search(query, k=3, fetch_k=10)
            else:
                ids = rng.sample(POOL, 5)
                assert {d.id for d in await store.aget_by_ids(ids)} <= set(ids)
            await asyncio.to_thread(check_invariant, store)
            searches += 1

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        for version in range(1, WRITE_ROUNDS + 1):
            ids = rng.sample(POOL, 6) + [rng.choice(POOL)]  # one id may repeat: last wins
            await store.aadd_texts([text_for(i, version) for i in ids], ids=ids)
            await store.adelete(rng.sample(POOL, 3) + ["never-added"])
            if version % 10 == 0:
                await store.asave_local(tmp_path / f"snapshot-{seed}")

    def sync_worker() -> None:
        rng = random.Random(99)
        try:
            for version in range(1, WRITE_ROUNDS + 1):
                ids = rng.sample(POOL, 4)
                store.add_texts([text_for(i, version) for i in ids], ids=ids)
                query = text_for(rng.choice(POOL), 0)
                check_hits(query, store.similarity_search_with_score(query, k=4))
                store.delete(rng.sample(POOL, 2))
                store.get_by_ids(rng.sample(POOL, 3))
                check_invariant(store)
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)

    def checker() -> None:
        try:
            while not writers_done.is_set():
                check_invariant(store)
                writers_done.wait(0.001)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync_worker), threading.Thread(target=checker)]
    for thread in threads:
        thread.start()
    try:
        async with asyncio.TaskGroup() as group:
            for seed in range(SEARCHERS):
                group.create_task(searcher(seed))
            for seed in (1001, 1002):
                group.create_task(writer(seed))
    finally:
        await asyncio.to_thread(threads[0].join, 60)
        writers_done.set()
        await asyncio.to_thread(threads[1].join, 60)
    assert errors == []
    assert searches == SEARCHERS * SEARCH_ROUNDS
    check_invariant(store)

    for seed in (1001, 1002):  # snapshots taken during writes load and verify
        loaded = await AsyncFAISS.aload_local(tmp_path / f"snapshot-{seed}", EMBEDDING)
        check_invariant(loaded)


async def test_concurrent_async_saves_and_loads_stay_consistent(tmp_path: Path) -> None:
    store = AsyncFAISS.create(EMBEDDING, dimension=DIM)
    await store.aadd_texts([text_for(i, 0) for i in POOL[:30]], ids=POOL[:30])

    async def save_and_load(round_: int) -> int:
        await store.aadd_texts([text_for(POOL[round_], 1)], ids=[POOL[30 + round_]])
        await store.asave_local(tmp_path)
        loaded = await AsyncFAISS.aload_local(tmp_path, EMBEDDING)
        check_invariant(loaded)
        return int(loaded.index.ntotal)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(save_and_load(r)) for r in range(8)]
    assert all(30 < task.result() <= 38 for task in tasks)
    # Snapshots are taken under the folder lock, so the last generation saw every add.
    final = await AsyncFAISS.aload_local(tmp_path, EMBEDDING)
    assert final.index.ntotal == 38
    faiss_files, generation = _on_disk(tmp_path)
    assert faiss_files == [f"index.{generation}.faiss"]


def _on_disk(folder: Path) -> tuple[list[str], int]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return sorted(p.name for p in folder.glob("*.faiss")), int(manifest["generation"])
