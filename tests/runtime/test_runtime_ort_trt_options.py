"""The ONNX Runtime TensorRT provider row (ort-trt): the options a session gets, checked without a GPU.

Precision is fixed in our graphs, so no weak-typing flag (trt_fp16_enable / trt_int8_enable) is set; one
optimization profile per benched batch size; engines cached outside the export folder, keyed by TensorRT
version and GPU. Every option name must be one the installed ONNX Runtime TensorRT provider parses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgexfer.runtime import RUNTIMES, Artifact
from edgexfer.runtime import ort_runtime as ortr
from edgexfer.runtime.cuda import GpuStatus

WEAK_TYPING = ("trt_fp16_enable", "trt_int8_enable", "trt_bf16_enable", "trt_int8_calibration_table_name")


def _provider_option_names() -> set[str]:
    """The option names compiled into the installed ONNX Runtime TensorRT provider library."""
    import onnxruntime

    lib = Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_tensorrt.so"
    if not lib.is_file():
        pytest.skip("this onnxruntime build has no TensorRT provider library")
    return {m.decode() for m in re.findall(rb"(trt_[a-z0-9_]+)\x00", lib.read_bytes())}


def test_options_profile_each_batch_size_cache_outside_and_set_no_precision_flag(tmp_path):
    options = ortr.tensorrt_provider_options("image", (64, 48), batch_sizes=(8, 1, 32), cache_dir=tmp_path / "c")
    assert options == {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "c"),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path / "c"),
        "trt_profile_min_shapes": "image:1x64x48x3,image:2x64x48x3,image:9x64x48x3",
        "trt_profile_opt_shapes": "image:1x64x48x3,image:8x64x48x3,image:32x64x48x3",
        "trt_profile_max_shapes": "image:1x64x48x3,image:8x64x48x3,image:32x64x48x3",
    }
    known = _provider_option_names()
    assert set(options) <= known, set(options) - known
    assert set(WEAK_TYPING) <= known  # they exist in ONNX Runtime 1.31, and we do not set them


def test_cache_folder_is_keyed_by_tensorrt_version_and_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(ortr, "tensorrt_version", lambda: "10.3.0.30")
    monkeypatch.setattr("edgexfer.runtime.cuda.gpu_status",
                        lambda: GpuStatus(True, "GPU usable", name="Orin (nvgpu)", compute_capability="8.7"))
    orin = ortr.tensorrt_cache_dir(tmp_path)
    assert orin == tmp_path / "10.3.0.30-Orin-nvgpu-sm8.7"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ortr.tensorrt_cache_dir() == tmp_path / "xdg" / "edgexfer" / "trt" / orin.name
    monkeypatch.setattr(ortr, "tensorrt_version", lambda: "11.4.1.2")
    assert ortr.tensorrt_cache_dir(tmp_path) != orin
    monkeypatch.setattr("edgexfer.runtime.cuda.gpu_status",
                        lambda: GpuStatus(True, "GPU usable", name="NVIDIA H100 80GB HBM3", compute_capability="9.0"))
    assert ortr.tensorrt_cache_dir(tmp_path).name == "11.4.1.2-NVIDIA-H100-80GB-HBM3-sm9.0"


def _tiny_model(path: Path) -> Path:
    """image (N, 8, 6, 3) -> mean over H, W -> softmax -> probabilities (N, 3)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2], keepdims=0),
         helper.make_node("Softmax", ["m"], ["probabilities"], axis=-1)], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 8, 6, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _record_sessions(monkeypatch) -> dict:
    """InferenceSession records the providers and options it is given, and runs on the CPU provider (no GPU)."""
    import onnxruntime

    requested: dict = {}
    real_session = onnxruntime.InferenceSession

    class Recording:
        def __init__(self, path, sess_options=None, providers=None):
            requested["providers"] = providers
            self._session = real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
            self._first = providers[0][0]

        def get_providers(self):
            return [self._first, "CPUExecutionProvider"]

        def __getattr__(self, name):
            return getattr(self._session, name)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    return requested


def test_the_ort_trt_row_opens_a_session_with_these_options(monkeypatch, tmp_path):
    """What `bench` hands ONNX Runtime for ort-trt: the session's providers and options (no GPU needed:
    InferenceSession records them and runs on the CPU provider)."""
    requested = _record_sessions(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    export = tmp_path / "exported"
    export.mkdir()
    artifact = Artifact("fp16", _tiny_model(export / "model_fp16.onnx"), "onnx", "fp16")
    with RUNTIMES["ort-trt"].open(artifact, None, (1, 8)) as runtime:
        h, w = runtime.input_spec.image_size
        assert (h, w) == (8, 6)
        assert runtime.max_batch == 8  # the largest profile: bench's evaluation batches stay inside it
        probs = runtime.predict(np.zeros((2, h, w, 3), np.float32))
    assert probs.shape[0] == 2
    (name, options), *rest = requested["providers"]
    assert name == "TensorrtExecutionProvider" and rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert not set(WEAK_TYPING) & set(options)
    assert options["trt_profile_opt_shapes"] == f"image:1x{h}x{w}x3,image:8x{h}x{w}x3"
    cache = Path(options["trt_engine_cache_path"])
    assert cache.parent == tmp_path / "xdg" / "edgexfer" / "trt"
    assert export not in cache.parents and sorted(p.name for p in export.iterdir()) == ["model_fp16.onnx"]


def test_batch_sizes_must_be_positive():
    from edgexfer.errors import EdgexferError

    with pytest.raises(EdgexferError, match="positive"):
        ortr.tensorrt_profile_shapes("image", (8, 8), [0, 4])


@pytest.mark.parametrize("batch_size", [4, 64])
def test_predictor_opens_ort_trt_for_the_batch_size_it_uses(handmade_export, monkeypatch, tmp_path, batch_size):
    """predict/Predictor on ort-trt: the profiles cover a single image and the batch size asked for (not bench's
    default 1, 8, 32), so a batch of 64 runs as one call and a batch of 4 on a profile tuned for 4."""
    from fixtures_handmade import SIZE

    from edgexfer.predict import Predictor

    requested = _record_sessions(monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(ortr, "provider_available", lambda provider: (True, "available"))
    with Predictor(handmade_export, precision="fp32", runtime="ort-trt", batch_size=batch_size) as model:
        assert model.runtime == "ort-trt" and model._runtime.max_batch == batch_size
        assert model.predict_batch(np.zeros((batch_size + 1, SIZE, SIZE, 3), np.uint8)).shape == (batch_size + 1, 3)
    (name, options), *_ = requested["providers"]
    assert name == "TensorrtExecutionProvider"
    assert options["trt_profile_opt_shapes"] == f"image:1x{SIZE}x{SIZE}x3,image:{batch_size}x{SIZE}x{SIZE}x3"
    assert options["trt_profile_max_shapes"] == f"image:1x{SIZE}x{SIZE}x3,image:{batch_size}x{SIZE}x{SIZE}x3"
