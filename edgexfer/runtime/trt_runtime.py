"""TensorRT engines (``model_<precision>.engine``), run with the TensorRT 10/11 tensor API.

An engine is tied to the TensorRT version and the GPU it was built on: before deserializing it, the
sidecar (``<engine>.json``, or the manifest's ``engine`` record) is compared with this machine and
a mismatch is refused with a rebuild hint. ``tensorrt`` and ``cuda-python`` are imported lazily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgexfer._lazy import is_available, missing_extra, require
from edgexfer.errors import EdgexferError
from edgexfer.runtime.base import Artifact, InputSpec, Runtime
from edgexfer.runtime.cuda import GpuStatus, gpu_status

if TYPE_CHECKING:  # the annotations below; the module itself is imported where an engine is opened
    import tensorrt as trt

REBUILD_HINT = "rebuild the engine on this machine with: edgexfer export RUN_DIR --engine"


def trt_available() -> tuple[bool, str]:
    if not is_available("tensorrt"):
        return False, "the Python module 'tensorrt' is not installed (pip install 'edgexfer[tensorrt]')"
    if not (is_available("cuda.bindings") or is_available("cuda.cudart") or _has_cudart_legacy()):
        return False, "cuda-python is not installed (pip install 'edgexfer[tensorrt]')"
    status = gpu_status()
    if not status.usable:
        return False, status.reason
    return True, "available"


def _has_cudart_legacy() -> bool:
    try:
        return is_available("cuda") and is_available("cuda.cudart")
    except Exception:  # a namespace package without cudart
        return False


def _import_cudart() -> Any:
    """cuda-python's runtime API: ``cuda.bindings.runtime`` (12.6+) or the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        cudart = require("cuda.cudart", "running TensorRT engines")
    return cudart


def engine_info(artifact: Artifact) -> dict[str, Any]:
    """The build record of an engine: its sidecar JSON, else the manifest's ``engine`` entry."""
    sidecar = Path(str(artifact.path) + ".json")
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise EdgexferError(f"engine sidecar {sidecar} is not valid JSON ({exc})", REBUILD_HINT) from exc
    if artifact.engine:
        return dict(artifact.engine)
    raise EdgexferError(f"TensorRT engine {artifact.path} has no sidecar {sidecar.name} and no manifest engine record",
                        REBUILD_HINT)


def _version_key(version: str | None) -> tuple[str, ...]:
    # engines are bound to major.minor.patch; the build number may differ between packagings
    return tuple(str(version or "").split(".")[:3])


def check_engine_compatible(info: dict[str, Any], tensorrt_version: str, gpu: GpuStatus, engine: Path) -> None:
    """Raise a one-line EdgexferError when the engine was built for another TensorRT or GPU."""
    built_trt = info.get("tensorrt")
    if _version_key(built_trt) != _version_key(tensorrt_version):
        raise EdgexferError(
            f"engine {engine.name} was built with TensorRT {built_trt}, this machine has TensorRT {tensorrt_version}",
            REBUILD_HINT)
    built_cc = info.get("compute_capability")
    if built_cc is not None and str(built_cc) != str(gpu.compute_capability):
        raise EdgexferError(
            f"engine {engine.name} was built for compute capability {built_cc} ({info.get('gpu')}), "
            f"this GPU is {gpu.name} with compute capability {gpu.compute_capability}", REBUILD_HINT)
    built_gpu = info.get("gpu")
    if built_gpu and gpu.name and str(built_gpu) != gpu.name:
        raise EdgexferError(f"engine {engine.name} was built on GPU {built_gpu}, this GPU is {gpu.name}", REBUILD_HINT)


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` (or the tuple a binding returns) as a tuple of ints."""
    return tuple(int(dims[i]) for i in range(len(dims)))


class TrtRuntime(Runtime):
    """A deserialized engine with device buffers sized for its profile's maximum batch."""

    name = "tensorrt"
    provider = "tensorrt"
    engine: trt.ICudaEngine | None
    context: trt.IExecutionContext | None

    def __init__(self, artifact: Artifact, threads: int | None = None):
        with missing_extra("running TensorRT engines"):
            import tensorrt as trt
        self._cudart = cudart = _import_cudart()
        self.path = Path(artifact.path)
        check_engine_compatible(engine_info(artifact), str(trt.__version__), gpu_status(), self.path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EdgexferError(f"TensorRT could not deserialize {self.path}", REBUILD_HINT)
        self.engine = engine
        self.context = context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgexferError(f"engine {self.path.name} has {len(inputs)} inputs and {len(outputs)} outputs; "
                                "expected one of each", REBUILD_HINT)
        self._in, self._out = inputs[0], outputs[0]
        in_shape = _dims(engine.get_tensor_shape(self._in))
        self.input_spec = InputSpec(
            self._in, (None, *in_shape[1:]),
            np.dtype(trt.nptype(engine.get_tensor_dtype(self._in))).name)
        self._out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._out)))
        profile_max = _dims(engine.get_tensor_profile_shape(self._in, 0)[2])
        self.max_batch = profile_max[0] if in_shape[0] == -1 else in_shape[0]
        out_per_item = int(np.prod(_dims(engine.get_tensor_shape(self._out))[1:]))
        in_bytes = self.max_batch * int(np.prod(in_shape[1:])) * np.dtype(self.input_spec.dtype).itemsize
        out_bytes = self.max_batch * out_per_item * self._out_dtype.itemsize
        self._stream = self._check(cudart.cudaStreamCreate())
        self._d_in = self._check(cudart.cudaMalloc(in_bytes))
        self._d_out = self._check(cudart.cudaMalloc(out_bytes))
        context.set_tensor_address(self._in, int(self._d_in))
        context.set_tensor_address(self._out, int(self._d_out))

    def _check(self, result: Any) -> Any:
        """cuda-python returns (error, value…): raise on an error, return the value."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EdgexferError(f"CUDA call failed on {self.path.name}: {err}", "check the GPU and its driver")
        return values[0] if len(values) == 1 else (tuple(values) or None)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        cudart, context = self._cudart, self.context
        if context is None:
            raise EdgexferError(f"TensorRT engine {self.path.name} was closed", "open the runtime again")
        kinds = cudart.cudaMemcpyKind
        context.set_input_shape(self._in, tuple(batch.shape))
        out_shape = _dims(context.get_tensor_shape(self._out))
        host_out = np.empty(out_shape, dtype=self._out_dtype)
        stream = self._stream
        self._check(cudart.cudaMemcpyAsync(self._d_in, batch.ctypes.data, batch.nbytes,
                                           kinds.cudaMemcpyHostToDevice, stream))
        if not context.execute_async_v3(int(stream)):
            raise EdgexferError(f"TensorRT failed to run {self.path.name}", REBUILD_HINT)
        self._check(cudart.cudaMemcpyAsync(host_out.ctypes.data, self._d_out, host_out.nbytes,
                                           kinds.cudaMemcpyDeviceToHost, stream))
        # the clock in Runtime.predict stops after this: the device has finished
        self._check(cudart.cudaStreamSynchronize(stream))
        return host_out

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr in (getattr(self, "_d_in", None), getattr(self, "_d_out", None)):
            if ptr is not None:
                cudart.cudaFree(ptr)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._d_in = self._d_out = self._stream = None
        self.context = self.engine = None
