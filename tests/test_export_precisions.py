"""FP16 and INT8 ONNX: float32 I/O kept, sensitive nodes listed, Q/DQ profiles per target, accuracy fallback,
calibration against ONNX Runtime's own calibrators, the layer report and the speed check's wording."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgexfer.export import ExportConfig, export_run
from edgexfer.export.int8 import fallback as fallback_module
from edgexfer.export.int8.agreement import Agreement
from edgexfer.export.int8.calibrate import (
    CALIBRATION_CHUNK,
    calibrate,
    calibration_batches,
    entropy_threshold,
)
from edgexfer.export.int8.quantize import QuantOptions, preprocess, quantize
from edgexfer.export.int8.sensitivity import SQNR_CAP_DB, node_sensitivity
from edgexfer.export.int8.speed import SLOWER_ADVICE, SpeedCheck, speed_verdict


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


def _forced_agreement(monkeypatch, counts):
    """INT8 candidates agree with FP32 on ``counts[i]`` of the judging images at the i-th check (then the real
    count): the fallback's decisions are driven from here, the quantization and the files are real. The exports
    that use it pin our quantizer (``auto`` would judge NNCF's file after the forced counts, on its real count)."""
    real, forced = fallback_module.judge, iter(counts)

    def judge(judging, candidate):
        result = real(judging, candidate)
        agreed = next(forced, None)
        return result if agreed is None else dataclasses.replace(result, agreed=agreed)

    monkeypatch.setattr(fallback_module, "judge", judge)


def _weights_in_float(model, names):
    """Of the weighted nodes ``names``, those whose weight is not produced by a DequantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return {node.name for node in model.graph.node if node.name in names and node.op_type in ("Conv", "MatMul", "Gemm")
            and (node.input[1] not in producers or producers[node.input[1]].op_type != "DequantizeLinear")}


def test_fallback_drops_a_round_that_does_worse_and_tries_the_next_nodes(tmp_path, export_run_dir, tiny_export,
                                                                           monkeypatch):
    """Round 0 agrees on 22 images, round 1 (node A in float) on 20: dropped, round 2 tries node B instead and
    agrees on 30: kept; round 3 (B and C) on 25: dropped. The file is round 2's, with B alone in float."""
    _forced_agreement(monkeypatch, [22, 20, 30, 25])
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "fb", int8=True, quantizer="edgexfer",
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       calibration_method="entropy", int8_nodes_per_round=1, int8_max_rounds=3,
                                       progress=False))
    int8 = _artifact(manifest, "int8")
    fallback = int8["quantization"]["fallback"]
    rounds = fallback["rounds"]
    assert [(r["round"], r["agreed"], r["kept"]) for r in rounds] == [
        (0, 22, True), (1, 20, False), (2, 30, True), (3, 25, False)]
    a, b = rounds[1]["nodes"], rounds[2]["nodes"]
    assert len(a) == len(b) == 1 and a != b
    assert rounds[3]["nodes"] and not set(rounds[3]["nodes"]) & set(a)
    assert [e["name"] for e in int8["excluded_nodes"]] == b
    assert int8["excluded_nodes"][0]["round"] == 2 and "SQNR" in int8["excluded_nodes"][0]["reason"]
    assert int8["parity"]["agreed"] == 30 and fallback["outcome"] == "missed" and fallback["passed"] is False
    model = onnx.load(tmp_path / "fb" / int8["file"])
    weighted = {n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")}
    assert _weights_in_float(model, weighted) == set(b) & weighted


def test_fallback_stops_once_the_bar_is_met_with_evidence(tmp_path, export_run_dir, tiny_export, monkeypatch):
    """A bar of 50%: round 0 forced to 40 of the judging images, whose whole Wilson interval lies above 0.5, so
    no round follows and the outcome is met."""
    _forced_agreement(monkeypatch, [40])
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "met", int8=True, quantizer="edgexfer",
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       calibration_method="minmax", int8_min_agreement=0.5, progress=False))
    fallback = _artifact(manifest, "int8")["quantization"]["fallback"]
    assert len(fallback["rounds"]) == 1 and fallback["outcome"] == "met" and fallback["passed"] is True
    assert fallback["stopped"] == "the bar is met with evidence"


def test_agreement_against_the_bar_uses_the_whole_interval():
    def agreement(agreed, n):
        return Agreement(agreed, n, 0.0, (("val", agreed, n),))

    assert agreement(300, 300).against(0.98) == "met"
    assert agreement(299, 300).against(0.98) == "met"  # Wilson low 0.981
    assert agreement(296, 300).against(0.98) == "inconclusive"  # 98.7% but the interval reaches 0.966
    assert agreement(44, 44).against(0.98) == "inconclusive"  # 100% of 44 images cannot show 98%
    assert agreement(280, 300).against(0.98) == "missed"  # Wilson high 0.956
    assert agreement(30, 44).better_than(agreement(29, 44)) and not agreement(30, 44).better_than(agreement(30, 44))


def test_judging_images_are_validation_plus_train_images_not_calibrated_on(tiny_export, export_run_dir):
    from edgexfer.contracts.run import load_run
    from edgexfer.data.calibration import load_calibration_set, pixel_hash
    from edgexfer.export.int8.agreement import unseen_train_images

    int8 = _artifact(json.loads((tiny_export / "manifest.json").read_text()), "int8")
    counts = int8["parity"]["images"]
    run = load_run(export_run_dir)
    split = run.load_split()
    assert counts["val"] == len(split.samples("val")) and counts["train_not_calibration"] > 0
    assert int8["parity"]["n"] == sum(counts.values())
    cal = load_calibration_set(next((tiny_export.parent / "calibration").glob("*.npz")))
    train = unseen_train_images(split, cal, run.image_size, 1000, seed=0)
    assert len(train) == len(split.samples("train")) - cal.size
    calibrated = {pixel_hash(x) for x, _ in ((img, 0) for batch, _ in cal.iter_batches(64) for img in batch)}
    assert not calibrated & {pixel_hash(img) for img in train}
    again = unseen_train_images(split, cal, run.image_size, 5, seed=0)
    assert len(again) == 5 and np.array_equal(again, unseen_train_images(split, cal, run.image_size, 5, seed=0))


def test_node_sensitivity_ranks_nodes_worst_first(tiny_export, tmp_path):
    from edgexfer.data.calibration import load_calibration_set

    cal = load_calibration_set(next((tiny_export.parent / "calibration").glob("*.npz")))
    prep = tmp_path / "prep.onnx"
    preprocess(tiny_export / "model_fp32.onnx", prep)
    qdq = tmp_path / "q.onnx"
    quantize(prep, qdq, reader=calibration_batches(cal, 16), target="tensorrt", method="minmax")
    images = next(cal.iter_batches(8))[0]
    ranked = node_sensitivity(prep, qdq, images)
    drops = [r.sqnr_drop_db for r in ranked]
    assert drops == sorted(drops, reverse=True)
    names = {n.name for n in onnx.load(prep).graph.node}
    assert {r.name for r in ranked} <= names
    assert any(r.op_type == "Conv" and r.sqnr_drop_db > 0 for r in ranked)
    # the float graph against itself loses nothing: every node at the cap, no drop
    same = node_sensitivity(prep, prep, images)
    assert same and all(r.sqnr_drop_db == 0 and r.output_sqnr_db == SQNR_CAP_DB for r in same)


def test_the_layer_report_sits_beside_the_int8_file_and_in_the_manifest(tiny_export, manifest):
    from edgexfer.io import sha256_file

    layers = _artifact(manifest, "int8")["layers"]
    path = tiny_export / layers["file"]
    assert layers["file"] == "model_int8_cpu.layers.json" and layers["sha256"] == sha256_file(path)
    report = json.loads(path.read_text())
    assert report["schema"] == "edgexfer.layer-report/1" and report["artifact"] == "model_int8_cpu.onnx"
    rows = report["nodes"]
    assert len(rows) == layers["nodes"] > 0
    assert min(rows, key=lambda r: r["output_sqnr_db"])["name"] == layers["lowest_sqnr"]["name"]
    convs = [r for r in rows if r["op_type"] == "Conv"]
    assert convs and all(0 < r["weight_sqnr_db"] <= SQNR_CAP_DB for r in convs)  # int8 weights: finite SQNR
    assert all(r["output_sqnr_db"] < SQNR_CAP_DB for r in convs)  # quantized: not exact


def test_auto_calibration_tries_the_other_methods_when_entropy_settles_nothing(tmp_path, export_run_dir, tiny_export,
                                                                                monkeypatch):
    """Entropy's round 0 is forced to 22 images, percentile to 31, minmax to 40: auto keeps minmax, records every
    method tried, and the fallback rounds (none allowed here) would go on with minmax."""
    _forced_agreement(monkeypatch, [22, 31, 40])
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "auto", int8=True, quantizer="edgexfer",
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       int8_max_rounds=0, progress=False))
    int8 = _artifact(manifest, "int8")
    fallback = int8["quantization"]["fallback"]
    assert [(m["method"], m["agreed"]) for m in fallback["methods"]] == [("entropy", 22), ("percentile", 31),
                                                                          ("minmax", 40)]
    assert [(r["round"], r["method"], r["agreed"]) for r in fallback["rounds"]] == [(0, "minmax", 40)]
    assert int8["calibration"]["method"] == int8["quantization"]["method"] == "minmax"
    stages = {t["stage"] for t in manifest["timings"]}
    assert {"int8_quantize_round0", "int8_quantize_percentile_round0", "int8_quantize_minmax_round0"} <= stages


def test_auto_calibration_stops_at_entropy_when_every_image_agrees(tmp_path, export_run_dir, tiny_export, monkeypatch):
    n = _artifact(json.loads((tiny_export / "manifest.json").read_text()), "int8")["parity"]["n"]
    _forced_agreement(monkeypatch, [n])
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "entropy", int8=True, quantizer="edgexfer",
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       progress=False))
    fallback = _artifact(manifest, "int8")["quantization"]["fallback"]
    assert [m["method"] for m in fallback["methods"]] == ["entropy"]
    assert fallback["stopped"] == "every judging image agrees" and fallback["outcome"] == "inconclusive"


@pytest.mark.slow
def test_fallback_on_a_depthwise_swish_network(tmp_path, demo_split, monkeypatch):
    """MobileNetV3Small (depthwise convs, hard-swish), random init at 32 px, round 0 forced one image short of
    full agreement: the sensitivity ranking finds nodes to keep in float, round 1 runs, and each names its reason."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_export import make_run_dir

    from edgexfer.backbones import build_model

    model = build_model("mobilenetv3small", num_classes=len(demo_split.classes), image_size=32, weights="none")
    run = make_run_dir(tmp_path / "mnv3", demo_split, model, backbone="mobilenetv3small")
    _forced_agreement(monkeypatch, [0])
    manifest = export_run(ExportConfig(run_dir=run, out=tmp_path / "out", int8=True, quantizer="edgexfer", target="tensorrt",
                                       calibration=tmp_path / "cal", calibration_size=32, calibration_method="minmax",
                                       int8_min_agreement=1.0, int8_max_rounds=1, int8_nodes_per_round=3,
                                       progress=False))
    int8 = _artifact(manifest, "int8")
    rounds = int8["quantization"]["fallback"]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and len(rounds[1]["nodes"]) == 3
    assert rounds[1]["kept"] and [e["name"] for e in int8["excluded_nodes"]] == rounds[1]["nodes"]
    assert all(e["reason"] and e["op_type"] and e["sqnr_drop_db"] > 0 for e in int8["excluded_nodes"])


def test_entropy_threshold_is_onnxruntimes_search():
    """The vectorized KL search returns exactly what ONNX Runtime's per-bin Python loops return."""
    from onnxruntime.quantization.calibrate import HistogramCollector

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


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_one_pass_calibration_gives_onnxruntimes_ranges(tiny_export, tmp_path, method):
    """Our one-pass calibration against ONNX Runtime's calibrator fed the same chunks one collect_data call
    each: the same tensors and, for every method, the same ranges (to float32 precision)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    from edgexfer.data.calibration import load_calibration_set

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

    ort_method = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[method]
    extra = {"num_bins": 2048, "percentile": 99.999, "symmetric": True} if method == "percentile" else {}
    calibrator = create_calibrator(prep, list(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                   augmented_model_path=str(tmp_path / "augmented.onnx"),
                                   calibrate_method=getattr(CalibrationMethod, ort_method), extra_options=extra)
    for x in chunks:
        calibrator.collect_data(OneChunk(x))
    reference = calibrator.compute_data()
    assert set(ours.keys()) == set(reference.keys()) and len(ours.keys()) > 3
    for name in reference.keys():
        lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in ours[name].range_value)
        ref_lo, ref_hi = (float(np.asarray(v).reshape(-1)[0]) for v in reference[name].range_value)
        assert (lo, hi) == pytest.approx((ref_lo, ref_hi), rel=1e-6, abs=1e-7), name


def test_the_speed_check_advises_against_int8_only_when_every_round_was_slower():
    """The measured case from main: 0.79x in one run and 1.41x in the next is no reason to advise anything."""
    straddling = SpeedCheck(fp32_ms=(1.0, 1.0, 1.0), int8_ms=(1.27, 0.71, 1.0), threads=2)
    assert straddling.verdict == "unclear" and straddling.advice is None
    record = straddling.record()
    assert record["speedup_range"] == [0.787, 1.408] and record["speedup"] == 1.0 and record["rounds"] == 3
    slower = SpeedCheck(fp32_ms=(1.0, 1.0), int8_ms=(1.1, 1.3), threads=2)
    assert slower.verdict == "slower" and slower.advice == SLOWER_ADVICE and SLOWER_ADVICE in slower.line()
    assert speed_verdict([1.25, 1.4]) == "pays" and speed_verdict([1.1, 1.4]) == "unclear"
    assert speed_verdict([0.99, 0.5]) == "slower" and speed_verdict([0.99, 1.0]) == "unclear"


def test_the_export_records_its_speed_rounds(manifest):
    speed = _artifact(manifest, "int8")["cpu_speed"]
    assert speed["rounds"] == 5 and speed["batch"] == 1 and len(speed["speedup_range"]) == 2
    assert speed["verdict"] in ("pays", "unclear", "slower") and speed["fp32_p50_ms"] > 0 and speed["int8_p50_ms"] > 0


def test_quantize_levers_change_the_graph(tiny_export, tmp_path):
    """QuantOptions: op types left in float stay float; QOperator writes QLinearConv instead of Q/DQ pairs."""
    from edgexfer.data.calibration import load_calibration_set

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
