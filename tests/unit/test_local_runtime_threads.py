"""The local model's onnxruntime path called from many threads (a sync LangChain app).

A FastAPI ``def`` route, or any thread pool, calls ``embed_query`` from tens of threads
at once. With the static int8 (QDQ) file, onnxruntime used to dequantise the whole
word-embedding table (30,522 x 384, 47 MB of floats) on every call before reading a few
rows of it: 15 ms of CPU per query, and 47 MB of arena per call running at once (2.3 GB
of RSS from 40 threads). The tests read onnxruntime's own profile of real runs.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest

from langchain_rag_async.embeddings.local import (
    STATIC_MODEL_PATH,
    LocalMiniLMEmbeddings,
    _pad,
    load_tokenizer,
)

TEXTS = [
    "How do lifetimes prevent dangling references?",
    "Cargo is Rust's build system and package manager. " * 8,
    "ok",
    "What does the borrow checker do?",
]
THREADS = 16
TABLE_BYTES = 30_522 * 384 * 4  # the word-embedding table in float32


@pytest.fixture
def profiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every onnxruntime session made from now on writes its profile under ``tmp_path``."""
    real = onnxruntime.SessionOptions

    def profiling_options() -> Any:
        options = real()
        options.enable_profiling = True
        options.profile_file_prefix = str(tmp_path / "profile")
        return options

    monkeypatch.setattr(onnxruntime, "SessionOptions", profiling_options)
    return tmp_path


def _fresh_model(tmp_path: Path) -> LocalMiniLMEmbeddings:
    """The default model on onnxruntime, at a path the process-wide cache has not loaded."""
    link = tmp_path / "weights" / STATIC_MODEL_PATH.name
    link.parent.mkdir()
    link.symlink_to(STATIC_MODEL_PATH)
    return LocalMiniLMEmbeddings(model_path=link, runtime="onnxruntime")


def _kernel_runs(session: Any) -> list[dict[str, Any]]:
    """The node runs that the session's profile recorded (ends its profiling)."""
    events = json.loads(Path(session.end_profiling()).read_text())
    return [
        event["args"]
        for event in events
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
    ]


def test_a_query_does_not_dequantise_the_vocabulary(profiled: Path) -> None:
    model = _fresh_model(profiled)
    vector = model.embed_query(TEXTS[0])
    assert len(vector) == 384
    loaded = model._loaded
    assert loaded is not None
    runs = _kernel_runs(loaded.runtime._single)  # type: ignore[attr-defined]
    assert runs, "the profile recorded no node"
    largest = max(runs, key=lambda run: int(run["output_size"]))
    # A query of 10 word pieces makes no tensor near the size of the vocabulary table
    # (before the fix: DequantizeLinear output 46,879,488 bytes on every call).
    assert int(largest["output_size"]) < TABLE_BYTES // 16, largest
    assert not [run for run in runs if int(run["output_size"]) >= TABLE_BYTES]


def test_many_threads_share_one_session_with_a_small_arena(profiled: Path) -> None:
    model = _fresh_model(profiled)
    serial = [model.embed_query(text) for text in TEXTS]
    start = threading.Barrier(THREADS, timeout=60)

    def embed(index: int) -> list[float]:
        start.wait()
        return model.embed_query(TEXTS[index % len(TEXTS)])

    with ThreadPoolExecutor(THREADS) as pool:
        together = list(pool.map(embed, range(4 * THREADS)))
    # The same vectors, bit for bit, whatever ran beside them.
    assert all(vector == serial[i % len(TEXTS)] for i, vector in enumerate(together))
    loaded = model._loaded
    assert loaded is not None
    runtime: Any = loaded.runtime
    runs = _kernel_runs(runtime._single)
    # The arena keeps what the calls needed at their peak: before the fix a copy of the
    # dequantised table per call running at once (78 MB from one thread, 1.1 GB from 16
    # here); after it about 1 MB a call, the arena growing by doubling (32 MB here).
    held = max(int(run["mem_arena_held"]) for run in runs)
    assert held < 2 * TABLE_BYTES, f"{held:,} bytes held by the arena"


@pytest.mark.parametrize("threads", [1, 0])
def test_folding_keeps_the_vectors_bit_for_bit(threads: int) -> None:
    """The folded session computes what onnxruntime computes on the file as it is."""
    from langchain_rag_async.embeddings._local_runtimes import _onnx_session

    plain = _onnx_session(STATIC_MODEL_PATH, threads=threads, fold_dequantization=False)
    folded = _onnx_session(STATIC_MODEL_PATH, threads=threads, fold_dequantization=True)
    names = {node.name for node in plain.get_inputs()}
    tokenizer = load_tokenizer()
    for batch in [[text] for text in TEXTS] + [TEXTS]:
        arrays = _pad(tokenizer.encode_batch(batch))
        feed = {name: array for name, array in arrays.items() if name in names}
        (expected,) = plain.run(["last_hidden_state"], feed)
        (actual,) = folded.run(["last_hidden_state"], feed)
        assert np.array_equal(actual, expected), batch


def test_without_scratch_space_the_file_runs_unfolded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from langchain_rag_async.embeddings._local_runtimes import _onnx_session

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    session = _onnx_session(STATIC_MODEL_PATH, threads=1, fold_dequantization=True)
    plain = _onnx_session(STATIC_MODEL_PATH, threads=1, fold_dequantization=False)
    names = {node.name for node in plain.get_inputs()}
    arrays = _pad(load_tokenizer().encode_batch(TEXTS[:1]))
    feed = {name: array for name, array in arrays.items() if name in names}
    (expected,) = plain.run(["last_hidden_state"], feed)
    (actual,) = session.run(["last_hidden_state"], feed)
    assert np.array_equal(actual, expected)
