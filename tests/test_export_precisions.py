"""FP16 and INT8 ONNX: float32 I/O kept, sensitive nodes listed, Q/DQ profiles per target, accuracy fallback."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgexfer.export import ExportConfig, export_run


@pytest.fixture(scope="module")
def manifest(tiny_export):
    return json.loads((tiny_export / "manifest.json").read_text())


def _artifact(manifest, name):
    return next(a for a in manifest["artifacts"] if a["name"] == name)


@pytest.mark.parametrize("file", ["model_fp32.onnx", "model_fp16.onnx", "model_int8_cpu.onnx"])
def test_every_onnx_loads_in_onnxruntime_with_one_float_input(tiny_export, file):
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_export / file), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "image" and inp.type == "tensor(float)"
    (out,) = session.get_outputs()
    assert out.name == "probabilities" and out.type == "tensor(float)"
    x = np.random.default_rng(0).integers(0, 256, (3, *inp.shape[1:]), dtype=np.uint8).astype(np.float32)
    probs = session.run(None, {"image": x})[0]
    assert probs.shape[0] == 3
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-2)


def test_fp16_keeps_float32_io_and_lists_nodes_kept_in_fp32(tiny_export, manifest):
    model = onnx.load(tiny_export / "model_fp16.onnx")
    fp16_weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert fp16_weights, "no FP16 weights: the graph was not converted"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    fp16 = _artifact(manifest, "fp16")
    kept = {n["name"]: n for n in fp16["excluded_nodes"]}
    assert any(n["op_type"] == "Softmax" for n in kept.values())
    assert any(n["op_type"] in ("MatMul", "Gemm") for n in kept.values())
    graph_names = {n.name for n in model.graph.node}
    assert set(kept) <= graph_names and all(n["reason"] for n in kept.values())
    assert fp16["parity"]["against"] == "fp32" and fp16["parity"]["agreement"] >= 0.9


def _zero_points(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    activations, weights = [], []
    weight_names = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            zp = inits[node.input[2]]
            (weights if node.input[0] in weight_names else activations).append(zp)
    return activations, weights


def test_int8_cpu_profile_has_uint8_activations_and_per_channel_int8_weights(tiny_export, manifest):
    model = onnx.load(tiny_export / "model_int8_cpu.onnx")
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    activations, _ = _zero_points(model)
    assert activations and all(z.dtype == np.uint8 for z in activations)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    int8_weights = [a for a in inits.values() if a.dtype == np.int8 and a.ndim == 4]
    assert int8_weights, "conv weights are not stored as int8"
    per_channel_scales = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                          and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.int8
                          and inits[n.input[1]].size > 1]
    assert per_channel_scales, "weights are not quantized per channel"
    int8 = _artifact(manifest, "int8")
    assert int8["target"] == "cpu" and int8["quantization"]["activation_type"] == "QUInt8"
    assert int8["calibration"]["id"] and int8["calibration"]["method"] in ("entropy", "percentile", "minmax")
    assert int8["parity"]["agreement"] >= 0.9
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["edgexfer.precision"] == "int8" and meta["edgexfer.int8_target"] == "cpu"


def test_int8_tensorrt_profile_is_signed_and_symmetric(tmp_path, export_run_dir, tiny_export):
    calibration = tiny_export.parent / "calibration"
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "trt", int8=True, target="tensorrt",
                                       calibration=calibration, calibration_size=64, calibration_method="minmax",
                                       progress=False))
    int8 = _artifact(manifest, "int8")
    assert int8["file"] == "model_int8_tensorrt.onnx" and int8["target"] == "tensorrt"
    assert int8["quantization"]["symmetric_activations"] is True
    model = onnx.load(tmp_path / "trt" / "model_int8_tensorrt.onnx")
    activations, _ = _zero_points(model)
    assert activations and all(z.dtype == np.int8 and not z.any() for z in activations)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight_zps = [inits[n.input[2]] for n in model.graph.node
                  if n.op_type == "DequantizeLinear" and len(n.input) > 2 and inits.get(n.input[0]) is not None]
    assert weight_zps and all(not z.any() for z in weight_zps)


def test_fallback_keeps_sensitive_nodes_in_float_and_records_why(tmp_path, export_run_dir, tiny_export, monkeypatch):
    """Force round 0 under the threshold: the worst nodes by SQNR loss are excluded and quantization re-run."""
    from edgexfer.export import pipeline

    real = pipeline._parity
    calls = {"int8": 0}

    def parity_with_bad_first_round(against, reference, candidate):
        result = real(against, reference, candidate)
        if against == "fp32":  # no --fp16 here: the first FP32-referenced check is INT8 round 0
            calls["int8"] += 1
            if calls["int8"] == 1:
                result["agreement"] = 0.5
        return result

    monkeypatch.setattr(pipeline, "_parity", parity_with_bad_first_round)
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "fb", int8=True,
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       calibration_method="entropy", int8_nodes_per_round=2, int8_max_rounds=2,
                                       progress=False))
    int8 = _artifact(manifest, "int8")
    fallback = int8["quantization"]["fallback"]
    rounds = [r["round"] for r in fallback["rounds"]]
    assert rounds[:2] == [0, 1] and len(rounds) <= 3, fallback["rounds"]  # round 0 forced below the bar
    assert fallback["rounds"][0]["agreement"] == 0.5
    assert fallback["passed"] == (int8["parity"]["agreement"] >= 0.98)
    excluded = int8["excluded_nodes"]
    assert 1 <= len(excluded) <= 2 * (len(rounds) - 1)
    assert all("SQNR" in e["reason"] and "round" in e["reason"] for e in excluded)
    assert any("round 0" in e["reason"] for e in excluded)
    model = onnx.load(tmp_path / "fb" / int8["file"])
    producers = {o: n for n in model.graph.node for o in n.output}
    excluded_names = {e["name"] for e in excluded}
    for node in model.graph.node:  # an excluded node's weights are not dequantized int8: they stay float
        if node.name in excluded_names and node.op_type in ("Conv", "MatMul", "Gemm"):
            weight = node.input[1]
            assert weight not in producers or producers[weight].op_type != "DequantizeLinear"


def test_batch_reader_serves_strided_ranges_without_rereading():
    from edgexfer.export.onnx_int8 import BatchReader

    opened = []

    def batches():
        opened.append(1)
        return (np.full((2, 4, 4, 3), i, dtype=np.uint8) for i in range(5))

    reader = BatchReader(batches, "image", total_batches=5)
    assert len(reader) == 5
    seen = []
    for start in range(5):  # what ORT's CalibStridedMinMax does with stride 1
        reader.set_range(start, start + 1)
        while (item := reader.get_next()) is not None:
            seen.append(int(item["image"][0, 0, 0, 0]))
            assert item["image"].dtype == np.float32
    assert seen == [0, 1, 2, 3, 4] and len(opened) == 1
    reader.set_range(2, 4)  # out of order: restart and skip
    assert [int(reader.get_next()["image"][0, 0, 0, 0]) for _ in range(2)] == [2, 3]
    assert reader.get_next() is None
    reader.rewind()
    assert sum(1 for _ in iter(reader.get_next, None)) == 5


def test_node_sensitivity_ranks_nodes_worst_first(tiny_export, tmp_path):
    from edgexfer.data.calibration import load_calibration_set
    from edgexfer.export.onnx_int8 import BatchReader, node_sensitivity, preprocess, quantize

    cal = load_calibration_set(next((tiny_export.parent / "calibration").glob("*.npz")))
    prep = tmp_path / "prep.onnx"
    preprocess(tiny_export / "model_fp32.onnx", prep)
    qdq = tmp_path / "q.onnx"
    reader = BatchReader(lambda: (x for x, _ in cal.iter_batches(16)), "image", total_batches=-(-cal.size // 16))
    quantize(prep, qdq, reader=reader, target="tensorrt", method="minmax")
    images = next(cal.iter_batches(8))[0]
    ranked = node_sensitivity(prep, qdq, images)
    assert ranked and {"name", "op_type", "sqnr_drop_db", "output_sqnr_db"} <= set(ranked[0])
    drops = [r["sqnr_drop_db"] for r in ranked]
    assert drops == sorted(drops, reverse=True)
    names = {n.name for n in onnx.load(prep).graph.node}
    assert {r["name"] for r in ranked} <= names
    assert any(r["op_type"] == "Conv" and r["sqnr_drop_db"] > 0 for r in ranked)


def test_auto_calibration_tries_the_other_methods_when_entropy_agrees_too_little(tmp_path, export_run_dir, tiny_export,
                                                                                  monkeypatch):
    """Entropy's round 0 is forced to 50% agreement, percentile to 70%, minmax to 90%: auto keeps minmax, records
    every method tried, and the fallback rounds (none allowed here) would go on with minmax."""
    from edgexfer.export import pipeline

    real = pipeline._parity
    forced = iter([0.5, 0.7, 0.9])

    def parity(against, reference, candidate):
        result = real(against, reference, candidate)
        if against == "fp32":
            result["agreement"] = next(forced, result["agreement"])
        return result

    monkeypatch.setattr(pipeline, "_parity", parity)
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "auto", int8=True,
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       int8_max_rounds=0, progress=False))
    int8 = _artifact(manifest, "int8")
    fallback = int8["quantization"]["fallback"]
    assert [(m["method"], m["agreement"]) for m in fallback["methods"]] == [
        ("entropy", 0.5), ("percentile", 0.7), ("minmax", 0.9)]
    assert fallback["rounds"] == [{"round": 0, "method": "minmax", "excluded": 0, "agreement": 0.9,
                                   "max_abs_diff": fallback["rounds"][0]["max_abs_diff"]}]
    assert fallback["passed"] is False
    assert int8["calibration"]["method"] == int8["quantization"]["method"] == "minmax"
    stages = {t["stage"] for t in manifest["timings"]}
    assert {"int8_quantize_round0", "int8_quantize_percentile_round0", "int8_quantize_minmax_round0"} <= stages


def test_auto_calibration_stops_at_entropy_when_it_agrees_enough(manifest):
    """The tiny export ran with the default (auto): a second method only when entropy fell below the bar."""
    fallback = _artifact(manifest, "int8")["quantization"]["fallback"]
    assert fallback["methods"][0]["method"] == "entropy"
    assert len(fallback["methods"]) == 1 or fallback["methods"][0]["agreement"] < fallback["min_agreement"]
    assert _artifact(manifest, "int8")["calibration"]["method"] == fallback["rounds"][0]["method"]


@pytest.mark.slow
def test_fallback_on_a_depthwise_swish_network(tmp_path, demo_split):
    """MobileNetV3Small (depthwise convs, hard-swish), random init at 32 px: with the bar at 100% agreement,
    the fallback runs its bounded rounds and every excluded node names its reason."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_export import make_run_dir

    from edgexfer.backbones import build_model

    model = build_model("mobilenetv3small", num_classes=len(demo_split.classes), image_size=32, weights="none")
    run = make_run_dir(tmp_path / "mnv3", demo_split, model, backbone="mobilenetv3small")
    manifest = export_run(ExportConfig(run_dir=run, out=tmp_path / "out", int8=True, target="tensorrt",
                                       calibration=tmp_path / "cal", calibration_size=32, int8_min_agreement=1.0,
                                       int8_max_rounds=2, int8_nodes_per_round=3, progress=False))
    int8 = _artifact(manifest, "int8")
    rounds = int8["quantization"]["fallback"]["rounds"]
    assert 1 <= len(rounds) <= 3
    if rounds[0]["agreement"] < 1.0:
        assert len(rounds) > 1 and int8["excluded_nodes"]
        assert all(e["reason"] and e["op_type"] for e in int8["excluded_nodes"])
    assert int8["parity"]["agreement"] == max(r["agreement"] for r in rounds)


def test_entropy_threshold_is_onnxruntimes_search():
    """The vectorized KL search returns exactly what ONNX Runtime's per-bin Python loops return."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    from edgexfer.export.onnx_int8 import entropy_threshold

    rng = np.random.default_rng(0)
    reference = HistogramCollector("entropy", False, 128, 128, 99.99, "same")
    for bins in (128, 131, 256, 390):
        hist = rng.poisson(rng.gamma(0.4, 40.0, bins)).astype(np.int64)
        hist[bins // 2] += 5000  # a spike at zero, as after a ReLU
        edges = np.linspace(-2.0, 2.0, bins + 1, dtype=np.float32)
        lo, hi = np.float32(-1.7), np.float32(1.9)
        expected = reference.get_entropy_threshold((hist, edges, lo, hi, np.float32(2.0)), 128)
        got = entropy_threshold(hist, edges, lo, hi)
        assert (float(got[0]), float(got[1])) == (float(expected[0]), float(expected[1]))


def _chunks(cal, size):
    return [x.astype(np.float32) for x, _ in cal.iter_batches(size)]


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_one_pass_calibration_gives_onnxruntimes_ranges(tiny_export, tmp_path, method):
    """Our one-pass calibration against ONNX Runtime's calibrator fed the same chunks one collect_data call
    each (what the export did before): same tensors, same min/max, entropy thresholds within one bin."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    from edgexfer.data.calibration import load_calibration_set
    from edgexfer.export.onnx_int8 import CALIBRATION_CHUNK, calibrate, preprocess

    cal = load_calibration_set(next((tiny_export.parent / "calibration").glob("*.npz")))
    prep = tmp_path / "prep.onnx"
    preprocess(tiny_export / "model_fp32.onnx", prep)
    chunks = _chunks(cal, CALIBRATION_CHUNK)
    ours = calibrate(prep, iter(chunks), method=method)

    class OneChunk:
        def __init__(self, x):
            self.items = [{"image": x}]

        def get_next(self):
            return self.items.pop() if self.items else None

    calibrator = create_calibrator(prep, list(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                   augmented_model_path=str(tmp_path / "augmented.onnx"),
                                   calibrate_method=getattr(CalibrationMethod, "MinMax" if method == "minmax" else "Entropy"))
    for x in chunks:
        calibrator.collect_data(OneChunk(x))
    reference = calibrator.compute_data()
    assert set(ours.keys()) == set(reference.keys()) and len(ours.keys()) > 3
    for name in reference.keys():
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in ours[name].range_value)
        ref_lo, ref_hi = (float(np.asarray(v).reshape(-1)[0]) for v in reference[name].range_value)
        if method == "minmax":
            assert (lo, hi) == pytest.approx((ref_lo, ref_hi), rel=1e-6, abs=1e-7)
        else:
            edges = np.asarray(reference[name].bins)
            width = float(edges[1] - edges[0]) if edges.size > 1 else 0.0
            assert abs(lo - ref_lo) <= width + 1e-6 and abs(hi - ref_hi) <= width + 1e-6, name


def test_int8_artifact_records_whether_it_pays_on_this_cpu(manifest):
    from edgexfer.export.onnx_int8 import INT8_PAYS_AT, SLOWER_ADVICE

    speed = _artifact(manifest, "int8")["cpu_speed"]
    assert speed["fp32_p50_ms"] > 0 and speed["int8_p50_ms"] > 0 and speed["batch"] == 1
    assert speed["speedup"] == pytest.approx(speed["fp32_p50_ms"] / speed["int8_p50_ms"], rel=1e-2)
    assert speed["pays"] == (speed["speedup"] >= INT8_PAYS_AT)
    assert (speed["advice"] is None) == speed["pays"]
    if speed["speedup"] < 1.0:
        assert speed["advice"] == SLOWER_ADVICE


def test_quantize_levers_change_the_graph(tiny_export, tmp_path):
    """QuantOptions: op types left in float stay float; QOperator writes QLinearConv instead of Q/DQ pairs."""
    from edgexfer.data.calibration import load_calibration_set
    from edgexfer.export.onnx_int8 import QuantOptions, preprocess, quantize

    cal = load_calibration_set(next((tiny_export.parent / "calibration").glob("*.npz")))
    prep = tmp_path / "prep.onnx"
    preprocess(tiny_export / "model_fp32.onnx", prep)
    cache = tmp_path / "ranges.json"
    settings = quantize(prep, tmp_path / "qop.onnx", reader=iter(_chunks(cal, 16)), target="cpu", method="minmax",
                        cache_path=cache, options=QuantOptions(fmt="QOperator"))
    assert cache.is_file() and settings["format"] == "QOperator"
    ops = {n.op_type for n in onnx.load(tmp_path / "qop.onnx").graph.node}
    assert "QLinearConv" in ops
    quantize(prep, tmp_path / "conv.onnx", reader=None, target="cpu", method="minmax", cache_path=cache,
             options=QuantOptions(op_types=["Conv"]))
    model = onnx.load(tmp_path / "conv.onnx")
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type == "MatMul":  # the classifier is not a Conv: its weight stays float
            assert node.input[1] not in producers or producers[node.input[1]].op_type != "DequantizeLinear"
