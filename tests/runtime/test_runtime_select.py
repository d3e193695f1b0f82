"""Runtime selection on a machine without a GPU, GPU detection through the driver, the ORT runtime."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import edgexfer.runtime.cuda as cuda_mod
from edgexfer.errors import EdgexferError
from edgexfer.runtime import RUNTIMES, Artifact, select_runtimes
from edgexfer.runtime.cuda import GpuStatus

NO_GPU = GpuStatus(False, "no NVIDIA driver (libcuda) found")


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as a CI runner sees it, even where a GPU happens to exist."""
    monkeypatch.setattr(cuda_mod, "gpu_status", lambda: NO_GPU)
    monkeypatch.setattr("edgexfer.runtime.ort_runtime.gpu_usable", lambda: (NO_GPU.usable, NO_GPU.reason))
    monkeypatch.setattr("edgexfer.runtime.trt_runtime.gpu_status", lambda: NO_GPU)


def test_runtime_table_is_complete():
    assert list(RUNTIMES) == ["keras", "ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu", "ov-gpu", "ov-npu"]


def test_default_selection_without_gpu(no_gpu):
    chosen, skipped = select_runtimes(None)
    names = [k.name for k in chosen]
    assert "ort-cpu" in names
    assert not {"ort-cuda", "ort-trt", "trt"} & set(names)
    reasons = {s["runtime"]: s["reason"] for s in skipped}
    # onnxruntime-gpu lists CUDA among its providers even here: the driver decides, not the wheel
    assert reasons["ort-cuda"] == NO_GPU.reason
    assert set(reasons) | set(names) == set(RUNTIMES)


def test_asking_for_an_unusable_runtime_is_an_error(no_gpu):
    with pytest.raises(EdgexferError, match="runtime 'ort-cuda' is not usable here: no NVIDIA driver"):
        select_runtimes(["ort-cuda"])
    with pytest.raises(EdgexferError, match="unknown runtime 'cuda'"):
        select_runtimes(["cuda"])
    chosen, skipped = select_runtimes(["ort-cpu"])
    assert [k.name for k in chosen] == ["ort-cpu"] and skipped == []


def test_supports_matches_formats_and_int8_profiles(tmp_path):
    def art(fmt, precision, target="any"):
        return Artifact("x", tmp_path / "m", fmt, precision, target)

    assert RUNTIMES["ort-cpu"].supports(art("onnx", "int8", "cpu"))
    assert RUNTIMES["ort-cpu"].supports(art("onnx", "int8", "tensorrt"))
    assert not RUNTIMES["ort-trt"].supports(art("onnx", "int8", "cpu"))  # TensorRT needs signed symmetric INT8
    assert RUNTIMES["ort-trt"].supports(art("onnx", "int8", "tensorrt"))
    assert RUNTIMES["trt"].supports(art("tensorrt", "fp16")) and not RUNTIMES["trt"].supports(art("onnx", "fp16"))
    assert RUNTIMES["keras"].supports(art("keras", "fp32")) and not RUNTIMES["ort-cpu"].supports(art("keras", "fp32"))


class FakeLibcuda:
    """The four driver calls gpu_status makes, answering like a machine with one GPU (or a broken driver)."""

    def __init__(self, init_error=0, name=b"NVIDIA H100 80GB HBM3", cc=(9, 0)):
        self.init_error, self.name, self.cc = init_error, name, cc

    def cuInit(self, flags):
        return self.init_error

    def cuDeviceGetCount(self, ref):
        ref._obj.value = 1
        return 0

    def cuDeviceGet(self, ref, ordinal):
        ref._obj.value = 0
        return 0

    def cuDeviceGetName(self, buf, size, device):
        ctypes.memmove(buf, self.name + b"\0", len(self.name) + 1)
        return 0

    def cuDeviceGetAttribute(self, ref, attribute, device):
        ref._obj.value = {75: self.cc[0], 76: self.cc[1]}[attribute]
        return 0

    def cuDriverGetVersion(self, ref):
        ref._obj.value = 12040
        return 0


def _status(monkeypatch, lib, visible=None):
    cuda_mod.gpu_status.cache_clear()
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    monkeypatch.setattr(cuda_mod, "_load_libcuda", lambda: lib)
    try:
        return cuda_mod.gpu_status()
    finally:
        cuda_mod.gpu_status.cache_clear()


def test_gpu_status_reads_the_driver(monkeypatch):
    s = _status(monkeypatch, FakeLibcuda())
    assert s.usable and s.name == "NVIDIA H100 80GB HBM3" and s.compute_capability == "9.0"
    assert s.driver_version == "12.4" and s.count == 1


def test_gpu_status_without_driver_or_with_a_failing_one(monkeypatch):
    assert _status(monkeypatch, None).reason == "no NVIDIA driver (libcuda) found"
    failing = _status(monkeypatch, FakeLibcuda(init_error=100))  # CUDA_ERROR_NO_DEVICE
    assert not failing.usable and "cuInit error 100" in failing.reason
    hidden = _status(monkeypatch, FakeLibcuda(), visible="")
    assert not hidden.usable and "CUDA_VISIBLE_DEVICES" in hidden.reason


def test_ort_runtime_contract(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgexfer.runtime.ort_runtime import OrtRuntime

    # a fixed batch of 2: max_batch must come from the graph
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
         helper.make_node("Softmax", ["m"], ["p"], axis=-1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 4, 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    x = np.zeros((2, 4, 4, 3), np.uint8)
    x[..., 1] = 3
    with OrtRuntime(tmp_path / "m.onnx", threads=1) as rt:
        assert rt.input_spec.name == "x" and rt.input_spec.shape == (2, 4, 4, 3) and rt.max_batch == 2
        assert rt.provider == "CPUExecutionProvider"
        p = rt.predict(x)
        expected = np.exp([0, 3, 0]) / np.exp([0, 3, 0]).sum()
        np.testing.assert_allclose(p, [expected, expected], rtol=1e-5)
        assert rt.last_latency_ms > 0
        with pytest.raises(EdgexferError, match="exceeds the artifact's maximum batch 2"):
            rt.predict(np.zeros((3, 4, 4, 3)))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(EdgexferError, match="onnxruntime cannot load"):
        OrtRuntime(tmp_path / "bad.onnx")


def test_openvino_runtimes_without_the_extra_are_skipped_with_the_install_line(monkeypatch):
    from edgexfer.runtime import ov_runtime

    monkeypatch.setattr(ov_runtime, "is_available", lambda name: name != "openvino")
    _, skipped = select_runtimes(None)
    reasons = {s["runtime"]: s["reason"] for s in skipped}
    for name in ("ov-cpu", "ov-gpu", "ov-npu"):
        assert reasons[name] == "openvino is not installed (pip install 'edgexfer[openvino]')"
    assert ov_runtime.openvino_devices() == [] and ov_runtime.openvino_version() is None
