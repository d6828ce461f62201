"""The inference runtimes of the local model: OpenVINO when installed, else onnxruntime.

Both run the same ONNX file and return the same ``last_hidden_state`` (up to the rounding
of their kernels). ``auto`` with OpenVINO installed runs batches in OpenVINO (its int8
kernels are 2-3x faster than onnxruntime's on a batch) and single texts (queries) in
onnxruntime on one thread, which starts much faster (importing OpenVINO takes seconds):
a process that only answers queries never loads OpenVINO. Loading is blocking: callers
run it in an executor thread.

onnxruntime leaves a QDQ file's ``DequantizeLinear`` nodes on weights that it cannot fuse
into an int8 kernel: the word-embedding table among them, 30,522 x 384 int8 dequantised to
47 MB of floats on every call before a ``Gather`` reads a few rows of it. That cost a query
15 ms of CPU, and 47 MB of arena per call running at once (2.3 GB from 40 threads).
``fold_dequantization=True`` folds those nodes into float constants once, at load:
the same kernels on the same numbers, so the same vectors bit for bit.
"""

from __future__ import annotations

import importlib.util
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from langchain_rag_async.observability import get_logger

__all__ = ("RUNTIMES", "SPLIT", "Runtime", "RuntimeName", "load_runtime", "resolve_runtime")

RuntimeName = Literal["auto", "openvino", "onnxruntime"]
RUNTIMES: tuple[RuntimeName, ...] = ("auto", "openvino", "onnxruntime")
SPLIT = "openvino+onnxruntime"
"""What ``auto`` runs where OpenVINO is installed: batches in OpenVINO, one text in ORT."""
_log = get_logger(__name__)

Feed = dict[str, npt.NDArray[np.int64]]


class Runtime(Protocol):
    """A loaded model: ``last_hidden_state`` of a padded batch (thread-safe)."""

    name: str
    input_names: frozenset[str]

    def run(self, feed: Feed) -> npt.NDArray[np.float32]:
        """The hidden states of a batch, on every core (one text: on one thread)."""
        ...


def resolve_runtime(requested: RuntimeName) -> str:
    """The runtime(s) that will run: ``auto`` is :data:`SPLIT` where OpenVINO is installed."""
    if requested != "auto":
        return requested
    return SPLIT if importlib.util.find_spec("openvino") is not None else "onnxruntime"


def load_runtime(
    path: Path, requested: RuntimeName, threads: int = 0, *, fold_dequantization: bool = False
) -> Runtime:
    """Load ``path`` in the requested runtime (raises the runtime's own errors).

    ``threads`` bounds the threads of a batch (0: every core); one text runs on one.
    ``fold_dequantization`` (for a QDQ file) makes onnxruntime dequantise the weights it
    does not fuse once at load instead of on every call (the same vectors).
    """
    resolved = resolve_runtime(requested)
    if resolved == "openvino":
        return _OpenVINORuntime(path, threads)
    if resolved == SPLIT:
        return _SplitRuntime(path, threads, fold_dequantization=fold_dequantization)
    return _OnnxRuntime(path, threads=threads, fold_dequantization=fold_dequantization)


class _OnnxRuntime:
    """onnxruntime: one session on every core for batches, one on one thread for a text.

    One text is as fast on one thread as on all cores (measured: 6.2 against 6.0 ms
    here), and leaves the other cores to work running beside it, e.g. the keyword side
    of a hybrid search.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        *,
        batches: bool = True,
        threads: int = 0,
        fold_dequantization: bool = False,
    ) -> None:
        fold = fold_dequantization
        self._single = _onnx_session(path, threads=1, fold_dequantization=fold)
        self._batch = (
            _onnx_session(path, threads=threads, fold_dequantization=fold)
            if batches
            else self._single
        )
        self.input_names = frozenset(node.name for node in self._single.get_inputs())

    def run(self, feed: Feed) -> npt.NDArray[np.float32]:
        session = self._single if len(feed["input_ids"]) == 1 else self._batch
        (hidden,) = session.run(["last_hidden_state"], feed)
        return np.asarray(hidden, dtype=np.float32)


def _session_options(threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only; ORT warns about harmless graph details
    options.intra_op_num_threads = threads
    # Idle intra-op threads sleep instead of spinning: on a shared machine, spinning
    # only steals the cores that splitting and the event loop need, for no gain.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _onnx_session(path: Path, *, threads: int, fold_dequantization: bool) -> Any:
    """An onnxruntime session on ``threads`` threads (0: every core).

    With ``fold_dequantization``, in two steps: onnxruntime optimises the file as usual
    (fusing what it can into int8 kernels) and writes the result to a scratch file; that
    is loaded again with only the basic optimisations and QDQ handling off, so constant
    folding turns the ``DequantizeLinear`` nodes left on weights into float constants.
    Prepacking stays off in the second session: prepacked float weights run other
    matrix kernels, whose rounding would change the vectors. Should folding fail (no
    scratch space), the file runs as it is (logged).
    """
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if fold_dequantization:
        try:
            return _folded_session(path, threads)
        except Exception as exc:  # no scratch space, or onnxruntime's own untyped errors
            _log.warning(
                "onnxruntime: weights not folded; a text costs more CPU",
                path=str(path),
                error=str(exc),
            )
    options = _session_options(threads)
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


def _folded_session(path: Path, threads: int) -> Any:
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    options = _session_options(threads)
    with tempfile.TemporaryDirectory(prefix="rag-onnx-") as scratch:
        optimised = Path(scratch) / "optimised.onnx"
        options.optimized_model_filepath = str(optimised)
        onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
        folded = _session_options(threads)
        folded.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        folded.add_session_config_entry("session.disable_quant_qdq", "1")
        folded.add_session_config_entry("session.disable_prepacking", "1")
        return onnxruntime.InferenceSession(
            str(optimised), sess_options=folded, providers=providers
        )


class _OpenVINORuntime:
    """OpenVINO on the CPU: int8 (VNNI) kernels for a quantised file, fp32 otherwise.

    A compiled model serves any number of threads, each call through an infer request of
    its own (a request is not thread-safe): idle requests wait in a pool for the next call.
    A single text runs on a model compiled for one thread, made on first use.
    """

    name = "openvino"

    def __init__(self, path: Path, threads: int = 0) -> None:
        import openvino

        self._core = openvino.Core()
        self._model = self._core.read_model(str(path))
        self._batch = _CompiledPool(self._compile(threads=threads))
        self._single: _CompiledPool | None = None
        self._single_lock = threading.Lock()
        self.input_names = frozenset(
            name for port in self._model.inputs for name in port.get_names()
        )

    def _compile(self, *, threads: int) -> Any:
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            # fp32 where the file is not quantised: the vectors stay those of onnxruntime
            # (bf16 would change them slightly, and needs avx512_bf16 to be fast). No
            # dynamic quantisation of the activations either: for a file with int8
            # weight storage (the legacy one) it would change the vectors (cosine 0.998).
            "INFERENCE_PRECISION_HINT": "f32",
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        return self._core.compile_model(self._model, "CPU", config)

    def run(self, feed: Feed) -> npt.NDArray[np.float32]:
        if len(feed["input_ids"]) != 1:
            return self._batch.run(feed)
        if self._single is None:
            with self._single_lock:
                if self._single is None:
                    self._single = _CompiledPool(self._compile(threads=1))
        return self._single.run(feed)


class _SplitRuntime:
    """Batches in OpenVINO (loaded on the first batch), one text in onnxruntime.

    Should OpenVINO fail to load the file, batches run in onnxruntime too (logged once).
    """

    name = SPLIT

    def __init__(self, path: Path, threads: int = 0, *, fold_dequantization: bool = False) -> None:
        self._path, self._threads = path, threads
        self._fold = fold_dequantization
        # Checks the file loads at all.
        self._onnx = _OnnxRuntime(path, batches=False, fold_dequantization=fold_dequantization)
        self._batches: Runtime | None = None
        self._lock = threading.Lock()
        self.input_names = self._onnx.input_names

    def run(self, feed: Feed) -> npt.NDArray[np.float32]:
        if len(feed["input_ids"]) == 1:
            return self._onnx.run(feed)
        return self._batch_runtime().run(feed)

    def _batch_runtime(self) -> Runtime:
        if self._batches is None:
            with self._lock:
                if self._batches is None:
                    try:
                        self._batches = _OpenVINORuntime(self._path, self._threads)
                    except Exception as exc:  # OpenVINO raises its own, untyped errors
                        _log.warning(
                            "openvino failed; batches run in onnxruntime",
                            path=str(self._path),
                            error=str(exc),
                        )
                        self._batches = _OnnxRuntime(
                            self._path, threads=self._threads, fold_dequantization=self._fold
                        )
        return self._batches


class _CompiledPool:
    """A compiled OpenVINO model and a pool of its idle infer requests."""

    __slots__ = ("_compiled", "_idle", "_output")

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._output = compiled.output("last_hidden_state")
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, feed: Feed) -> npt.NDArray[np.float32]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            hidden = request.infer(feed)[self._output]
            return np.array(hidden, dtype=np.float32)  # a copy: the request reuses its buffer
        finally:
            self._idle.put(request)
