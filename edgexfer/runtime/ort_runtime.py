"""ONNX Runtime over an ONNX artifact, with the CPU, CUDA or TensorRT execution provider."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgexfer._lazy import is_available, require
from edgexfer.errors import EdgexferError
from edgexfer.runtime.base import Artifact, InputSpec, Runtime
from edgexfer.runtime.cuda import gpu_usable

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


def ort_providers() -> list[str]:
    """Providers the installed ONNX Runtime wheel was built with (not the ones usable here)."""
    if not is_available("onnxruntime"):
        return []
    import onnxruntime as ort

    return list(ort.get_available_providers())


def provider_available(provider: str) -> tuple[bool, str]:
    """Is ``provider`` really usable on this machine? (bool, reason when not)."""
    if not is_available("onnxruntime"):
        return False, "onnxruntime is not installed"
    if provider not in ort_providers():
        return False, f"this onnxruntime build has no {provider}"
    if provider == CPU:
        return True, "available"
    ok, reason = gpu_usable()
    if not ok:
        return False, reason
    if provider == TENSORRT and not _tensorrt_libraries_present():
        return False, "TensorRT libraries (libnvinfer) not found; install TensorRT for the TensorRT provider"
    return True, "available"


def _tensorrt_libraries_present() -> bool:
    import ctypes

    if is_available("tensorrt_libs") or is_available("tensorrt"):
        return True
    for name in ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


#: graph optimization levels by name (ONNX Runtime's ``GraphOptimizationLevel``)
OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                       "all": "ORT_ENABLE_ALL"}


def session_options(threads: int | None = None, *, optimization: str = "all", spinning: bool | None = None):
    """``onnxruntime.SessionOptions`` as edgexfer uses them everywhere (bench, export checks, benchmarks).

    ``optimization``: a key of `OPTIMIZATION_LEVELS`. ``spinning``: ``False`` stops idle intra-op threads
    from spinning (``session.intra_op.allow_spinning=0``), which matters only when another session or
    process shares the cores; ``None`` keeps ONNX Runtime's default (spinning on).
    """
    ort = require("onnxruntime", "running ONNX models")
    if optimization not in OPTIMIZATION_LEVELS:
        raise EdgexferError(f"unknown graph optimization level '{optimization}'",
                            f"use one of: {', '.join(OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    options.log_severity_level = 3  # errors only: keep the bench and export output readable
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


class OrtRuntime(Runtime):
    """An ``onnxruntime.InferenceSession`` on one provider (the CPU provider as its only fallback).

    ``source`` is an ONNX file, or a session built elsewhere (an ``InferenceSession``, for
    experiments with other session options), or a loader: a callable returning a session. The
    export's own checks (parity, INT8 agreement, sensitivity) and the benchmarks use this class too.
    """

    name = "onnxruntime"

    def __init__(self, source, provider: str = CPU, threads: int | None = None,
                 artifact: Artifact | None = None, cache_dir: str | os.PathLike[str] | None = None, *,
                 optimization: str = "all", spinning: bool | None = None):
        self.threads = threads
        if isinstance(source, (str, os.PathLike)):
            self.path: Path | None = Path(source)
            self.provider = provider
            self.session = self._load(provider, session_options(threads, optimization=optimization, spinning=spinning),
                                      artifact, cache_dir)
        else:
            session = source() if callable(source) and not hasattr(source, "run") else source
            if not hasattr(session, "run") or not hasattr(session, "get_inputs"):
                raise EdgexferError(f"OrtRuntime needs an ONNX file, a session or a loader, not {type(source).__name__}",
                                    "pass the path of an exported .onnx file")
            self.session = session
            self.path = None
            self.provider = session.get_providers()[0]
        inputs = self.session.get_inputs()
        where = self.path or "the session's model"
        if len(inputs) != 1:
            raise EdgexferError(f"{where} has {len(inputs)} inputs; an exported model must have exactly one",
                                "re-export the model")
        first = inputs[0]
        shape = tuple(d if isinstance(d, int) else None for d in first.shape)
        self.input_spec = InputSpec(first.name, shape, _ORT_DTYPES.get(first.type, "float32"))
        self.output_name = self.session.get_outputs()[0].name
        batch_dim = first.shape[0]
        self.max_batch = batch_dim if isinstance(batch_dim, int) else None

    def _load(self, provider: str, options, artifact: Artifact | None, cache_dir):
        ort = require("onnxruntime", "running ONNX models")
        providers: list[object] = [(provider, _provider_options(provider, artifact, cache_dir))]
        if provider == TENSORRT:
            providers.append(CUDA)  # nodes TensorRT does not take run on CUDA, not on the CPU
        if provider != CPU:
            providers.append(CPU)
        try:
            session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable graphs
            raise EdgexferError(f"onnxruntime cannot load {self.path} on {provider}: {exc}",
                                "re-export the model or choose another runtime") from exc
        used = session.get_providers()
        if used[0] != provider:
            name = self.path.name if self.path is not None else "the session's model"
            raise EdgexferError(f"onnxruntime fell back from {provider} to {used[0]} for {name}",
                                f"check the {provider} installation or choose --runtimes ort-cpu")
        return session

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # session.run returns host arrays: on CUDA/TensorRT it has already waited for the device
        return self.session.run([self.output_name], {self.input_spec.name: batch})[0]

    def predict_all(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Probabilities of ``images`` (uint8 or float, NHWC) in batches, concatenated."""
        outputs = [self.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(outputs).astype(np.float32)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def predict_onnx(path: str | os.PathLike[str], images: np.ndarray, batch_size: int = 16,
                 threads: int | None = None) -> np.ndarray:
    """Probabilities of ``images`` from the ONNX file at ``path`` on the CPU provider (one session, closed after).

    Throughput work (the export's checks), so the intra-op threads do not spin between calls: on cores
    shared with other jobs spinning costs wall time and CPU for nothing."""
    with OrtRuntime(path, threads=threads, spinning=False) as runtime:
        return runtime.predict_all(images, batch_size)


@dataclass(frozen=True)
class KernelEvent:
    """One node's kernel run in an ONNX Runtime profile: the node's name after graph optimization, its
    op type, the call it belongs to (0-based, warm-up calls excluded) and its duration in ms."""

    node: str
    op_type: str
    call: int
    ms: float


def kernel_profile(path: str | os.PathLike[str], batch: np.ndarray, *, threads: int | None = None, iterations: int = 10,
                   warmup: int = 2, optimization: str = "all") -> list[KernelEvent]:
    """Run the model at ``path`` alone on the CPU provider ``warmup + iterations`` times on ``batch`` with
    ONNX Runtime's profiler on; return the kernel events of the timed calls. The profile file is written to
    a temporary folder and removed."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgexfer-profile-") as tmp:
        options = session_options(threads, optimization=optimization)
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        ort = require("onnxruntime", "running ONNX models")
        session = ort.InferenceSession(os.fspath(path), sess_options=options, providers=[CPU])
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(batch, dtype=np.float32)}
        for _ in range(warmup + iterations):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        del session
    # each call is one "model_run" event; a node's kernel event belongs to the call whose span holds it
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    out: list[KernelEvent] = []
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        call = next((i for i, (t0, t1) in enumerate(runs) if t0 <= event["ts"] <= t1), -1)
        if call >= warmup:
            out.append(KernelEvent(event["name"][: -len("_kernel_time")], event["args"]["op_name"], call - warmup,
                                   event["dur"] / 1000.0))
    return out


def _provider_options(provider: str, artifact: Artifact | None, cache_dir: str | os.PathLike[str] | None) -> dict:
    if provider != TENSORRT:
        return {}
    options: dict[str, object] = {}
    precision = artifact.precision if artifact else "fp32"
    # precision is decided in the graph (Q/DQ or FP16 tensors); these flags let TensorRT honour it
    if precision == "int8":
        options["trt_int8_enable"] = True
    if precision in ("fp16", "int8"):
        options["trt_fp16_enable"] = True
    if cache_dir is not None:
        options["trt_engine_cache_enable"] = True
        options["trt_engine_cache_path"] = str(cache_dir)
    return options
