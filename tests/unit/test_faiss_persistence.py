"""Saving and loading AsyncFAISS: round trips, atomicity, corruption, legacy, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import filelock
import pytest
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rag_async.errors import (
    ConfigurationError,
    EmbeddingModelMismatchError,
    IndexCorruptedError,
    IndexLockedError,
    IndexNotFoundError,
    VectorStoreError,
)
from langchain_rag_async.vectorstores import AsyncFAISS, read_manifest

DIM = 8
MODEL = "fake:deterministic@test:8"
TEXTS = ["alpha", "beta", "gamma", "delta"]


def embedding() -> DeterministicFakeEmbedding:
    return DeterministicFakeEmbedding(size=DIM)


def make_store(texts: list[str] = TEXTS, **create: Any) -> AsyncFAISS:
    store = AsyncFAISS.create(embedding(), dimension=DIM, embedding_model_id=MODEL, **create)
    store.add_texts(
        texts,
        [{"n": i, "tags": ["x", i], "nested": {"ok": True}} for i in range(len(texts))],
        ids=[f"id-{t}" for t in texts],
    )
    return store


def state(store: AsyncFAISS) -> list[tuple[Any, ...]]:
    ordered = [store.index_to_docstore_id[i] for i in range(store.index.ntotal)]
    docs = store.get_by_ids(ordered)
    vectors = store.index.reconstruct_n(0, store.index.ntotal).tolist()
    return [(d.id, d.page_content, d.metadata, v) for d, v in zip(docs, vectors, strict=True)]


def data_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


# -- round trips ---------------------------------------------------------------------------


def test_sync_round_trip_keeps_documents_vectors_and_settings(tmp_path: Path) -> None:
    store = make_store(distance_strategy=DistanceStrategy.COSINE)
    store.save_local(tmp_path)
    loaded = AsyncFAISS.load_local(tmp_path, embedding())
    assert type(loaded) is AsyncFAISS
    assert state(loaded) == state(store)
    assert loaded.embedding_model_id == MODEL
    assert loaded.distance_strategy == DistanceStrategy.COSINE
    assert loaded.similarity_search_with_score("gamma", k=4) == store.similarity_search_with_score(
        "gamma", k=4
    )
    manifest = read_manifest(tmp_path)
    assert manifest is not None
    assert manifest["format_version"] == 1 and manifest["generation"] == 1
    assert manifest["embedding_model_id"] == MODEL and manifest["dimension"] == DIM
    assert manifest["distance_strategy"] == "COSINE" and manifest["normalize_L2"] is True
    assert manifest["counts"] == {"vectors": 4, "documents": 4}
    for entry in manifest["files"].values():
        assert (tmp_path / entry["name"]).stat().st_size == entry["size"]
        assert len(entry["sha256"]) == 64
    assert data_files(tmp_path) == ["docstore.1.json", "index.1.faiss", "manifest.json"]


async def test_async_round_trip_runs_off_the_loop(tmp_path: Path) -> None:
    store = make_store()
    await store.asave_local(tmp_path)
    loaded = await AsyncFAISS.aload_local(tmp_path, embedding(), expected_model_id=MODEL)
    assert state(loaded) == state(store)
    await loaded.aadd_texts(["epsilon"], ids=["id-alpha"])  # upsert after load
    await loaded.asave_local(str(tmp_path))
    again = await AsyncFAISS.aload_local(str(tmp_path), embedding())
    assert [d.page_content for d in await again.aget_by_ids(["id-alpha"])] == ["epsilon"]
    assert again.index.ntotal == 4


def test_each_save_is_a_new_generation_and_old_ones_are_removed(tmp_path: Path) -> None:
    store = make_store()
    for expected in (1, 2, 3):
        store.save_local(tmp_path)
        manifest = read_manifest(tmp_path)
        assert manifest is not None and manifest["generation"] == expected
    assert data_files(tmp_path) == ["docstore.3.json", "index.3.faiss", "manifest.json"]


def test_a_lazily_created_empty_store_round_trips(tmp_path: Path) -> None:
    AsyncFAISS.create(embedding(), embedding_model_id=MODEL).save_local(tmp_path)
    loaded = AsyncFAISS.load_local(tmp_path, embedding())
    assert loaded.index is None and loaded.dimension is None
    assert loaded.similarity_search("x") == []
    loaded.add_texts(["first"])
    assert loaded.dimension == DIM


def test_other_index_names_live_side_by_side(tmp_path: Path) -> None:
    make_store(["one"]).save_local(tmp_path)
    make_store(["two", "three"]).save_local(tmp_path, index_name="second")
    assert AsyncFAISS.load_local(tmp_path, embedding()).index.ntotal == 1
    assert AsyncFAISS.load_local(tmp_path, embedding(), "second").index.ntotal == 2
    assert "second.manifest.json" in data_files(tmp_path)


def test_a_new_process_loads_the_saved_index(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    script = (
        "import sys\n"
        "from langchain_core.embeddings import DeterministicFakeEmbedding\n"
        "from langchain_rag_async.vectorstores import AsyncFAISS\n"
        f"store = AsyncFAISS.load_local(sys.argv[1], DeterministicFakeEmbedding(size={DIM}),"
        f" expected_model_id={MODEL!r})\n"
        "print(store.index.ntotal, store.similarity_search('beta', k=1)[0].id)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4", "id-beta"]


def test_conflicting_settings_on_load_are_refused(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    same = AsyncFAISS.load_local(tmp_path, embedding(), distance_strategy="EUCLIDEAN_DISTANCE")
    assert same.index.ntotal == 4
    with pytest.raises(ConfigurationError, match="saved with distance_strategy"):
        AsyncFAISS.load_local(tmp_path, embedding(), distance_strategy=DistanceStrategy.COSINE)


# -- atomicity -----------------------------------------------------------------------------


def crash_on_replace(monkeypatch: pytest.MonkeyPatch, target_suffix: str) -> None:
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(target_suffix):
            raise OSError(28, "No space left on device (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("crash_at", [".json", "manifest.json"], ids=["docstore", "manifest"])
def test_a_crash_mid_save_leaves_the_previous_generation_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    store = make_store()
    store.save_local(tmp_path)
    before = state(store)
    store.add_texts(["new text"], ids=["id-new"])
    store.delete(["id-alpha"])
    with monkeypatch.context() as patch:
        crash_on_replace(patch, crash_at)
        with pytest.raises(VectorStoreError, match="previously saved generation is intact"):
            store.save_local(tmp_path)
    assert not [name for name in data_files(tmp_path) if name.endswith(".tmp")]
    loaded = AsyncFAISS.load_local(tmp_path, embedding())
    assert state(loaded) == before
    store.save_local(tmp_path)  # the next save succeeds and tidies up
    # the failed save removed its own files, so its generation number is free again
    assert data_files(tmp_path) == ["docstore.2.json", "index.2.faiss", "manifest.json"]
    assert state(AsyncFAISS.load_local(tmp_path, embedding())) == state(store)


_SAVE_UNDER_A_FILE_SIZE_LIMIT = """
import resource, signal, sys
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_rag_async.errors import VectorStoreError
from langchain_rag_async.vectorstores import AsyncFAISS

folder = sys.argv[1]
store = AsyncFAISS.load_local(folder, DeterministicFakeEmbedding(size=8))
store.add_texts(["x" * 5000 + str(i) for i in range(20)], ids=[f"big-{i}" for i in range(20)])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as a full disk gives ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
try:
    store.save_local(folder)
except VectorStoreError as exc:
    print(exc)
"""


def test_a_full_disk_during_a_save_names_the_file_and_keeps_the_generation(
    tmp_path: Path,
) -> None:
    store = make_store()
    store.save_local(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _SAVE_UNDER_A_FILE_SIZE_LIMIT, str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "(writing docstore.2.json): File too large" in done.stdout, done.stdout
    assert "previously saved generation is intact" in done.stdout
    assert data_files(tmp_path) == ["docstore.1.json", "index.1.faiss", "manifest.json"]
    assert state(AsyncFAISS.load_local(tmp_path, embedding())) == state(store)


def test_unserialisable_metadata_names_the_document_and_key(tmp_path: Path) -> None:
    store = make_store()
    store.save_local(tmp_path)
    store.add_texts(["bad"], [{"fine": 1, "when": object()}], ids=["doc-bad"])
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(VectorStoreError, match=r"'when' of document 'doc-bad'.*object"):
        store.save_local(tmp_path)
    assert AsyncFAISS.load_local(tmp_path, embedding()).index.ntotal == 4
    # found while the docstore is written, a document at a time: nothing of it is left
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_docstore_is_written_a_document_at_a_time_as_one_json_text() -> None:
    from langchain_rag_async.vectorstores._persistence import FORMAT_VERSION, _encode_documents

    documents = [
        ("a", 'caf\u00e9 "quoted"\n', {"source": "x.md", "n": 1, "tags": ["α", None]}),
        ("b", "", {}),
        ("c", "\x00 control", {"nested": {"deep": 1.5}}),
    ]
    for docs in (documents, documents[:1], []):
        rows = [{"id": i, "page_content": t, "metadata": m} for i, t, m in docs]
        whole = json.dumps({"format_version": FORMAT_VERSION, "documents": rows}).encode()
        assert b"".join(_encode_documents(docs)) == whole


# -- what cannot be loaded -----------------------------------------------------------------


def test_missing_index_is_reported(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError):
        AsyncFAISS.load_local(tmp_path, embedding())
    with pytest.raises(IndexNotFoundError):
        AsyncFAISS.load_local(tmp_path / "nowhere", embedding())
    assert read_manifest(tmp_path) is None


def rewrite_entry(folder: Path, key: str, data: bytes) -> Path:
    """Replace a data file and update its manifest entry, so only the content is wrong."""
    import hashlib

    manifest = json.loads((folder / "manifest.json").read_text())
    path = folder / manifest["files"][key]["name"]
    path.write_bytes(data)
    manifest["files"][key].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("key", ["index", "docstore"])
def test_damaged_files_are_named(tmp_path: Path, key: str, damage: str) -> None:
    make_store().save_local(tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest is not None
    path = tmp_path / manifest["files"][key]["name"]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    else:
        path.unlink()
    with pytest.raises(IndexCorruptedError) as info:
        AsyncFAISS.load_local(tmp_path, embedding())
    assert info.value.path == str(path)
    assert path.name in str(info.value)


def test_unreadable_content_with_matching_checksums_is_named(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    index_path = rewrite_entry(tmp_path, "index", b"not a faiss index at all")
    with pytest.raises(IndexCorruptedError, match="FAISS cannot read it") as info:
        AsyncFAISS.load_local(tmp_path, embedding())
    assert info.value.path == str(index_path)

    make_store().save_local(tmp_path)
    docs_path = rewrite_entry(tmp_path, "docstore", b'{"documents": [')
    with pytest.raises(IndexCorruptedError, match="not a valid docstore") as info:
        AsyncFAISS.load_local(tmp_path, embedding())
    assert info.value.path == str(docs_path)


def test_count_mismatch_is_reported(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    manifest = read_manifest(tmp_path)
    assert manifest is not None
    docs_path = tmp_path / manifest["files"]["docstore"]["name"]
    payload = json.loads(docs_path.read_text())
    payload["documents"] = payload["documents"][:3]
    rewrite_entry(tmp_path, "docstore", json.dumps(payload).encode())
    with pytest.raises(IndexCorruptedError, match="3 documents"):
        AsyncFAISS.load_local(tmp_path, embedding())


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("counts"),
        lambda m: m["files"]["docstore"].update(name="../../etc/passwd"),
        lambda m: m.update(format="something else"),
    ],
    ids=["missing-field", "path-escape", "wrong-format"],
)
def test_malformed_manifest_is_named(tmp_path: Path, change: Any) -> None:
    make_store().save_local(tmp_path)
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    change(manifest)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptedError) as info:
        AsyncFAISS.load_local(tmp_path, embedding())
    assert info.value.path == str(manifest_path)


def test_manifest_that_is_not_json_is_named(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": ')
    with pytest.raises(IndexCorruptedError, match="manifest.json"):
        read_manifest(tmp_path)
    make_store().save_local(tmp_path)  # saving over a corrupt manifest repairs the folder
    assert AsyncFAISS.load_local(tmp_path, embedding()).index.ntotal == 4


def test_newer_format_is_refused_and_not_overwritten(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VectorStoreError, match="upgrade the package"):
        AsyncFAISS.load_local(tmp_path, embedding())
    with pytest.raises(VectorStoreError, match="upgrade the package"):
        make_store().save_local(tmp_path)


def test_model_mismatch_names_both_models(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    with pytest.raises(EmbeddingModelMismatchError) as info:
        AsyncFAISS.load_local(tmp_path, embedding(), expected_model_id="openai:other")
    assert info.value.index_model == MODEL
    assert info.value.configured_model == "openai:other"
    assert MODEL in str(info.value) and "openai:other" in str(info.value)
    manifest = read_manifest(str(tmp_path))
    assert manifest is not None and manifest["embedding_model_id"] == MODEL


async def test_async_model_mismatch(tmp_path: Path) -> None:
    await make_store().asave_local(tmp_path)
    with pytest.raises(EmbeddingModelMismatchError):
        await AsyncFAISS.aload_local(tmp_path, embedding(), expected_model_id="other")


# -- legacy pickle folders -----------------------------------------------------------------


def test_legacy_pickle_folder_needs_the_opt_in(tmp_path: Path) -> None:
    FAISS.from_texts(TEXTS, embedding(), ids=list(TEXTS)).save_local(str(tmp_path))
    with pytest.raises(VectorStoreError, match="allow_dangerous_deserialization=True"):
        AsyncFAISS.load_local(tmp_path, embedding())
    legacy = AsyncFAISS.load_local(tmp_path, embedding(), allow_dangerous_deserialization=True)
    assert type(legacy) is AsyncFAISS
    assert legacy.similarity_search("gamma", k=1)[0].id == "gamma"
    legacy.add_texts(["new gamma"], ids=["gamma"])
    assert legacy.index.ntotal == 4
    legacy.save_local(tmp_path)  # converts to the pickle-free format
    converted = AsyncFAISS.load_local(tmp_path, embedding())
    assert converted.get_by_ids(["gamma"])[0].page_content == "new gamma"


async def test_async_legacy_load(tmp_path: Path) -> None:
    FAISS.from_texts(TEXTS, embedding()).save_local(str(tmp_path))
    with pytest.raises(VectorStoreError, match="pickle"):
        await AsyncFAISS.aload_local(tmp_path, embedding())
    store = await AsyncFAISS.aload_local(
        tmp_path, embedding(), allow_dangerous_deserialization=True
    )
    assert store.index.ntotal == 4


# -- the folder lock -----------------------------------------------------------------------


def test_a_held_lock_times_out_with_index_locked_error(tmp_path: Path) -> None:
    make_store().save_local(tmp_path)
    holder = filelock.FileLock(tmp_path / ".lock")
    with holder:
        with pytest.raises(IndexLockedError, match="lock_timeout"):
            make_store().save_local(tmp_path, lock_timeout=0.1)
        with pytest.raises(IndexLockedError):
            AsyncFAISS.load_local(tmp_path, embedding(), lock_timeout=0.1)
    assert AsyncFAISS.load_local(tmp_path, embedding(), lock_timeout=0.1).index.ntotal == 4


async def test_async_save_waits_for_the_lock_off_the_loop(tmp_path: Path) -> None:
    holder = filelock.FileLock(tmp_path / ".lock")
    holder.acquire()
    try:
        with pytest.raises(IndexLockedError):
            await make_store().asave_local(tmp_path, lock_timeout=0.1)
    finally:
        holder.release()
    assert read_manifest(tmp_path) is None


def test_one_vector_count_check_serves_manifest_and_legacy_loads(tmp_path: Path) -> None:
    from langchain_rag_async.vectorstores._persistence import check_vector_count

    store = AsyncFAISS.create(embedding())
    store.add_texts(["alpha", "beta"], ids=["a", "b"])
    assert check_vector_count(store.index, 2, tmp_path / "x", recorded=2) == 2
    assert check_vector_count(None, 0, tmp_path / "x") == 0
    with pytest.raises(IndexCorruptedError, match="holds 2 vectors for 3 documents"):
        check_vector_count(store.index, 3, tmp_path / "x")
    with pytest.raises(IndexCorruptedError, match="manifest records 5 vectors"):
        check_vector_count(store.index, 2, tmp_path / "x", recorded=5)

    # A legacy pickle whose id map lost an entry is refused through the same check.
    legacy = FAISS.from_texts(["alpha", "beta"], embedding(), ids=["a", "b"])
    del legacy.index_to_docstore_id[1]
    legacy.save_local(str(tmp_path / "legacy"))
    with pytest.raises(IndexCorruptedError, match="holds 2 vectors for 1 documents"):
        AsyncFAISS.load_local(
            tmp_path / "legacy", embedding(), allow_dangerous_deserialization=True
        )
