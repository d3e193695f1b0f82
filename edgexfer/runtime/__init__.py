"""Runtimes: one contract (``Runtime``) over Keras, ONNX Runtime (CPU/CUDA/TensorRT), TensorRT engines and OpenVINO.

``RUNTIMES`` is the table the bench chooses from; importing this package imports no backend
(TensorFlow, onnxruntime, tensorrt and openvino are imported when a runtime is opened or probed).
"""

from __future__ import annotations

from collections.abc import Sequence

import edgexfer.runtime.ort_runtime as ort_runtime  # provider_available looked up when called (tests replace it)
from edgexfer.errors import EdgexferError
from edgexfer.runtime.base import Artifact, Derived, Execution, InputSpec, Runtime, RuntimeKind
from edgexfer.runtime.cuda import gpu_status, gpu_usable
from edgexfer.runtime.keras_runtime import KerasRuntime, keras_available
from edgexfer.runtime.ort_runtime import OrtRuntime
from edgexfer.runtime.ov_runtime import OvRuntime, derive_bf16, device_available
from edgexfer.runtime.trt_runtime import TrtRuntime, trt_available


def _keras_available() -> tuple[bool, str]:
    return keras_available()


def _open_keras(artifact: Artifact, threads: int | None, batch_sizes: tuple[int, ...] | None = None) -> Runtime:
    return KerasRuntime(artifact, threads)


def _ort_kind(name: str, provider: str, description: str) -> RuntimeKind:
    def available() -> tuple[bool, str]:
        return ort_runtime.provider_available(provider)

    def supports(artifact: Artifact) -> bool:
        if artifact.format != "onnx":
            return False
        # TensorRT takes only symmetric signed INT8 (the `tensorrt` profile), not the `cpu` profile
        return not (provider == "TensorrtExecutionProvider" and artifact.precision == "int8"
                    and artifact.target not in ("tensorrt", "any"))

    def open_(artifact: Artifact, threads: int | None, batch_sizes: tuple[int, ...] | None = None) -> Runtime:
        # the TensorRT provider's engines go to the user cache (tensorrt_cache_dir), not the export folder
        return OrtRuntime(artifact.path, provider, threads, artifact=artifact, batch_sizes=batch_sizes)

    return RuntimeKind(name, description, available, supports, open_)


def _trt_available() -> tuple[bool, str]:
    return trt_available()


def _open_trt(artifact: Artifact, threads: int | None, batch_sizes: tuple[int, ...] | None = None) -> Runtime:
    # the engine's own optimization profile (built by export) decides the batch range

    return TrtRuntime(artifact, threads)


def _ov_kind(name: str, device: str, description: str) -> RuntimeKind:
    """OpenVINO on ``device`` (CPU, GPU, NPU), running the export's ONNX files; on the CPU it also derives the
    ``bf16`` artifact (the FP32 file with the bf16 precision hint) where the CPU runs BF16 natively."""

    def available() -> tuple[bool, str]:
        return device_available(device)

    def supports(artifact: Artifact) -> bool:
        # bf16 is not a file: it is the FP32 file with the bf16 hint, derived (below) only where it runs natively
        return artifact.format == "onnx" and (artifact.precision in ("fp32", "fp16", "int8")
                                              or (artifact.precision == "bf16" and device == "CPU"))

    def open_(artifact: Artifact, threads: int | None, batch_sizes: tuple[int, ...] | None = None) -> Runtime:
        # OpenVINO compiles for any batch: the benched sizes need no profile

        return OvRuntime(artifact, threads, device)

    def derive(artifacts: Sequence[Artifact]) -> Derived:
        return derive_bf16(artifacts)

    return RuntimeKind(name, description, available, supports, open_, derive if device == "CPU" else None)


RUNTIMES: dict[str, RuntimeKind] = {
    "keras": RuntimeKind("keras", "Keras predict on the source run's model.keras (needs TensorFlow)",
                         _keras_available, lambda a: a.format == "keras", _open_keras),
    "ort-cpu": _ort_kind("ort-cpu", "CPUExecutionProvider", "ONNX Runtime, CPU execution provider"),
    "ort-cuda": _ort_kind("ort-cuda", "CUDAExecutionProvider", "ONNX Runtime, CUDA execution provider"),
    "ort-trt": _ort_kind("ort-trt", "TensorrtExecutionProvider", "ONNX Runtime, TensorRT execution provider"),
    "trt": RuntimeKind("trt", "TensorRT engine (model_<precision>.engine) through the TensorRT API",
                       _trt_available, lambda a: a.format == "tensorrt", _open_trt),
    "ov-cpu": _ov_kind("ov-cpu", "CPU", "OpenVINO on the CPU (precision hint f32, or bf16 for the bf16 row)"),
    "ov-gpu": _ov_kind("ov-gpu", "GPU", "OpenVINO on an Intel GPU (precision hint f32)"),
    "ov-npu": _ov_kind("ov-npu", "NPU", "OpenVINO on an Intel NPU (precision hint f32)"),
}


def get_runtime(name: str) -> RuntimeKind:
    if name not in RUNTIMES:
        raise EdgexferError(f"unknown runtime '{name}'", f"choose from: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def select_runtimes(requested: list[str] | None = None) -> tuple[list[RuntimeKind], list[dict[str, str]]]:
    """Runtimes to use and the ones skipped with their reason.

    ``requested`` None: every runtime usable here, the others listed as skipped. A runtime asked
    for by name that is not usable is an error (exit 2), not a silent skip.
    """
    if requested:
        chosen = []
        for name in requested:
            kind = get_runtime(name)
            ok, reason = kind.available()
            if not ok:
                raise EdgexferError(f"runtime '{name}' is not usable here: {reason}",
                                    "leave it out of --runtimes (default: every usable runtime)")
            chosen.append(kind)
        return chosen, []
    chosen, skipped = [], []
    for kind in RUNTIMES.values():
        ok, reason = kind.available()
        if ok:
            chosen.append(kind)
        else:
            skipped.append({"runtime": kind.name, "reason": reason})
    return chosen, skipped


__all__ = ["RUNTIMES", "Artifact", "Derived", "Execution", "InputSpec", "Runtime", "RuntimeKind", "get_runtime", "gpu_status",
           "gpu_usable", "select_runtimes"]
