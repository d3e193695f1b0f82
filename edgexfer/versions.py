"""Library versions recorded beside every artifact, read without importing the libraries."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

DEFAULT_LIBRARIES = (
    "edgexfer", "numpy", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu",
    "onnxconverter-common", "scikit-learn", "tensorrt", "cuda-python", "keras-tuner", "pydicom", "openvino",
    "nncf",
)


def library_versions(names: tuple[str, ...] = DEFAULT_LIBRARIES) -> dict[str, str | None]:
    """Installed distribution versions (None when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def onnxruntime_version() -> str | None:
    """The ONNX Runtime version whichever wheel (cpu or gpu) provides it."""
    v = library_versions(("onnxruntime", "onnxruntime-gpu"))
    return v.get("onnxruntime-gpu") or v.get("onnxruntime")


def machine_info() -> dict[str, object]:
    import os

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "int8_instructions": int8_instructions(),
        "bf16_instructions": bf16_instructions(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }


#: CPU flags (``/proc/cpuinfo``) that decide how fast INT8 runs on the CPU, by their usual names
_INT8_FLAGS = {"avx2": "AVX2", "avx512bw": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
               "amx_int8": "AMX-INT8", "asimddp": "Arm dot product", "i8mm": "Arm I8MM"}


def int8_instructions() -> list[str]:
    """The CPU's instruction sets that ONNX Runtime's int8 kernels use (empty where /proc/cpuinfo is absent)."""
    flags = _cpu_flags()
    return [name for flag, name in _INT8_FLAGS.items() if flag in flags]


#: CPU flags (``/proc/cpuinfo``) of native BF16 arithmetic. OpenVINO's CPU plugin runs BF16 natively on these and
#: only simulates it elsewhere, slower than FP32 (https://docs.openvino.ai/2021.4/openvino_docs_IE_DG_Bfloat16Inference.html;
#: data types: https://docs.openvino.ai/2024/openvino-workflow/running-inference/inference-devices-and-modes/cpu-device.html)
_BF16_FLAGS = {"avx512_bf16": "AVX-512 BF16", "amx_bf16": "AMX-BF16"}


def bf16_instructions() -> list[str]:
    """The CPU's native BF16 instruction sets (empty where there are none, or /proc/cpuinfo is absent)."""
    return [name for flag, name in _BF16_FLAGS.items() if flag in _cpu_flags()]


def bf16_native() -> tuple[bool, str]:
    """Does this CPU execute BF16 natively? (bool, reason when not)."""
    if bf16_instructions():
        return True, "available"
    return False, (f"this CPU ({_cpu_name()}) has no native BF16 instructions (AVX-512 BF16 or AMX); BF16 would "
                   "be emulated, slower than FP32")


def _cpu_flags() -> set[str]:
    return set((_cpuinfo_field("flags", "Features") or "").split())


def _cpuinfo_field(*keys: str) -> str | None:
    """The value of the first ``/proc/cpuinfo`` line starting with one of ``keys`` (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(keys):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()
