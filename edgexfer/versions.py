"""Library versions recorded beside every artifact, read without importing the libraries."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

DEFAULT_LIBRARIES = (
    "edgexfer", "numpy", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu",
    "onnxconverter-common", "scikit-learn", "tensorrt", "cuda-python", "keras-tuner", "pydicom",
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
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }


#: CPU flags (``/proc/cpuinfo``) that decide how fast INT8 runs on the CPU, by their usual names
_INT8_FLAGS = {"avx2": "AVX2", "avx512bw": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
               "amx_int8": "AMX-INT8", "asimddp": "Arm dot product", "i8mm": "Arm I8MM"}


def int8_instructions() -> list[str]:
    """The CPU's instruction sets that ONNX Runtime's int8 kernels use (empty where /proc/cpuinfo is absent)."""
    flags = set((_cpuinfo_field("flags", "Features") or "").split())
    return [name for flag, name in _INT8_FLAGS.items() if flag in flags]


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
