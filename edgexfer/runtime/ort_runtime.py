"""ONNX Runtime over an ONNX artifact, with the CPU, CUDA or TensorRT execution provider."""

from __future__ import annotations

import os
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


class OrtRuntime(Runtime):
    """An ``onnxruntime.InferenceSession`` on one provider (the CPU provider as its only fallback)."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], provider: str = CPU, threads: int | None = None,
                 artifact: Artifact | None = None, cache_dir: str | os.PathLike[str] | None = None):
        ort = require("onnxruntime", "running ONNX models")
        self.path = Path(path)
        self.provider = provider
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: keep the bench output readable
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.threads = threads
        providers: list[object] = [(provider, _provider_options(provider, artifact, cache_dir))]
        if provider == TENSORRT:
            providers.append(CUDA)  # nodes TensorRT does not take run on CUDA, not on the CPU
        if provider != CPU:
            providers.append(CPU)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable graphs
            raise EdgexferError(f"onnxruntime cannot load {self.path} on {provider}: {exc}",
                                "re-export the model or choose another runtime") from exc
        used = self.session.get_providers()
        if used[0] != provider:
            raise EdgexferError(f"onnxruntime fell back from {provider} to {used[0]} for {self.path.name}",
                                f"check the {provider} installation or choose --runtimes ort-cpu")
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise EdgexferError(f"{self.path} has {len(inputs)} inputs; an exported model must have exactly one",
                                "re-export the model")
        first = inputs[0]
        shape = tuple(d if isinstance(d, int) else None for d in first.shape)
        self.input_spec = InputSpec(first.name, shape, _ORT_DTYPES.get(first.type, "float32"))
        self.output_name = self.session.get_outputs()[0].name
        batch_dim = first.shape[0]
        self.max_batch = batch_dim if isinstance(batch_dim, int) else None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # session.run returns host arrays: on CUDA/TensorRT it has already waited for the device
        return self.session.run([self.output_name], {self.input_spec.name: batch})[0]

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


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
