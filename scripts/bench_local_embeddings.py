"""Offline embedding speed and quality, today's model against the fast one, side by side.

Embeds SciFact abstracts (title + text, max 256 word pieces, batches of 16 sorted by
length, as the library does) with each candidate in the same run and prints, per
candidate: texts per second, the mean and minimum cosine to today's vectors, and the
dense-only nDCG@10 over a subset of SciFact (every abstract judged relevant to a train
query, plus others in corpus order up to ``--docs``; all train queries).

Candidates (each through the library's own runtime settings unless said otherwise):
  today          the wheel's file (int8 storage, fp32 compute) in onnxruntime: until now
  today-ov       the same file in OpenVINO (fp32, as the library runs it)
  today-ov-dq    the same file in OpenVINO's defaults (dynamic int8 activations)
  today-ov-bf16  the same file in OpenVINO with bf16 compute (needs avx512_bf16 to pay)
  static-ov      the static int8 file of the repository in OpenVINO: the new default
  static-ort     the same file in onnxruntime (where OpenVINO is not installed)
  static-ov-1t   static-ov on one thread (RAG_LOCAL_THREADS=1; the others use every core)
  static-ort-1t  static-ort on one thread
  dynamic-ort    onnxruntime dynamic int8 (per channel) of the fp32 export (needs ``onnx``)

Speed is the median of interleaved rounds (each candidate in turn on the same abstracts),
as texts per second and per CPU second (all threads): on a shared machine the second one
moves less with the load.

Usage:
    .venv/bin/python scripts/bench_local_embeddings.py [--docs N] [--rounds N]
        [--speed-texts N] [--only today,static-ov,static-ort]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import load_scifact  # noqa: E402
from langchain_rag_async.embeddings import local  # noqa: E402
from langchain_rag_async.embeddings._local_runtimes import RuntimeName, load_runtime  # noqa: E402

Run = Callable[[dict[str, npt.NDArray[np.int64]]], npt.NDArray[np.float32]]
BATCH = 16
CANDIDATES = (
    "today",
    "today-ov",
    "today-ov-dq",
    "today-ov-bf16",
    "static-ov",
    "static-ort",
    "static-ov-1t",
    "static-ort-1t",
    "dynamic-ort",
)


def library_runner(path: Path, runtime: RuntimeName, threads: int = 0) -> Run:
    """The library's own runtime (the same settings as ``LocalMiniLMEmbeddings``)."""
    qdq = path == local.STATIC_MODEL_PATH  # as LocalMiniLMEmbeddings loads that file
    loaded = load_runtime(path, runtime, threads, fold_dequantization=qdq)

    def run(feed: dict[str, npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        return loaded.run({k: v for k, v in feed.items() if k in loaded.input_names})

    return run


def ov_runner(path: Path, config: dict[str, Any]) -> Run:
    """OpenVINO with other settings than the library's (for the record)."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output("last_hidden_state")

    def run(feed: dict[str, npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        return np.array(request.infer(feed)[output], dtype=np.float32)

    return run


def dynamic_int8(workdir: Path) -> Path:
    """onnxruntime's dynamic quantisation (int8 weights per channel) of the fp32 export."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    sys.path.insert(0, str(ROOT / "scripts"))
    from build_local_model import fold_weight_dequantisation

    model = onnx.load(local._wheel_model_path())
    fold_weight_dequantisation(model)
    fp32, out = workdir / "fp32.onnx", workdir / "dynamic.onnx"
    onnx.save(model, fp32)
    quantize_dynamic(fp32, out, per_channel=True, weight_type=QuantType.QInt8)
    return out


def runner(name: str, workdir: Path) -> Run:
    legacy, static = local._wheel_model_path(), local.STATIC_MODEL_PATH
    if name == "today":
        return library_runner(legacy, "onnxruntime")
    if name == "today-ov":
        return library_runner(legacy, "openvino")
    if name == "today-ov-dq":
        return ov_runner(legacy, {"PERFORMANCE_HINT": "LATENCY"})
    if name == "today-ov-bf16":
        return ov_runner(
            legacy, {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16"}
        )
    if name == "static-ov":
        return library_runner(static, "openvino")
    if name == "static-ort":
        return library_runner(static, "onnxruntime")
    if name == "static-ov-1t":
        return library_runner(static, "openvino", threads=1)
    if name == "static-ort-1t":
        return library_runner(static, "onnxruntime", threads=1)
    if name == "dynamic-ort":
        return library_runner(dynamic_int8(workdir), "onnxruntime")
    raise SystemExit(f"unknown candidate {name!r}; choose from {', '.join(CANDIDATES)}")


def embed(run: Run, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], float, float]:
    """Vectors in input order, texts per second and per CPU second (tokenizing included)."""
    tokenizer = local.load_tokenizer()
    started, cpu = time.perf_counter(), time.process_time()
    encodings = tokenizer.encode_batch(list(texts))
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    vectors = np.empty((len(texts), local.LOCAL_DIMENSION), dtype=np.float32)
    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        arrays = local._pad([encodings[i] for i in rows])
        hidden = run(arrays)
        vectors[rows] = local._mean_pool_normalize(hidden, arrays["attention_mask"])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return vectors, len(texts) / wall, len(texts) / cpu


def ndcg10(
    doc_vectors: npt.NDArray[np.float32],
    doc_ids: Sequence[str],
    query_vectors: npt.NDArray[np.float32],
    query_ids: Sequence[str],
    qrels: dict[str, dict[str, int]],
) -> float:
    scores = query_vectors @ doc_vectors.T
    top = np.argsort(-scores, axis=1)[:, :10]
    total = []
    for row, query_id in enumerate(query_ids):
        relevant = qrels[query_id]
        dcg = sum(relevant.get(doc_ids[j], 0) / math.log2(i + 2) for i, j in enumerate(top[row]))
        ideal = sorted(relevant.values(), reverse=True)[:10]
        total.append(dcg / sum(r / math.log2(i + 2) for i, r in enumerate(ideal)))
    return statistics.fmean(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1200, help="abstracts in the subset")
    parser.add_argument("--speed-texts", type=int, default=256, help="abstracts per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--speed-only", action="store_true", help="skip the quality pass")
    parser.add_argument(
        "--only", default="today,static-ov,static-ort", help="comma-separated candidates"
    )
    args = parser.parse_args()
    data = load_scifact()
    relevant = {doc_id for judged in data.qrels.values() for doc_id in judged}
    docs = [d for d in data.documents if d.id in relevant]
    docs += [d for d in data.documents if d.id not in relevant][: max(0, args.docs - len(docs))]
    doc_ids = [str(d.id) for d in docs]
    texts = [d.page_content for d in docs]
    query_ids = list(data.queries)
    query_texts = [data.queries[q] for q in query_ids]
    print(
        f"{len(texts)} SciFact abstracts (mean {statistics.fmean(map(len, texts)):.0f} chars), "
        f"{len(query_ids)} queries; batches of {BATCH}; max {local.MAX_SEQ_LENGTH} tokens"
    )
    names = args.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: runner(name, Path(tmp)) for name in names}
        quality: dict[str, tuple[float, float, float]] = {}
        reference: npt.NDArray[np.float32] | None = None
        for name, run in runs.items():
            embed(run, texts[:32])  # warm-up: compile, allocate
            if args.speed_only:
                continue
            vectors, _, _ = embed(run, texts)
            query_vectors, _, _ = embed(run, query_texts)
            reference = vectors if reference is None else reference
            cosine = np.sum(vectors * reference, axis=1)
            score = ndcg10(vectors, doc_ids, query_vectors, query_ids, data.qrels)
            quality[name] = (float(cosine.mean()), float(cosine.min()), score)
            print(f"  {name}: nDCG@10 {score:.4f}", file=sys.stderr, flush=True)
        # Speed: the candidates take turns on the same slice, round after round, so that
        # the load of a shared machine falls on all of them alike; the median is printed.
        speed: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        sample = texts[: args.speed_texts]
        for _ in range(args.rounds):
            for name, run in runs.items():
                _, rate, per_cpu = embed(run, sample)
                speed[name].append((rate, per_cpu))
    base = statistics.median(rate for rate, _ in speed[names[0]])
    print(
        f"speed: {len(sample)} abstracts, median of {args.rounds} interleaved rounds; "
        f"quality: {0 if args.speed_only else len(texts)} abstracts"
    )
    header = ("candidate", "texts/s", "x", "per CPU-s", "cos mean", "cos min", "nDCG@10")
    print("{:<12} {:>8} {:>5} {:>9} {:>9} {:>8} {:>8}".format(*header))
    for name in names:
        rate = statistics.median(r for r, _ in speed[name])
        per_cpu = statistics.median(c for _, c in speed[name])
        figures = "{:9.5f} {:8.5f} {:8.4f}".format(*quality[name]) if name in quality else ""
        print(f"{name:<12} {rate:8.1f} {rate / base:5.2f} {per_cpu:9.1f} {figures}")


if __name__ == "__main__":
    main()
