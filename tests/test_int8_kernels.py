"""The per-convolution choice between ONNX Runtime's two CPU int8 convolution kernels (`choose_cpu_kernels`):
moving a convolution to the int8 GEMM changes no value, the choice follows the measured times, the export makes
it only when asked (``--kernel-choice``) and then records it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgexfer.export import ExportConfig, export_run
from edgexfer.export.int8 import kernels
from edgexfer.export.int8.calibrate import calibration_batches
from edgexfer.export.int8.kernels import SHIFTED_WEIGHT_ZERO_POINT, choose_cpu_kernels
from edgexfer.export.int8.quantize import preprocess, quantize
from edgexfer.runtime.ort_runtime import kernel_profile, predict_onnx


@pytest.fixture(scope="module")
def symmetric_int8(tiny_export, tmp_path_factory):
    """The tiny export's FP32 quantized for the cpu target without the kernel choice: every conv's weight zero
    point is 0."""
    from edgexfer.data.calibration import load_calibration_set

    tmp = tmp_path_factory.mktemp("kernels")
    cal = load_calibration_set(next((tiny_export.parent / "calibration").glob("*.npz")))
    preprocess(tiny_export / "model_fp32.onnx", tmp / "prep.onnx")
    quantize(tmp / "prep.onnx", tmp / "int8.onnx", reader=calibration_batches(cal, 16), target="cpu", method="minmax")
    return tmp / "int8.onnx"


def _images(model_path, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random RGB images at the model's input size."""
    dims = onnx.load(model_path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    h, w, c = (d.dim_value for d in dims[1:])
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, c)).astype(np.float32)


def _dequantized_conv_weights(model) -> dict[str, np.ndarray]:
    """Conv name -> the float weights its DequantizeLinear produces ((q - zero point) * scale)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    out = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in dq:
            q, scale, zp = (inits[name] for name in dq[node.input[1]].input)
            shape = (-1,) + (1,) * (q.ndim - 1)
            out[node.name] = (q.astype(np.int32) - zp.astype(np.int32).reshape(shape)) * scale.reshape(shape)
    return out


def _weight_zero_points(model) -> dict[str, set[int]]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name: set(inits[dq[n.input[1]].input[2]].tolist()) for n in model.graph.node
            if n.op_type == "Conv" and n.input[1] in dq}


def _fake_times(faster_on_gemm: set[str]):
    """A stand-in for the profiler: the symmetric kernel takes 1 ms per conv, the GEMM 0.5 ms for the convs
    named in ``faster_on_gemm`` and 2 ms for the others. Which model is timed is read from its weights."""

    def times(path, batch, threads, iterations, warmup):
        zero_points = _weight_zero_points(onnx.load(path))
        return {name: (1.0 if zp == {0} else (0.5 if name in faster_on_gemm else 2.0))
                for name, zp in zero_points.items()}

    return times


def test_moving_every_convolution_to_the_gemm_keeps_weights_and_predictions(symmetric_int8, tmp_path, monkeypatch):
    source = onnx.load(symmetric_int8)
    convs = sorted(_weight_zero_points(source))
    assert convs and all(zp == {0} for zp in _weight_zero_points(source).values())
    monkeypatch.setattr(kernels, "_kernel_ms_by_node", _fake_times(set(convs)))
    moved_path = tmp_path / "moved.onnx"
    record = choose_cpu_kernels(symmetric_int8, moved_path, _images(symmetric_int8, 1))

    assert record.convolutions == len(convs) and sorted(record.moved) == convs
    assert record.chosen_ms == pytest.approx(0.5 * len(convs))
    moved = onnx.load(moved_path)
    assert all(zp == {SHIFTED_WEIGHT_ZERO_POINT} for zp in _weight_zero_points(moved).values())
    before, after = _dequantized_conv_weights(source), _dequantized_conv_weights(moved)
    for name in convs:
        np.testing.assert_array_equal(before[name], after[name])
    images = _images(symmetric_int8, 8)
    np.testing.assert_allclose(predict_onnx(moved_path, images), predict_onnx(symmetric_int8, images),
                               atol=1e-6)


def test_only_the_convolutions_measured_faster_on_the_gemm_move(symmetric_int8, tmp_path, monkeypatch):
    convs = sorted(_weight_zero_points(onnx.load(symmetric_int8)))
    monkeypatch.setattr(kernels, "_kernel_ms_by_node", _fake_times({convs[0]}))
    record = choose_cpu_kernels(symmetric_int8, tmp_path / "out.onnx", _images(symmetric_int8, 1))
    assert record.moved == (convs[0],)
    assert record.symmetric_ms == pytest.approx(len(convs)) and record.chosen_ms == pytest.approx(len(convs) - 0.5)
    zero_points = _weight_zero_points(onnx.load(tmp_path / "out.onnx"))
    assert zero_points[convs[0]] == {SHIFTED_WEIGHT_ZERO_POINT}
    assert all(zero_points[name] == {0} for name in convs[1:])


def test_a_weight_at_minus_128_or_a_shared_zero_point_is_left_alone(symmetric_int8):
    model = onnx.load(symmetric_int8)
    shiftable = kernels._shiftable_convolutions(model)
    name = sorted(shiftable)[0]
    weight_name, zero_point_name = shiftable[name]
    inits = {i.name: i for i in model.graph.initializer}
    weight = numpy_helper.to_array(inits[weight_name]).copy()
    weight.flat[0] = -128  # q - 1 would not fit in int8
    inits[weight_name].CopyFrom(numpy_helper.from_array(weight, weight_name))
    # a second consumer of another conv's zero point: shifting it would change that consumer
    other = sorted(shiftable)[1]
    model.graph.node.append(onnx.helper.make_node("Identity", [shiftable[other][1]], ["zp_copy"]))
    left = kernels._shiftable_convolutions(model)
    assert name not in left and other not in left and len(left) == len(shiftable) - 2


def test_the_real_measurement_writes_what_it_records_with_the_same_predictions(symmetric_int8, tmp_path):
    """No stand-in: ONNX Runtime's profiler times both kernels here. Whatever it picks, the file moves exactly the
    convolutions the record names, and predicts what the symmetric file predicts."""
    images = _images(symmetric_int8, 4, seed=1)
    record = choose_cpu_kernels(symmetric_int8, tmp_path / "chosen.onnx", images[:1], iterations=3)
    zero_points = _weight_zero_points(onnx.load(tmp_path / "chosen.onnx"))
    assert record.timed == record.convolutions == len(zero_points)
    assert sorted(record.moved) == sorted(n for n, zp in zero_points.items() if zp == {SHIFTED_WEIGHT_ZERO_POINT})
    assert all(zp == {0} for n, zp in zero_points.items() if n not in record.moved)
    np.testing.assert_allclose(predict_onnx(tmp_path / "chosen.onnx", images),
                               predict_onnx(symmetric_int8, images), atol=1e-6)


def test_kernel_profile_gives_every_timed_call_its_kernels(tiny_export):
    events = kernel_profile(tiny_export / "model_fp32.onnx", _images(tiny_export / "model_fp32.onnx", 1),
                            iterations=3, warmup=1)
    assert {e.call for e in events} == {0, 1, 2}
    per_call = [sorted(e.node for e in events if e.call == c) for c in range(3)]
    assert per_call[0] == per_call[1] == per_call[2] and any(e.op_type == "Conv" for e in events)
    assert all(e.ms >= 0 for e in events)


def test_the_export_makes_no_kernel_choice_unless_asked(tiny_export):
    """The default export times nothing that changes its bytes: every convolution keeps weight zero point 0."""
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
    assert int8["quantization"]["cpu_kernels"] is None
    zero_points = _weight_zero_points(onnx.load(tiny_export / "model_int8_cpu.onnx"))
    assert zero_points and all(zp == {0} for zp in zero_points.values())
    assert not any(t["stage"] == "int8_kernel_choice" for t in manifest["timings"])


def test_the_export_records_the_kernel_choice_it_was_asked_for(tmp_path, export_run_dir, tiny_export, monkeypatch):
    """--kernel-choice with the first convolution measured faster on the GEMM: it alone moves, the manifest says
    so and names the CPU that chose (as /proc/cpuinfo names it)."""
    convs = sorted(_weight_zero_points(onnx.load(tiny_export / "model_int8_cpu.onnx")))
    monkeypatch.setattr(kernels, "_kernel_ms_by_node", _fake_times({convs[0]}))
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "k", int8=True, target="cpu",
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       int8_kernel_choice=True, quantizer="edgexfer", progress=False))
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
    choice = int8["quantization"]["cpu_kernels"]
    assert choice["moved"] == [convs[0]] and choice["moved_to_gemm"] == 1 and choice["convolutions"] == len(convs)
    zero_points = _weight_zero_points(onnx.load(tmp_path / "k" / "model_int8_cpu.onnx"))
    assert zero_points[convs[0]] == {SHIFTED_WEIGHT_ZERO_POINT} and all(zero_points[n] == {0} for n in convs[1:])
    cpuinfo = open("/proc/cpuinfo").read()
    assert choice["cpu"]["processor"] and f": {choice['cpu']['processor']}" in cpuinfo
    assert any(t["stage"] == "int8_kernel_choice" for t in manifest["timings"])
