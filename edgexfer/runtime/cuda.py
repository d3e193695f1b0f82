"""Is an NVIDIA GPU really usable here? Asked of the CUDA driver through ctypes.

``onnxruntime.get_available_providers()`` lists CUDA whenever onnxruntime-gpu is installed, even
on a machine without a GPU, and opening a CUDA session there prints a loud error. So we ask the
driver (libcuda) directly: load it, ``cuInit``, count devices. No TensorFlow, no torch.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass

_LIBCUDA_NAMES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib")
# CUdevice_attribute values (cuda.h): compute capability major/minor
_CC_MAJOR, _CC_MINOR = 75, 76


@dataclass(frozen=True)
class GpuStatus:
    usable: bool
    reason: str
    name: str | None = None
    compute_capability: str | None = None
    count: int = 0
    driver_version: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "usable": self.usable,
            "reason": self.reason,
            "name": self.name,
            "compute_capability": self.compute_capability,
            "count": self.count,
            "driver_version": self.driver_version,
        }


def _load_libcuda() -> ctypes.CDLL | None:
    for name in _LIBCUDA_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def gpu_status() -> GpuStatus:
    """What the CUDA driver says about device 0 (cached: the answer does not change in a process)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return GpuStatus(False, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU")
    lib = _load_libcuda()
    if lib is None:
        return GpuStatus(False, "no NVIDIA driver (libcuda) found")
    rc = lib.cuInit(0)
    if rc != 0:
        return GpuStatus(False, f"the CUDA driver failed to initialize (cuInit error {rc}): no usable GPU")
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return GpuStatus(False, "the CUDA driver sees no GPU")
    device = ctypes.c_int(0)
    lib.cuDeviceGet(ctypes.byref(device), 0)
    name_buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name_buf, 256, device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)
    version = ctypes.c_int(0)
    lib.cuDriverGetVersion(ctypes.byref(version))
    driver = f"{version.value // 1000}.{(version.value % 1000) // 10}" if version.value else None
    return GpuStatus(
        True,
        "GPU usable",
        name=name_buf.value.decode(errors="replace"),
        compute_capability=f"{major.value}.{minor.value}",
        count=count.value,
        driver_version=driver,
    )


def gpu_usable() -> tuple[bool, str]:
    status = gpu_status()
    return status.usable, status.reason
