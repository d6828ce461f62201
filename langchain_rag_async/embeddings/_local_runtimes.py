"""The inference runtimes of the local model: OpenVINO when installed, else onnxruntime.

Both run the same ONNX file and return the same ``last_hidden_state`` (up to the rounding
of their kernels). ``auto`` with OpenVINO installed runs batches in OpenVINO (its int8
kernels are 2-3x faster than onnxruntime's on a batch) and single texts (queries) in
onnxruntime on one thread, which starts much faster (importing OpenVINO takes seconds):
a process that only answers queries never loads OpenVINO. Loading is blocking: callers
run it in an executor thread.
"""

from __future__ import annotations

import importlib.util
import queue
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


def load_runtime(path: Path, requested: RuntimeName, threads: int = 0) -> Runtime:
    """Load ``path`` in the requested runtime (raises the runtime's own errors).

    ``threads`` bounds the threads of a batch (0: every core); one text runs on one.
    """
    resolved = resolve_runtime(requested)
    if resolved == "openvino":
        return _OpenVINORuntime(path, threads)
    if resolved == SPLIT:
        return _SplitRuntime(path, threads)
    return _OnnxRuntime(path, threads=threads)


class _OnnxRuntime:
    """onnxruntime: one session on every core for batches, one on one thread for a text.

    One text is as fast on one thread as on all cores (measured: 6.2 against 6.0 ms
    here), and leaves the other cores to work running beside it, e.g. the keyword side
    of a hybrid search.
    """

    name = "onnxruntime"

    def __init__(self, path: Path, *, batches: bool = True, threads: int = 0) -> None:
        self._single = self._session(path, threads=1)
        self._batch = self._session(path, threads=threads) if batches else self._single
        self.input_names = frozenset(node.name for node in self._single.get_inputs())

    @staticmethod
    def _session(path: Path, *, threads: int) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only; ORT warns about harmless graph details
        options.intra_op_num_threads = threads
        # Idle intra-op threads sleep instead of spinning: on a shared machine, spinning
        # only steals the cores that splitting and the event loop need, for no gain.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def run(self, feed: Feed) -> npt.NDArray[np.float32]:
        session = self._single if len(feed["input_ids"]) == 1 else self._batch
        (hidden,) = session.run(["last_hidden_state"], feed)
        return np.asarray(hidden, dtype=np.float32)


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

    def __init__(self, path: Path, threads: int = 0) -> None:
        self._path, self._threads = path, threads
        self._onnx = _OnnxRuntime(path, batches=False)  # checks the file loads at all
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
                        self._batches = _OnnxRuntime(self._path, threads=self._threads)
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
