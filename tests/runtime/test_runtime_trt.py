"""The TensorRT engine runtime against a small fake of `tensorrt` and cuda-python (no GPU needed).

The fake is asynchronous like the real thing: ``execute_async_v3`` and ``cudaMemcpyAsync`` only
enqueue work on the stream, and nothing happens until ``cudaStreamSynchronize``. Device memory is
real host memory at real addresses, so the runtime's pointers, sizes and copy directions are
exercised for real: a runtime that forgot to synchronize, copied the wrong way or sized a buffer
wrong returns wrong numbers here.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from fixtures_handmade import LOOSE

from edgexfer.errors import EdgexferError
from edgexfer.io import sha256_file, write_json
from edgexfer.runtime import RUNTIMES, Artifact
from edgexfer.runtime.cuda import GpuStatus

GPU = GpuStatus(True, "GPU usable", name="NVIDIA H100 80GB HBM3", compute_capability="9.0", count=1)
TRT_VERSION = "10.3.0.26"
SYNC_MS = 15.0  # what the fake device "takes": the runtime's clock must include it


def _module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    return module


def _view(ptr: int, nbytes: int, dtype, shape) -> np.ndarray:
    buf = (ctypes.c_char * nbytes).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


class FakeDevice:
    """Allocations and one in-order stream queue."""

    def __init__(self):
        self.buffers: dict[int, np.ndarray] = {}
        self.queue: list = []
        self.syncs = 0

    def cudart(self) -> types.ModuleType:
        rt = _module("cuda.bindings.runtime")
        dev = self

        class cudaMemcpyKind:
            cudaMemcpyHostToDevice = 1
            cudaMemcpyDeviceToHost = 2

        def cudaMalloc(nbytes):
            arr = np.zeros(int(nbytes), np.uint8)
            dev.buffers[arr.ctypes.data] = arr
            return 0, arr.ctypes.data

        def cudaMemcpyAsync(dst, src, count, kind, stream):
            if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
                assert dst in dev.buffers and count <= dev.buffers[dst].nbytes, "H2D into a bad device buffer"
            else:
                assert src in dev.buffers and count <= dev.buffers[src].nbytes, "D2H from a bad device buffer"
            dev.queue.append(lambda: ctypes.memmove(dst, src, count))
            return (0,)

        def cudaStreamSynchronize(stream):
            time.sleep(SYNC_MS / 1000)
            for work in dev.queue:
                work()
            dev.queue.clear()
            dev.syncs += 1
            return (0,)

        def cudaFree(ptr):
            dev.buffers.pop(ptr)
            return (0,)

        rt.cudaMemcpyKind = cudaMemcpyKind
        rt.cudaMalloc = cudaMalloc
        rt.cudaMemcpyAsync = cudaMemcpyAsync
        rt.cudaStreamSynchronize = cudaStreamSynchronize
        rt.cudaStreamCreate = lambda: (0, 7)
        rt.cudaStreamDestroy = lambda s: (0,)
        rt.cudaFree = cudaFree
        return rt


def fake_tensorrt(device: FakeDevice) -> types.ModuleType:
    """Engines are JSON: {"size", "weights", "max_batch"}; the network is mean colour @ weights → softmax."""
    trt = _module("tensorrt")
    trt.__version__ = TRT_VERSION

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class TensorIOMode:
        INPUT, OUTPUT = 1, 2

    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addresses = engine, None, {}

        def set_input_shape(self, name, shape):
            assert name == "image" and 1 <= shape[0] <= engine_max(self.engine)
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            assert self.shape is not None, "output shape asked before set_input_shape"
            return (self.shape[0], self.engine.k)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            assert isinstance(stream_handle, int)
            shape, k, w = self.shape, self.engine.k, self.engine.weights
            src, dst = self.addresses["image"], self.addresses["probabilities"]

            def work():
                x = _view(src, int(np.prod(shape)) * 4, np.float32, shape)
                logits = x.mean(axis=(1, 2)) @ w
                p = np.exp(logits - logits.max(1, keepdims=True))
                _view(dst, shape[0] * k * 4, np.float32, (shape[0], k))[:] = p / p.sum(1, keepdims=True)

            device.queue.append(work)
            return True

    def engine_max(engine):
        return engine.max_batch

    class Engine:
        def __init__(self, spec):
            self.size, self.max_batch = spec["size"], spec["max_batch"]
            self.weights = np.asarray(spec["weights"], np.float32)
            self.k = self.weights.shape[1]
            self.num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["image", "probabilities"][i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name == "image" else TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            return (-1, self.size, self.size, 3) if name == "image" else (-1, self.k)

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_profile_shape(self, name, profile):
            s = (self.size, self.size, 3)
            return [(1, *s), (1, *s), (self.max_batch, *s)]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            try:
                return Engine(json.loads(data))
            except (ValueError, KeyError):
                return None

    trt.Logger, trt.TensorIOMode, trt.Runtime = Logger, TensorIOMode, Runtime
    trt.nptype = lambda dtype: np.dtype(dtype).type
    return trt


@pytest.fixture
def fake_gpu_stack(monkeypatch):
    device = FakeDevice()
    cuda_pkg, bindings = _module("cuda"), _module("cuda.bindings")
    runtime = device.cudart()
    bindings.runtime = runtime
    cuda_pkg.bindings = bindings
    for name, module in {"tensorrt": fake_tensorrt(device), "cuda": cuda_pkg, "cuda.bindings": bindings,
                         "cuda.bindings.runtime": runtime}.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr("edgexfer.runtime.trt_runtime.gpu_status", lambda: GPU)
    return device


WEIGHTS = (np.eye(3) * 0.08).tolist()


def write_engine(folder: Path, name="model_fp16.engine", max_batch=4, size=32, **sidecar) -> Artifact:
    engine = folder / name
    engine.write_text(json.dumps({"size": size, "weights": WEIGHTS, "max_batch": max_batch}))
    info = {"tensorrt": TRT_VERSION, "cuda": "12.4", "gpu": GPU.name, "compute_capability": "9.0",
            "min_batch": 1, "opt_batch": 1, "max_batch": max_batch, **sidecar}
    write_json(str(engine) + ".json", info)
    return Artifact("fp16-trt", engine, "tensorrt", "fp16", "tensorrt", sha256_file(engine),
                    engine.stat().st_size, info)


def expected_probs(x: np.ndarray) -> np.ndarray:
    logits = x.astype(np.float64).mean(axis=(1, 2)) @ np.asarray(WEIGHTS)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def test_trt_runtime_runs_synchronizes_and_times(fake_gpu_stack, tmp_path):
    ok, reason = RUNTIMES["trt"].available()
    assert ok, reason
    artifact = write_engine(tmp_path)
    rng = np.random.default_rng(0)
    with RUNTIMES["trt"].open(artifact, None) as rt:
        assert rt.input_spec.shape == (None, 32, 32, 3) and rt.max_batch == 4 and rt.provider == "tensorrt"
        for n in (1, 3, 4):
            x = rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
            np.testing.assert_allclose(rt.predict(x), expected_probs(x), rtol=1e-5)
            assert rt.last_latency_ms >= SYNC_MS  # the clock stopped after the stream synchronized
        assert fake_gpu_stack.syncs == 3 and not fake_gpu_stack.queue
        with pytest.raises(EdgexferError, match="exceeds the artifact's maximum batch 4"):
            rt.predict(np.zeros((5, 32, 32, 3), np.uint8))
    assert fake_gpu_stack.buffers == {}  # device memory freed on exit


@pytest.mark.parametrize("sidecar, message", [
    ({"tensorrt": "10.0.1.6"}, "built with TensorRT 10.0.1.6, this machine has TensorRT 10.3.0.26"),
    ({"compute_capability": "8.7", "gpu": "Orin"}, "built for compute capability 8.7 (Orin), this GPU is NVIDIA H100"),
    ({"gpu": "NVIDIA H100 PCIe"}, "built on GPU NVIDIA H100 PCIe, this GPU is NVIDIA H100 80GB HBM3"),
])
def test_trt_runtime_refuses_an_engine_from_elsewhere(fake_gpu_stack, tmp_path, sidecar, message):
    artifact = write_engine(tmp_path, **sidecar)
    with pytest.raises(EdgexferError, match="rebuild the engine") as info:
        RUNTIMES["trt"].open(artifact, None)
    assert message in str(info.value)


def test_trt_version_build_number_may_differ(fake_gpu_stack, tmp_path):
    artifact = write_engine(tmp_path, tensorrt="10.3.0.30")
    with RUNTIMES["trt"].open(artifact, None) as rt:
        assert rt.max_batch == 4


def test_trt_engine_without_record_or_unreadable(fake_gpu_stack, tmp_path):
    artifact = write_engine(tmp_path)
    Path(str(artifact.path) + ".json").unlink()
    bare = Artifact(artifact.name, artifact.path, "tensorrt", "fp16")
    with pytest.raises(EdgexferError, match="has no sidecar"):
        RUNTIMES["trt"].open(bare, None)
    artifact.path.write_text("garbage")
    with pytest.raises(EdgexferError, match="could not deserialize"):
        RUNTIMES["trt"].open(artifact, None)  # the manifest record still vouches for the version


def test_trt_unavailable_without_the_modules(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # None in sys.modules: import fails
    ok, reason = RUNTIMES["trt"].available()
    assert not ok and "tensorrt" in reason


def test_opening_an_engine_without_tensorrt_names_the_extra(monkeypatch, tmp_path):
    from edgexfer.runtime.trt_runtime import TrtRuntime

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    artifact = Artifact("fp16-trt", tmp_path / "model_fp16.engine", "tensorrt", "fp16")
    with pytest.raises(EdgexferError) as info:
        TrtRuntime(artifact)
    line = info.value.line()
    assert "running TensorRT engines needs the Python module 'tensorrt'" in line
    assert "pip install 'edgexfer[tensorrt]'" in line and "\n" not in line


def _add_engine_to_export(export: Path, **sidecar) -> None:
    write_engine(export, **sidecar)
    manifest = json.loads((export / "manifest.json").read_text())
    engine = export / "model_fp16.engine"
    info = json.loads((export / "model_fp16.engine.json").read_text())
    manifest["artifacts"].append({"name": "fp16-trt", "file": engine.name, "format": "tensorrt", "precision": "fp16",
                                  "target": "tensorrt", "sha256": sha256_file(engine), "size_bytes": engine.stat().st_size,
                                  "engine": info})
    write_json(export / "manifest.json", manifest)


def test_bench_runs_an_engine_beside_onnx(fake_gpu_stack, export_copy, tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    _add_engine_to_export(export_copy)
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(export_copy), "--out", str(out), "--runtimes", "ort-cpu,trt",
                                      "--batch-sizes", "1,8", "--iterations", "2", "--warmup", "0", "--quiet",
                                      *LOOSE])  # what 36 images can show
    assert result.exit_code == 0, result.output
    rows = {(r["artifact"], r["runtime"]): r for r in json.loads((out / "results.json").read_text())["results"]}
    engine_row = rows[("fp16-trt", "trt")]
    assert engine_row["reference"] == {"artifact": "fp32", "runtime": "ort-cpu"}
    assert engine_row["agreement"] == 1.0 and engine_row["gate"]["passed"]
    assert engine_row["accuracy"] == rows[("fp32", "ort-cpu")]["accuracy"]
    assert set(engine_row["latency_ms"]) == {"1"}  # batch 8 is beyond the engine's profile
    assert engine_row["latency_ms"]["1"]["p50"] >= SYNC_MS


def test_bench_refuses_an_engine_from_another_tensorrt(fake_gpu_stack, export_copy, tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    _add_engine_to_export(export_copy, tensorrt="11.0.0.1")
    result = CliRunner().invoke(cli, ["bench", str(export_copy), "--out", str(tmp_path / "b"), "--quiet",
                                      "--iterations", "1"])
    assert result.exit_code == 2
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("edgexfer: error:")]
    assert len(errors) == 1 and "built with TensorRT 11.0.0.1" in errors[0] and "rebuild" in errors[0]


