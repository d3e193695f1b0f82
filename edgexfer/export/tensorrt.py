"""TensorRT engines from the exported ONNX: one strongly typed build for TensorRT 10.x and 11.x.

Precision is decided in the ONNX graph (FP16 conversion, INT8 Q/DQ), so the build sets no
precision flags and uses no calibrator: both were removed in TensorRT 11 (docs/architecture.md, "Precision
pipeline"). One optimization profile covers the batch range; the timing cache is loaded before and
saved after each build so rebuilds on the same GPU are quick. ``tensorrt`` is imported inside the
functions (the `tensorrt` extra); this module is type-checked with mypy against tensorrt-stubs.
"""

from __future__ import annotations

import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import edgexfer.runtime.cuda as cuda  # gpu_status looked up when called (tests replace it)
from edgexfer.errors import EdgexferError

DEFAULT_WORKSPACE_BYTES = 4 << 30
ENGINE_SCHEMA = "edgexfer.engine/1"


class EngineUnavailable(EdgexferError):
    """TensorRT or a usable GPU is missing: no engine can be built on this machine.

    Raised by `export_run` after the ONNX artifacts were written; ``manifest`` is what was written.
    """

    manifest: dict[str, Any] | None = None


def gpu_info() -> dict[str, Any]:
    """What the CUDA driver says about device 0 (``usable``, ``reason``, ``name``, ``compute_capability``…)."""
    try:
        pass
    except ImportError:  # a build without the runtime package cannot see GPUs
        return {"usable": False, "reason": "edgexfer.runtime.cuda is not available"}
    return cuda.gpu_status().as_dict()


def engine_support() -> tuple[bool, str]:
    """(True, version) when TensorRT imports and a GPU is usable, else (False, one-line reason)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return False, f"TensorRT is not installed ({exc}); install it with: pip install 'edgexfer[tensorrt]'"
    if not hasattr(trt, "Builder"):  # e.g. an empty namespace package such as tensorrt-stubs
        return False, "the installed 'tensorrt' package has no Builder (a stub or broken install)"
    gpu = gpu_info()
    if not gpu.get("usable"):
        return False, f"no usable NVIDIA GPU ({gpu.get('reason')})"
    return True, str(trt.__version__)


def build_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    *,
    input_name: str,
    image_size: tuple[int, int],
    max_batch: int,
    opt_batch: int | None = None,
    min_batch: int = 1,
    timing_cache: str | os.PathLike[str] | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> dict[str, Any]:
    """Build a strongly typed engine from ``onnx_path`` and write it to ``engine_path``.

    The caller writes into a staging folder (the export is atomic as a whole). Returns the engine
    record (TensorRT, CUDA and GPU versions, batch range, build time) for the sidecar and manifest.
    """
    ok, reason = engine_support()
    if not ok:
        raise EngineUnavailable(f"cannot build a TensorRT engine: {reason}", "run export with --engine on a machine with TensorRT and an NVIDIA GPU")
    import tensorrt as trt

    opt = opt_batch if opt_batch is not None else max(min_batch, min(max_batch, 8))
    if not 1 <= min_batch <= opt <= max_batch:
        raise EdgexferError(f"batch range {min_batch}/{opt}/{max_batch} is not ordered", "pass 1 <= opt <= --max-batch")
    h, w = image_size
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise EdgexferError(f"TensorRT cannot parse {Path(onnx_path).name}: {errors[:300]}", "check the ONNX opset (--opset) and TensorRT version")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        input_name,
        trt.Dims([min_batch, h, w, 3]),
        trt.Dims([opt, h, w, 3]),
        trt.Dims([max_batch, h, w, 3]),
    )
    config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    if not config.set_timing_cache(config.create_timing_cache(cache_bytes), False):
        # a cache from another GPU or TensorRT version is refused: start a fresh one
        cache_bytes = b""
        config.set_timing_cache(config.create_timing_cache(b""), False)

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise EdgexferError(f"TensorRT failed to build an engine from {Path(onnx_path).name} (see its log above)",
                            "check the GPU memory and the TensorRT version")
    Path(engine_path).write_bytes(memoryview(serialized))
    if cache_path is not None:
        cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))

    gpu = gpu_info()
    return {
        "schema": ENGINE_SCHEMA,
        "tensorrt": str(trt.__version__),
        "cuda": _cuda_version(gpu),
        "gpu": gpu.get("name"),
        "compute_capability": gpu.get("compute_capability"),
        "driver": gpu.get("driver_version"),
        "min_batch": min_batch,
        "opt_batch": opt,
        "max_batch": max_batch,
        "input": {"name": input_name, "shape": [-1, h, w, 3], "dtype": "float32"},
        "strongly_typed": True,
        "onnx": Path(onnx_path).name,
        "build_seconds": round(seconds, 2),
        "timing_cache_reused": bool(cache_bytes),
    }


def _cuda_version(gpu: dict[str, Any]) -> dict[str, str | None]:
    """The CUDA driver version (from the driver) and the cuda-python binding version, when present."""
    binding = None
    for dist in ("cuda-python", "cuda-bindings"):
        try:
            binding = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    return {"driver": gpu.get("driver_version"), "cuda_python": binding}
