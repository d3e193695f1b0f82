"""ONNX Runtime over an ONNX artifact, with the CPU, CUDA or TensorRT execution provider."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import edgexfer.runtime.cuda as cuda  # gpu_status looked up when called (tests replace it)
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
                 optimization: str = "all", spinning: bool | None = None,
                 batch_sizes: tuple[int, ...] | list[int] | None = None):
        self.threads = threads
        self.artifact = artifact
        if isinstance(source, (str, os.PathLike)):
            self.path: Path | None = Path(source)
            self.provider = provider
            self.session = self._load(provider, session_options(threads, optimization=optimization, spinning=spinning),
                                      cache_dir, batch_sizes)
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
        if self.provider == TENSORRT and self.max_batch is None:  # its profiles end at the largest batch size
            self.max_batch = max(batch_sizes or DEFAULT_TRT_BATCH_SIZES)

    def _load(self, provider: str, options, cache_dir, batch_sizes):
        ort = require("onnxruntime", "running ONNX models")
        providers: list[object] = [(provider, _provider_options(provider, self.path, cache_dir, batch_sizes))]
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


# ------------------------------------------------------------------------------ the TensorRT provider

#: batch sizes a TensorRT-provider session is built for when the caller names none: the bench's default
DEFAULT_TRT_BATCH_SIZES = (1, 8, 32)
#: TensorRT distributions whose version names the engine cache (the `tensorrt` extra's wheels, JetPack's)
_TRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-libs", "tensorrt-cu12-libs",
                      "tensorrt-libs")


def tensorrt_version() -> str:
    """The installed TensorRT's version from its package metadata (JetPack's python3-libnvinfer included),
    without importing it; ``"unknown"`` when none is found."""
    from importlib import metadata

    for dist in _TRT_DISTRIBUTIONS:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def tensorrt_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where ONNX Runtime's TensorRT provider keeps its engines and timing cache: outside any export folder
    (an export stays the bytes that were benched), one folder per TensorRT version and GPU, since an engine
    runs only where it was built. ``root`` defaults to ``$XDG_CACHE_HOME/edgexfer/trt`` (``~/.cache/...``)."""
    import re


    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "edgexfer" / "trt"
    gpu = cuda.gpu_status()
    label = f"{gpu.name or 'no-gpu'}-sm{gpu.compute_capability or 'unknown'}"
    return Path(root) / re.sub(r"[^A-Za-z0-9._]+", "-", f"{tensorrt_version()}-{label}").strip("-")


def tensorrt_profile_shapes(input_name: str, image_size: tuple[int, int],
                            batch_sizes: tuple[int, ...] | list[int]) -> dict[str, str]:
    """ONNX Runtime's explicit optimization profiles, one per batch size: profile ``i`` covers the batches
    after the previous size up to ``batch_sizes[i]``, tuned (opt) for that size, so every batch from 1 to the
    largest has an engine and each benched size runs the kernels chosen for it."""
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise EdgexferError(f"batch sizes {list(batch_sizes)} must be positive integers", "e.g. --batch-sizes 1,8,32")
    h, w = image_size
    lows = [1] + [b + 1 for b in sizes[:-1]]
    shape = "{name}:{batch}x{h}x{w}x3"
    return {
        "trt_profile_min_shapes": ",".join(shape.format(name=input_name, batch=lo, h=h, w=w) for lo in lows),
        "trt_profile_opt_shapes": ",".join(shape.format(name=input_name, batch=b, h=h, w=w) for b in sizes),
        "trt_profile_max_shapes": ",".join(shape.format(name=input_name, batch=b, h=h, w=w) for b in sizes),
    }


def tensorrt_provider_options(input_name: str, image_size: tuple[int, int], *,
                              batch_sizes: tuple[int, ...] | list[int] = DEFAULT_TRT_BATCH_SIZES,
                              cache_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The options of ONNX Runtime's TensorRT execution provider for one of our graphs.

    Precision is already fixed in the graph (FP16 tensors, INT8 Q/DQ), so no precision flag is set: no
    ``trt_fp16_enable`` / ``trt_int8_enable`` (weak typing: TensorRT 11 removed it; ONNX Runtime 1.31's
    provider has no strongly-typed switch, its options are listed in docs/architecture.md). Engines and the
    timing cache go to `tensorrt_cache_dir`, never into the export folder.
    """
    folder = Path(cache_dir) if cache_dir is not None else tensorrt_cache_dir()
    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": os.fspath(folder),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": os.fspath(folder),
        **tensorrt_profile_shapes(input_name, image_size, batch_sizes),
    }


def _provider_options(provider: str, path: Path | None, cache_dir: str | os.PathLike[str] | None,
                      batch_sizes: tuple[int, ...] | list[int] | None) -> dict[str, str]:
    if provider != TENSORRT or path is None:
        return {}
    name, image_size = _onnx_image_input(path)
    return tensorrt_provider_options(name, image_size, batch_sizes=batch_sizes or DEFAULT_TRT_BATCH_SIZES,
                                     cache_dir=cache_dir)


def _onnx_image_input(path: Path) -> tuple[str, tuple[int, int]]:
    """The name and (H, W) of an exported model's NHWC image input, read from the ONNX file."""
    import onnx

    try:
        first = onnx.load(os.fspath(path), load_external_data=False).graph.input[0]
    except Exception as exc:
        raise EdgexferError(f"cannot read the input of {path}: {exc}", "re-export the model") from None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in first.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] is None or dims[2] is None:
        raise EdgexferError(f"{path.name} has input shape {dims}, not (batch, H, W, 3)", "re-export the model")
    return first.name, (int(dims[1]), int(dims[2]))
